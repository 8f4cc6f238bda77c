//! `appliance doctor`: what this box has, what it will run where, and what
//! each missing piece costs. Exit status 1 only for faults that stop the
//! appliance from working (unusable config, data dir, model); a missing GPU
//! or library is a cost, not a fault.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use settings::{AnalyticsKind, Config, HotKind};

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Works, at a cost (slower path, fewer features).
    Degraded,
    /// The appliance cannot do its job until fixed.
    Fault,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Where each stage of a typical 1080p job runs, and why.
    pub stages: Vec<String>,
    pub inventory: hardware::Inventory,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.level != Level::Fault)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let inv = &self.inventory;
        s += &format!(
            "CPU      {} ({} logical cores)\n",
            inv.cpu.model, inv.cpu.logical_cores
        );
        if inv.gpus.is_empty() {
            s += "GPU      none: no NVIDIA GPU is present; every stage runs on the CPU\n";
        }
        for g in &inv.gpus {
            s += &format!(
                "GPU {}    {} · {} · {:.0} GiB{}\n",
                g.index,
                g.name,
                g.arch(),
                g.memory_bytes as f64 / f64::from(1u32 << 30),
                inv.driver_version
                    .as_ref()
                    .map(|v| format!(" · driver {v}"))
                    .unwrap_or_default()
            );
            let caps = |c: &[hardware::CodecCaps]| {
                c.iter()
                    .map(|c| {
                        format!(
                            "{} {}-bit ≤{}x{}",
                            c.codec, c.bit_depth, c.max_width, c.max_height
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match (&g.nvdec, &g.nvdec_problem) {
                (Some(d), _) => {
                    s += &format!(
                        "         NVDEC {}: {}\n",
                        d.engines.map(|n| format!("×{n}")).unwrap_or_default(),
                        caps(&d.codecs)
                    )
                }
                (None, p) => {
                    s += &format!(
                        "         NVDEC none ({})\n",
                        p.as_deref().unwrap_or("unknown")
                    )
                }
            }
            match (&g.nvenc, &g.nvenc_problem) {
                (Some(e), _) => {
                    s += &format!(
                        "         NVENC {}: {} · sessions {}\n",
                        e.engines.map(|n| format!("×{n}")).unwrap_or_default(),
                        caps(&e.codecs),
                        e.max_sessions
                            .map_or("bounded by memory".to_owned(), |n| format!("≤{n}"))
                    )
                }
                (None, p) => {
                    s += &format!(
                        "         NVENC none ({})\n",
                        p.as_deref().unwrap_or("unknown")
                    )
                }
            }
        }
        s += "\nWhere a 1080p upload's stages run:\n";
        for l in &self.stages {
            s += &format!("  {l}\n");
        }
        s += "\nChecks:\n";
        for c in &self.checks {
            let mark = match c.level {
                Level::Ok => "ok  ",
                Level::Degraded => "warn",
                Level::Fault => "FAIL",
            };
            s += &format!("  [{mark}] {:<22} {}\n", c.name, c.detail);
        }
        s
    }
}

fn check(name: &str, level: Level, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        level,
        detail: detail.into(),
    }
}

/// What losing each library costs.
fn library_cost(name: &str) -> &'static str {
    match name {
        "libcuda" => "no GPU stage can run: decode, scale, encode and the feed models use the CPU",
        "libnvrtc" => "the scaling kernels cannot be compiled: GPU decode (which scales) is off; NVENC can still encode CPU-scaled frames",
        "libnvcuvid" => "no NVDEC: decode and scale run on the CPU",
        "libnvidia-encode" => "no NVENC: encoding runs on libx264 (the costliest stage on a CPU)",
        "libnvidia-ml" => "no GPU utilisation metrics",
        _ => "unknown library",
    }
}

pub fn run(config: &Config, inventory: hardware::Inventory) -> Report {
    let mut checks = Vec::new();
    for lib in &inventory.libraries {
        let name = lib.name;
        checks.push(match (&lib.loaded, &lib.problem) {
            (Some(file), None) => check(name, Level::Ok, format!("{file} ({})", lib.purpose)),
            (_, problem) => check(
                name,
                Level::Degraded,
                format!(
                    "{}; cost: {}",
                    problem.as_deref().unwrap_or("unusable"),
                    library_cost(name)
                ),
            ),
        });
    }
    checks.push(kernels_check(&inventory));
    for n in &inventory.notes {
        checks.push(check("gpu discovery", Level::Degraded, n.clone()));
    }
    let backend = &config.transcode.backend;
    checks.push(
        match backend
            .parse::<hardware::BackendRequest>()
            .map_err(|e| e.to_string())
            .and_then(|r| inventory.place(r).map_err(|e| e.to_string()))
        {
            Ok(p) => check("transcode.backend", Level::Ok, format!("`{backend}` → {p}")),
            Err(e) => check(
                "transcode.backend",
                Level::Fault,
                format!("`{backend}` cannot run here: {e}"),
            ),
        },
    );
    checks.push(data_dir_check(&config.storage.data_dir));
    checks.push(model_check(&config.feed.model_dir));
    checks.push(match config.analytics.kind {
        AnalyticsKind::Embedded => check("analytics", Level::Ok, "embedded (SQLite in the data dir)"),
        AnalyticsKind::Clickhouse => match clickhouse_ping(&config.analytics.url) {
            Ok(()) => check("analytics", Level::Ok, format!("ClickHouse at {} answers", config.analytics.url)),
            Err(e) => check(
                "analytics",
                Level::Degraded,
                format!("ClickHouse at {} unreachable ({e}); cost: events wait in the spool, analytics and trending go stale", config.analytics.url),
            ),
        },
    });
    checks.push(match config.hot.kind {
        HotKind::Memory => check("hot store", Level::Ok, "in process"),
        HotKind::Redis => match redis_ping(&config.hot.redis_url) {
            Ok(()) => check("hot store", Level::Ok, format!("Redis at {} answers", config.hot.redis_url)),
            Err(e) => check(
                "hot store",
                Level::Degraded,
                format!("Redis at {} unreachable ({e}); cost: counters and rate limits fall back to this process (not shared)", config.hot.redis_url),
            ),
        },
    });
    Report {
        stages: inventory.stage_report(),
        checks,
        inventory,
    }
}

