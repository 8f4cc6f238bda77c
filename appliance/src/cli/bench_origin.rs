//! `appliance bench origin`: the box's HLS origin against nginx from
//! Debian serving the same files statically, side by side in one run. The
//! box serves from this process through the router `serve` uses (every
//! origin rule: catalog gate, validators, ranges, CORS); nginx from the
//! same object directory with `sendfile` and one worker per core. `wrk`
//! (Debian) drives both on loopback with two threads, alternating box and
//! nginx each round, for a 1080p-sized media segment and a master
//! playlist, at each connection count. The figure that counts is the ratio
//! of medians; one absolute rate on a shared 2-core box means little.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::catalog as cat;
use crate::store::objects;
use settings::Config;

pub struct Options {
    pub secs: u64,
    pub rounds: usize,
    pub connections: Vec<usize>,
    pub segment_bytes: usize,
    pub out: PathBuf,
}

#[derive(Serialize, Clone)]
pub struct Run {
    pub target: &'static str,
    pub server: &'static str,
    pub connections: usize,
    pub round: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
pub struct Summary {
    pub target: &'static str,
    pub connections: usize,
    pub appliance_requests_per_sec: f64,
    pub nginx_requests_per_sec: f64,
    /// Appliance ÷ nginx, medians over the rounds.
    pub ratio: f64,
    pub appliance_p99_ms: f64,
    pub nginx_p99_ms: f64,
    /// The goal for this target: ≥ 1.0 for segments, ≥ 0.8 for
    /// playlists.
    pub goal_ratio: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub workload: String,
    pub nginx: String,
    pub summary: Vec<Summary>,
    pub runs: Vec<Run>,
}

/// What is requested: the path under `/hls/<id>/` and the goal ratio.
const TARGETS: [(&str, &str, f64); 2] = [
    ("segment", "1080p/0.m4s", 1.0),
    ("playlist", "master.m3u8", 0.8),
];
const VIDEO: &str = "0000000000000000000000000000b0b0";

pub fn run(o: &Options) -> Result<Report> {
    for tool in ["wrk", "nginx"] {
        if !have(tool) {
            return Err(Error::Task(format!(
                "{tool} is not installed (scripts/setup installs it: apt-get install {tool})"
            )));
        }
    }
    let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
    let mut config = Config::load(None)?;
    config.storage.data_dir = scratch.path().join("data");
    config.objects.path = None;
    let objects_dir = config.objects_dir();
    let rt = super::runtime().map_err(Error::io("starting", "the runtime"))?;
    let (box_addr, stop) = rt.block_on(start_box(config, o.segment_bytes))?;
    let nginx_port = free_port()?;
    let mut nginx = Nginx::start(scratch.path(), &objects_dir, nginx_port)?;
    let mut runs = Vec::new();
    for &(target, path, _) in &TARGETS {
        for &conns in &o.connections {
            for round in 1..=o.rounds {
                // Alternate who goes first, so a drift of the box's load
                // does not always fall on the same side.
                let order: [(&'static str, String); 2] = [
                    ("appliance", format!("http://{box_addr}/hls/{VIDEO}/{path}")),
                    (
                        "nginx",
                        format!("http://127.0.0.1:{nginx_port}/hls/{VIDEO}/{path}"),
                    ),
                ];
                let mut order = order.to_vec();
                if round % 2 == 0 {
                    order.reverse();
                }
                for (server, url) in order {
                    let (rps, p50, p99) = wrk(&url, conns, o.secs)?;
                    eprintln!(
                        "origin: {target} {server} c{conns} round {round}: {rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms"
                    );
                    runs.push(Run {
                        target,
                        server,
                        connections: conns,
                        round,
                        requests_per_sec: rps,
                        p50_ms: p50,
                        p99_ms: p99,
                    });
                }
            }
        }
    }
    nginx.stop();
    let _ = stop.send(true);
    drop(rt);
    let summary = summarise(&runs, &o.connections);
    Ok(Report {
        machine: benches::Machine::current(),
        workload: format!(
            "wrk -t2 -d{}s --latency on loopback, {} rounds alternating appliance/nginx; a {} MB media segment (1080p/0.m4s) and a {}-byte master playlist of one published video; the appliance in this process through serve's router (catalog-gated, validators, CORS), nginx serving the same object directory statically (sendfile, tcp_nopush, worker_processes auto, access log off, the same Cache-Control and CORS headers)",
            o.secs,
            o.rounds,
            o.segment_bytes / 1_000_000,
            MASTER.len()
        ),
        nginx: nginx_version(),
        summary,
        runs,
    })
}

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=5605000,AVERAGE-BANDWIDTH=5000000,CODECS=\"avc1.640028,mp4a.40.2\",RESOLUTION=1920x1080,FRAME-RATE=30.000\n1080p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=3140000,AVERAGE-BANDWIDTH=2800000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=1570000,AVERAGE-BANDWIDTH=1400000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=854x480,FRAME-RATE=30.000\n480p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,CODECS=\"avc1.640015,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000\n360p/index.m3u8\n";

/// A published video with a master playlist and one large segment, and
/// the box serving it on an ephemeral loopback port.
async fn start_box(
    config: Config,
    segment_bytes: usize,
) -> Result<(std::net::SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let opened = super::serve::open(config)?;
    let app = opened.app.clone();
    // Incompressible bytes, as video is.
    let mut segment = vec![0u8; segment_bytes];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in segment.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let prefix = objects::ladder_prefix(VIDEO);
    app.videos
        .objects
        .put(
            &format!("{prefix}/master.m3u8"),
            Bytes::from_static(MASTER.as_bytes()),
        )
        .await?;
    app.videos
        .objects
        .put(&format!("{prefix}/1080p/0.m4s"), Bytes::from(segment))
        .await?;
    let creator = app
        .accounts
        .create_user("benchcreator", "bench-password-1", api::wire::Role::Creator)
        .await?;
    let row = cat::VideoRow::bench(VIDEO, &creator.id);
    app.catalog
        .call(move |c| cat::insert_video(c, &row))
        .await?;
    let router = super::serve::router_for(&app, None);
    let (listener, addr) = super::serve::bind_loopback().await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    super::serve::spawn_http(&app, listener, router, stop_rx);
    // The lock on the data directory lives as long as the server task.
    tokio::spawn(async move {
        let _held = opened;
        std::future::pending::<()>().await;
    });
    Ok((addr, stop_tx))
}

struct Nginx(Child);

impl Nginx {
    fn start(scratch: &Path, objects_dir: &Path, port: u16) -> Result<Self> {
        let dir = scratch.join("nginx");
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", dir.display()))?;
        let d = dir.display();
        let conf = format!(
            "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 4096; }}\n\
http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  types {{ application/vnd.apple.mpegurl m3u8; video/mp4 mp4; video/iso.segment m4s; }}\n\
  server {{\n    listen 127.0.0.1:{port};\n\
    location ~ ^/hls/([A-Za-z0-9_-]+)/(.+)$ {{\n      alias {objects}/videos/$1/hls/$2;\n\
      add_header Cache-Control \"public, max-age=31536000, immutable\";\n\
      add_header Access-Control-Allow-Origin \"*\";\n    }}\n  }}\n}}\n",
            objects = objects_dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(Error::io("writing", path.display()))?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("starting", "nginx"))?;
        let nginx = Self(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(Error::Task(format!(
                    "nginx did not listen on {port} within 10 s (see {d}/error.log)"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

    fn stop(&mut self) {
        // SIGQUIT: nginx's graceful stop, workers included.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGQUIT);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Requests/s, p50 and p99 in ms from one `wrk` run; an error when any
/// response was not 2xx/3xx or a socket failed.
fn wrk(url: &str, conns: usize, secs: u64) -> Result<(f64, f64, f64)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .map_err(Error::io("running", "wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text).ok_or_else(|| Error::Task(format!("wrk against {url}: {text}")))
}

fn parse_wrk(text: &str) -> Option<(f64, f64, f64)> {
    if text.contains("Non-2xx or 3xx responses") {
        return None;
    }
    if let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("Socket errors"))
    {
        // Timeouts under 512 connections are load, not failure; anything
        // else (connect, read, write) means the server refused work.
        let refused = line
            .split(',')
            .filter(|p| !p.contains("timeout"))
            .any(|p| p.split_whitespace().last().is_some_and(|n| n != "0"));
        if refused {
            return None;
        }
    }
    let pct = |p: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(duration_ms)
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((rps, pct("50%")?, pct("99%")?))
}

/// `812.00us`, `1.23ms`, `2.01s` → milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summarise(runs: &[Run], connections: &[usize]) -> Vec<Summary> {
    let mut out = Vec::new();
    for &(target, _, goal) in &TARGETS {
        for &c in connections {
            let pick = |server: &str, f: fn(&Run) -> f64| {
                median(
                    runs.iter()
                        .filter(|r| r.target == target && r.server == server && r.connections == c)
                        .map(f)
                        .collect(),
                )
            };
            let a = pick("appliance", |r| r.requests_per_sec);
            let n = pick("nginx", |r| r.requests_per_sec);
            out.push(Summary {
                target,
                connections: c,
                appliance_requests_per_sec: a,
                nginx_requests_per_sec: n,
                ratio: a / n,
                appliance_p99_ms: pick("appliance", |r| r.p99_ms),
                nginx_p99_ms: pick("nginx", |r| r.p99_ms),
                goal_ratio: goal,
            });
        }
    }
    out
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(Error::io("listening on", "127.0.0.1:0"))?;
    Ok(l.local_addr()
        .map_err(Error::io("listening on", "127.0.0.1:0"))?
        .port())
}

fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses_and_refusals_are_errors() {
        let ok = "Running 10s test @ http://127.0.0.1:1/x\n  2 threads and 64 connections\n  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     90%    2.00ms\n     99%    1.20s\n  1000 requests in 10.00s, 3.00GB read\n  Socket errors: connect 0, read 0, write 0, timeout 12\nRequests/sec:    100.50\nTransfer/sec:    300.00MB\n";
        let (rps, p50, p99) = parse_wrk(ok).unwrap();
        assert_eq!(rps, 100.5);
        assert!((p50 - 0.812).abs() < 1e-9);
        assert!((p99 - 1200.0).abs() < 1e-9);
        assert!(parse_wrk(&ok.replace("read 0", "read 3")).is_none());
        assert!(parse_wrk(&format!("{ok}  Non-2xx or 3xx responses: 5\n")).is_none());
        assert!(parse_wrk("garbage").is_none());
    }
}
