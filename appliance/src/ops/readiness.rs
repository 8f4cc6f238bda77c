//! `/readyz`: each dependency `ok`, `degraded` or `down`, with the reason.
//!
//! Down means the box cannot do its core job — serve the origin (catalog,
//! objects) or accept uploads (objects, a writable data dir, disk space);
//! everything else a fault costs (analytics freshness, shared counters,
//! embeddings, personal ranking) is degraded. Every probe is bounded by
//! [`PROBE_TIMEOUT`], so a hung server makes its check `down`/`degraded`
//! instead of hanging the probe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::wire::{CheckState, Health, HealthCheck};

use super::host;
use super::Ops;
use crate::error::Error;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Below this much free space uploads are refused: down.
pub const DISK_DOWN_BYTES: u64 = 256 << 20;
/// Below this much, or below [`DISK_LOW_FRACTION`] of the volume: degraded.
pub const DISK_LOW_BYTES: u64 = 5 << 30;
pub const DISK_LOW_FRACTION: f64 = 0.05;
/// File descriptors in use above this fraction of the limit: degraded.
pub const FD_HIGH_FRACTION: f64 = 0.9;

fn check(name: &str, state: CheckState, detail: impl Into<String>) -> HealthCheck {
    HealthCheck {
        name: name.into(),
        state,
        detail: detail.into(),
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

pub(super) async fn readiness(ops: &Ops) -> Health {
    let mut checks = Vec::new();
    let catalog = bounded(ops.catalog.call(|c| {
        c.query_row("SELECT 1", [], |_| Ok(()))
            .map_err(Error::catalog("probing"))
    }))
    .await;
    checks.push(match catalog {
        Ok(()) => check("catalog", CheckState::Ok, "answers"),
        Err(e) => check(
            "catalog",
            CheckState::Down,
            format!("{e}; nothing can be served or uploaded"),
        ),
    });
    checks.push(match bounded(ops.objects.head("readiness-probe")).await {
        Ok(_) => check("objects", CheckState::Ok, ops.objects.describe()),
        Err(e) => check(
            "objects",
            CheckState::Down,
            format!(
                "{}: {e}; the origin cannot serve and uploads cannot be stored",
                ops.objects.describe()
            ),
        ),
    });
    let data = ops.config.storage.data_dir.clone();
    let mut writable = vec![
        ("data dir", data.clone(), CheckState::Down),
        ("spool", data.join("spool"), CheckState::Degraded),
    ];
    if ops.objects.is_local() {
        writable.insert(
            1,
            ("objects dir", ops.config.objects_dir(), CheckState::Down),
        );
    }
    for (name, dir, fault) in writable {
        let probe = tokio::task::spawn_blocking(move || write_probe(&dir).map(|()| dir)).await;
        checks.push(match probe {
            Ok(Ok(dir)) => check(
                name,
                CheckState::Ok,
                format!("{} is writable", dir.display()),
            ),
            Ok(Err(e)) => check(
                name,
                fault,
                match fault {
                    CheckState::Down => format!("{e}; uploads and transcodes fail"),
                    CheckState::Ok | CheckState::Degraded => {
                        format!("{e}; engagement events cannot be accepted")
                    }
                },
            ),
            Err(e) => check(name, fault, format!("probe failed: {e}")),
        });
    }
    checks.push(match bounded(ops.engagement.analytics.ping()).await {
        Ok(()) => check(
            "analytics store",
            CheckState::Ok,
            format!(
                "answers; {} events in the spool",
                ops.engagement.spool_depth()
            ),
        ),
        Err(e) => check(
            "analytics store",
            CheckState::Degraded,
            format!(
                "{e}; {} events wait in the spool (oldest {:.0} s), analytics and trending go stale",
                ops.engagement.spool_depth(),
                ops.engagement.spool_lag_ms() as f64 / 1000.0
            ),
        ),
    });
    checks.push(match bounded(ops.engagement.hot.ping()).await {
        Ok(()) => check("hot store", CheckState::Ok, "answers"),
        Err(e) => check(
            "hot store",
            CheckState::Degraded,
            format!("{e}; counters and rate limits run on this process's state (not shared)"),
        ),
    });
    checks.extend(feed_checks(&ops.feed.health()));
    checks.push(disk_check(&data));
    checks.push(fd_check(
        host::fd_usage(),
        ops.conns
            .accept_errors
            .load(std::sync::atomic::Ordering::Relaxed),
    ));
    Health::of(checks)
}

/// Creates, writes and removes a file in `dir`: what uploads, transcodes
/// and the spool do there.
fn write_probe(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe: PathBuf = dir.join(format!(".readyz-{}", std::process::id()));
    let result = std::fs::write(&probe, b"probe")
        .map_err(|e| format!("{} is not writable: {e}", dir.display()));
    let _ = std::fs::remove_file(&probe);
    result
}

fn feed_checks(h: &crate::feed::FeedHealth) -> Vec<HealthCheck> {
    let embedder = match &h.embedder {
        None => match model_files_missing(&h.model_dir) {
            missing if missing.is_empty() => check(
                "embedding model",
                CheckState::Ok,
                format!("{} (not loaded yet)", h.model_dir.display()),
            ),
            missing => check(
                "embedding model",
                CheckState::Degraded,
                format!(
                    "{} lacks {}; new videos will not be embedded and search is keyword-only",
                    h.model_dir.display(),
                    missing.join(", ")
                ),
            ),
        },
        Some(Ok(dir)) => check(
            "embedding model",
            CheckState::Ok,
            format!("loaded from {dir}"),
        ),
        Some(Err(e)) => check(
            "embedding model",
            CheckState::Degraded,
            format!("{e}; new videos are not embedded and search is keyword-only"),
        ),
    };
    let ranker = match &h.ranker {
        Ok(name) if h.breaker_open => check(
            "ranker",
            CheckState::Degraded,
            format!("{name}; personal feeds failed repeatedly and serve trending for a while"),
        ),
        Ok(name) => check("ranker", CheckState::Ok, format!("ranking with the {name}")),
        Err(e) => check(
            "ranker",
            CheckState::Degraded,
            format!("{e}; feeds fall back to trending until a good file replaces it"),
        ),
    };
    let index = if h.index_loaded {
        check(
            "video index",
            CheckState::Ok,
            format!("{} videos", h.index_videos),
        )
    } else {
        check(
            "video index",
            CheckState::Degraded,
            "being built; feeds serve trending until it is ready",
        )
    };
    vec![embedder, ranker, index]
}

/// The files the embedding model loads from its folder.
pub fn model_files_missing(dir: &Path) -> Vec<&'static str> {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

fn disk_check(data: &Path) -> HealthCheck {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    match host::disk_space(data) {
        Err(e) => check(
            "disk space",
            CheckState::Degraded,
            format!("{}: {e}", data.display()),
        ),
        Ok(d) if d.available < DISK_DOWN_BYTES => check(
            "disk space",
            CheckState::Down,
            format!(
                "{:.2} GiB free under {}; uploads and ladders cannot be written",
                gib(d.available),
                data.display()
            ),
        ),
        Ok(d)
            if d.available < DISK_LOW_BYTES
                || (d.available as f64) < DISK_LOW_FRACTION * d.total as f64 =>
        {
            check(
                "disk space",
                CheckState::Degraded,
                format!(
                    "{:.1} GiB of {:.1} GiB free under {}; uploads fail when it runs out",
                    gib(d.available),
                    gib(d.total),
                    data.display()
                ),
            )
        }
        Ok(d) => check(
            "disk space",
            CheckState::Ok,
            format!(
                "{:.1} GiB of {:.1} GiB free under {}",
                gib(d.available),
                gib(d.total),
                data.display()
            ),
        ),
    }
}

fn fd_check(usage: std::io::Result<host::FdUsage>, accept_errors: u64) -> HealthCheck {
    match usage {
        Err(e) => check("file descriptors", CheckState::Degraded, format!("cannot count: {e}")),
        Ok(u) if u.open as f64 >= FD_HIGH_FRACTION * u.limit as f64 => check(
            "file descriptors",
            CheckState::Degraded,
            format!(
                "{} of {} in use; new connections and uploads may be refused ({accept_errors} failed accepts so far)",
                u.open, u.limit
            ),
        ),
        Ok(u) => check(
            "file descriptors",
            CheckState::Ok,
            format!(
                "{} of {} in use ({accept_errors} failed accepts so far)",
                u.open, u.limit
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_is_the_status() {
        let h = Health::of(vec![
            check("a", CheckState::Ok, ""),
            check("b", CheckState::Degraded, ""),
        ]);
        assert_eq!(h.status, CheckState::Degraded);
        assert_eq!(Health::of(Vec::new()).status, CheckState::Ok);
        let h = Health::of(vec![
            check("a", CheckState::Down, ""),
            check("b", CheckState::Degraded, ""),
        ]);
        assert_eq!(h.status, CheckState::Down);
    }

    #[test]
    fn descriptors_near_the_limit_degrade() {
        let at = |open, limit| fd_check(Ok(host::FdUsage { open, limit }), 3);
        assert_eq!(at(100, 1024).state, CheckState::Ok);
        let near = at(1000, 1024);
        assert_eq!(near.state, CheckState::Degraded);
        assert!(near.detail.contains("1000 of 1024"), "{}", near.detail);
        assert!(near.detail.contains("3 failed accepts"), "{}", near.detail);
    }

    #[test]
    fn a_broken_ranker_or_missing_model_degrades_and_says_why() {
        let h = crate::feed::FeedHealth {
            embedder: Some(Err("models/x: config.json is missing".into())),
            model_dir: "models/x".into(),
            ranker: Err("ranker.safetensors: tensor l1.weight missing".into()),
            index_loaded: false,
            index_videos: 0,
            breaker_open: false,
        };
        let c = feed_checks(&h);
        assert!(c.iter().all(|c| c.state == CheckState::Degraded), "{c:?}");
        assert!(c[0].detail.contains("config.json is missing"));
        assert!(c[1].detail.contains("trending"));
    }

    #[test]
    fn an_unwritable_dir_fails_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_probe(dir.path()).is_ok());
        // A file where the folder should be: what no permission bit hides
        // from root.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = write_probe(&file.join("sub")).unwrap_err();
        assert!(e.contains("file/sub"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