/// Compiles the kernels for the first GPU's architecture (or sm_75 without
/// one) — proof that the GPU scale path can start.
fn kernels_check(inventory: &hardware::Inventory) -> Check {
    if kernels::probe::nvrtc_library().is_none() {
        return check(
            "scaling kernels",
            Level::Degraded,
            format!("libnvrtc missing; cost: {}", library_cost("libnvrtc")),
        );
    }
    let arch = inventory
        .gpus
        .first()
        .map_or_else(|| "sm_75".to_owned(), |g| g.arch());
    match kernels::ptx::load_or_compile(&arch) {
        Ok(ptx) => check(
            "scaling kernels",
            Level::Ok,
            format!(
                "compiled for {arch} with NVRTC ({} KiB PTX, cached)",
                ptx.len() / 1024
            ),
        ),
        Err(e) => check(
            "scaling kernels",
            Level::Degraded,
            format!("NVRTC failed for {arch}: {e}"),
        ),
    }
}

fn data_dir_check(dir: &Path) -> Check {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return check("data dir", Level::Fault, format!("{}: {e}", dir.display()));
    }
    let probe = dir.join(".doctor-write-test");
    if let Err(e) = std::fs::write(&probe, b"ok") {
        return check(
            "data dir",
            Level::Fault,
            format!("{} is not writable: {e}", dir.display()),
        );
    }
    let _ = std::fs::remove_file(&probe);
    match super::host::disk_space(dir).ok().map(|d| d.available) {
        Some(free) if free < 5 << 30 => check(
            "disk space",
            Level::Degraded,
            format!(
                "{:.1} GiB free under {}; cost: uploads and ladders fail when it runs out",
                free as f64 / f64::from(1u32 << 30),
                dir.display()
            ),
        ),
        Some(free) => check(
            "disk space",
            Level::Ok,
            format!(
                "{:.1} GiB free under {}",
                free as f64 / f64::from(1u32 << 30),
                dir.display()
            ),
        ),
        None => check("disk space", Level::Degraded, "could not read free space"),
    }
}

fn model_check(dir: &Path) -> Check {
    let missing = super::readiness::model_files_missing(dir);
    if missing.is_empty() {
        check("embedding model", Level::Ok, format!("{}", dir.display()))
    } else {
        check(
            "embedding model",
            Level::Fault,
            format!(
                "{} lacks {}; the feed cannot embed videos. Point `[feed] model_dir` at a folder \
                 holding all-MiniLM-L6-v2 (in the source checkout, scripts/setup puts one in models/)",
                dir.display(),
                missing.join(", ")
            ),
        )
    }
}

fn connect(host_port: &str) -> Result<TcpStream, String> {
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn redis_ping(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("redis://").ok_or("not a redis:// URL")?;
    let host = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .split('/')
        .next()
        .unwrap_or(rest);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:6379")
    };
    let mut s = connect(&host)?;
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    // An auth-protected server answers NOAUTH: reachable all the same.
    if reply.starts_with("+PONG") || reply.contains("NOAUTH") {
        Ok(())
    } else {
        Err(format!("unexpected reply {reply:?}"))
    }
}

fn clickhouse_ping(url: &str) -> Result<(), String> {
    let base = url.trim_end_matches('/');
    let body = ureq::get(&format!("{base}/ping"))
        .config()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .call()
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if body.trim() == "Ok." {
        Ok(())
    } else {
        Err(format!("unexpected reply {body:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_only() -> hardware::Inventory {
        let cpu = hardware::Cpu {
            model: "test".into(),
            logical_cores: 2,
        };
        hardware::Inventory::from_parts(cpu, vec![], vec![], None, vec![])
    }

    #[test]
    fn a_cpu_only_host_is_healthy_and_says_every_stage_is_on_the_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        config.feed.model_dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        let report = run(&config, cpu_only());
        let text = report.render();
        assert!(text.contains("no NVIDIA GPU is present"), "{text}");
        assert_eq!(report.stages.len(), 3);
        assert!(report.stages.iter().all(|s| s.contains("CPU")), "{text}");
        assert!(report.healthy(), "{text}");
    }

    #[test]
    fn an_impossible_backend_and_a_missing_model_are_faults() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        config.feed.model_dir = dir.path().join("nothing");
        config.transcode.backend = "nvidia".into();
        let report = run(&config, cpu_only());
        assert!(!report.healthy());
        let faults: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.level == Level::Fault)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            faults,
            ["transcode.backend", "embedding model"],
            "{}",
            report.render()
        );
    }

    #[test]
    fn unreachable_stores_are_a_cost_not_a_fault() {
        assert!(redis_ping("redis://127.0.0.1:1").is_err());
        assert!(clickhouse_ping("http://127.0.0.1:1").is_err());
    }
}
