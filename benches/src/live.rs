//! Live channels per box, and live latency: N cameras (GStreamer's RTSP
//! server, 720p30 H.264) each into a 720/480/360 live HLS ladder, by the
//! appliance (`media::live`, in process) and by `ffmpeg -rtsp_transport tcp
//! … -f hls` (one process per channel, the same x264 preset, tune, bit
//! rates and 2 s GOP), alternating, N = 1, 2, … until neither keeps up.
//!
//! A contender *sustains* N channels when, over the measured window, every
//! channel took the camera's frames in real time (≥ 97 % of 30 fps) and
//! dropped none, wrote its segments on time, and the latency's p95 stayed
//! within two target durations (≤ 4 s: a player three segments behind the
//! live edge still finds them). Latency is how long after a segment's last
//! frame was captured it appeared on disk, from its program date-time: the
//! appliance's own measure for it; for ffmpeg, the time its segment file
//! appeared minus its playlist's `PROGRAM-DATE-TIME + EXTINF`.
//!
//! Every client of the camera's mount shares one stream, and each one's
//! `PLAY` (with a range) rewinds that stream's RTP timestamps for all of
//! them: a channel's latency must not depend on how many joined after it.
//!
//! Besides the JSON, a plot of channels vs frames/s in and latency p50 (p95
//! dashed) per contender is written next to it (same name, `.svg` and
//! `.png`; see [`crate::plot`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use media::live::{Channel, ChannelOptions, IngestOptions, LadderConfig};
use serde::Serialize;

use crate::{percentile, BenchError, Machine, Result};

pub struct Config {
    /// `tests/rtsp/serve.py`: the camera.
    pub server_script: PathBuf,
    pub max_channels: usize,
    pub warmup_secs: u64,
    pub measure_secs: u64,
    pub preset: String,
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub contender: String,
    pub channels: usize,
    pub sustained: bool,
    /// Mean frames/s taken in per channel over the window.
    pub fps_in: f64,
    pub dropped: u64,
    pub segments: u64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct LiveReport {
    /// What each contender's latency is measured from.
    pub latency_basis: HashMap<String, String>,
    pub machine: Machine,
    pub source: String,
    pub ladder: String,
    pub preset: String,
    /// When a row counts as sustained.
    pub sustained_when: String,
    /// The latency p95 a sustained row stays within: 2 × the target
    /// duration.
    pub latency_p95_limit_ms: f64,
    pub rows: Vec<Row>,
    /// Most channels each sustained.
    pub max_channels: HashMap<String, usize>,
}

const FPS: f64 = 30.0;
/// A sustained channel's latency p95 is at most two target durations.
const LATENCY_P95_LIMIT_MS: f64 = 2.0 * media::live::TARGET_SECS as f64 * 1e3;
const STAGGER: Duration = Duration::from_millis(500);
const MOUNT: &str = "h264";

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.display().to_string();
    move |source| BenchError::Io { op, path, source }
}

struct Camera(Child);

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_camera(script: &Path) -> Result<(Camera, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("finding a port for", script))?
        .port();
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("starting", script))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(io("reading", script))?;
    if !line.starts_with("ready ") {
        let _ = child.kill();
        return Err(BenchError::Command {
            command: script.display().to_string(),
            detail: "the RTSP server did not start (GStreamer packages missing?)".into(),
        });
    }
    Ok((Camera(child), format!("rtsp://127.0.0.1:{port}/{MOUNT}")))
}

pub fn run(cfg: &Config) -> Result<LiveReport> {
    let work = tempfile::tempdir().map_err(io("creating", Path::new("temp dir")))?;
    let mut rows = Vec::new();
    let mut best: HashMap<String, usize> = HashMap::new();
    let mut alive = [true, true];
    for n in 1..=cfg.max_channels {
        for (i, contender) in ["appliance", "ffmpeg"].into_iter().enumerate() {
            if !alive[i] {
                continue;
            }
            let dir = work.path().join(format!("{contender}-{n}"));
            // A fresh camera per measurement: one that stopped serving after
            // many clients must not count against the next contender.
            let (_camera, url) = start_camera(&cfg.server_script)?;
            let url = url.as_str();
            let row = if i == 0 {
                appliance(cfg, url, n, &dir)?
            } else {
                ffmpeg(cfg, url, n, &dir)?
            };
            if row.fps_in == 0.0 {
                return Err(BenchError::Command {
                    command: format!("{contender} with {n} channels"),
                    detail: "no frame arrived: the camera stopped serving".into(),
                });
            }
            eprintln!("  {row:?}");
            if row.sustained {
                best.insert(contender.into(), n);
            } else {
                alive[i] = false;
            }
            rows.push(row);
        }
        if alive == [false, false] {
            break;
        }
    }
    let report = LiveReport {
        latency_basis: HashMap::from([
            ("appliance".to_owned(), "segment published − (PROGRAM-DATE-TIME + duration); PDT anchored at the wall clock when the run's first frame arrived, advanced by the camera's RTP clock, and across a jump of it (another client's PLAY rewinding the shared stream) by the arrival clock".to_owned()),
            ("ffmpeg".to_owned(), "segment file appeared − (PROGRAM-DATE-TIME + EXTINF); ffmpeg anchors PDT at its own output start, which runs ahead of arrival, so this can be negative and is not comparable".to_owned()),
        ]),
        machine: Machine::current(),
        source: "GStreamer RTSP server (tests/rtsp/serve.py): videotestsrc 1280x720 30 fps, x264 superfast 2 Mb/s, shared by every channel, over RTSP/TCP on loopback".into(),
        ladder: "720p/480p/360p H.264, x264 tune=zerolatency, IDR every 2 s, 2 s CMAF segments".into(),
        preset: cfg.preset.clone(),
        sustained_when: format!(
            "every channel took ≥ 97 % of {FPS} fps, dropped no frame and wrote a segment per 2 s, and latency p95 ≤ {LATENCY_P95_LIMIT_MS} ms (2 × the target duration)"
        ),
        latency_p95_limit_ms: LATENCY_P95_LIMIT_MS,
        rows,
        max_channels: best,
    };
    crate::write_report(&cfg.out, &report)?;
    Ok(report)
}

fn appliance(cfg: &Config, url: &str, n: usize, dir: &Path) -> Result<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting", Path::new("tokio runtime")))?;
    rt.block_on(async {
        let mut channels = Vec::new();
        for i in 0..n {
            let mut ingest = IngestOptions::new(url.parse().expect("a valid URL"));
            ingest.watchdog = Duration::from_secs(5);
            channels.push(Channel::start(ChannelOptions {
                ingest,
                dir: dir.join(i.to_string()),
                ladder: LadderConfig {
                    rungs: vec![720, 480, 360],
                    preset: cfg.preset.clone(),
                    placement: hardware::Placement::CPU,
                },
                record: false,
            })?);
            // Clients join the camera one at a time: GStreamer's RTSP server
            // was seen to die under simultaneous SETUPs of a shared stream.
            tokio::time::sleep(STAGGER).await;
        }
        tokio::time::sleep(Duration::from_secs(cfg.warmup_secs)).await;
        let snap = |c: &Channel| {
            let s = c.stats();
            (
                s.frames_in.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
                s.segments.load(Ordering::Relaxed),
            )
        };
        let before: Vec<_> = channels.iter().map(snap).collect();
        let mut latencies = Vec::new();
        let mut seen: Vec<u64> = before.iter().map(|b| b.2).collect();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(cfg.measure_secs) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (c, seen) in channels.iter().zip(seen.iter_mut()) {
                let segs = c.stats().segments.load(Ordering::Relaxed);
                if segs > *seen {
                    *seen = segs;
                    latencies.push(c.stats().latency_ms.load(Ordering::Relaxed) as f64);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let after: Vec<_> = channels.iter().map(snap).collect();
        for c in channels {
            c.stop().await?;
        }
        let frames: u64 = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
        let dropped: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
        let segments: u64 = after.iter().zip(&before).map(|(a, b)| a.2 - b.2).sum();
        let fps_in = frames as f64 / secs / n as f64;
        let expected = (secs / 2.0).floor() as u64 * n as u64;
        latencies.sort_by(f64::total_cmp);
        let latency_p95_ms = percentile(&latencies, 0.95);
        Ok(Row {
            contender: "appliance".into(),
            channels: n,
            sustained: fps_in >= 0.97 * FPS
                && dropped == 0
                && segments + n as u64 >= expected
                && latency_p95_ms <= LATENCY_P95_LIMIT_MS,
            fps_in,
            dropped,
            segments,
            latency_p50_ms: percentile(&latencies, 0.5),
            latency_p95_ms,
        })
    })
}

/// The `ffmpeg` command for one channel: the same ladder, preset, tune, rate
/// control and GOP as the appliance's rungs.
fn ffmpeg_command(url: &str, preset: &str, dir: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-v", "error", "-progress", "pipe:1", "-rtsp_transport", "tcp"])
        .args(["-i", url, "-an"])
        .args([
            "-filter_complex",
            "[0:v]fps=30,split=3[a][b][c];[a]scale=1280:720[v0];[b]scale=854:480[v1];[c]scale=640:360[v2]",
        ]);
    for (i, (rate, max, buf)) in [
        ("3000k", "3600k", "6000k"),
        ("1100k", "1320k", "2200k"),
        ("365k", "438k", "730k"),
    ]
    .into_iter()
    .enumerate()
    {
        c.args(["-map", &format!("[v{i}]")])
            .args([format!("-c:v:{i}"), "libx264".into()])
            .args([format!("-b:v:{i}"), rate.into()])
            .args([format!("-maxrate:v:{i}"), max.into()])
            .args([format!("-bufsize:v:{i}"), buf.into()]);
    }
    c.args([
        "-preset",
        preset,
        "-tune",
        "zerolatency",
        "-profile:v",
        "high",
    ])
    .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
    .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "6"])
    .args(["-hls_segment_type", "fmp4"])
    .args([
        "-hls_flags",
        "delete_segments+program_date_time+temp_file+independent_segments",
    ])
    .args(["-var_stream_map", "v:0 v:1 v:2"])
    .args(["-master_pl_name", "master.m3u8"])
    .arg("-hls_segment_filename")
    .arg(dir.join("%v/%d.m4s"))
    .arg(dir.join("%v/index.m3u8"));
    c
}

fn ffmpeg(cfg: &Config, url: &str, n: usize, dir: &Path) -> Result<Row> {
    let mut children = Vec::new();
    for i in 0..n {
        let d = dir.join(i.to_string());
        for v in 0..3 {
            std::fs::create_dir_all(d.join(v.to_string())).map_err(io("creating", &d))?;
        }
        let mut cmd = ffmpeg_command(url, &cfg.preset, &d);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting", Path::new("ffmpeg")))?;
        children.push(Camera(child));
        std::thread::sleep(STAGGER);
    }
    // Progress lines (`frame=N`) from each process, read on their own threads.
    let counters: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>> = children
        .iter_mut()
        .map(|c| {
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let out = c.0.stdout.take().expect("piped");
            let k = std::sync::Arc::clone(&counter);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    if let Some(v) = line.strip_prefix("frame=") {
                        if let Ok(f) = v.trim().parse() {
                            k.store(f, Ordering::Relaxed);
                        }
                    }
                }
            });
            counter
        })
        .collect();
    std::thread::sleep(Duration::from_secs(cfg.warmup_secs));
    let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let top: Vec<PathBuf> = (0..n).map(|i| dir.join(i.to_string()).join("0")).collect();
    let mut appeared: HashMap<PathBuf, SystemTime> = HashMap::new();
    // Segments written during the warm-up are not the window's.
    let existing: std::collections::HashSet<PathBuf> = top
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(cfg.measure_secs) {
        std::thread::sleep(Duration::from_millis(50));
        for d in &top {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "m4s") && !existing.contains(&p) {
                    appeared.entry(p).or_insert_with(SystemTime::now);
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    drop(children);
    let frames: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    let fps_in = frames as f64 / secs / n as f64;
    let mut latencies = Vec::new();
    for d in &top {
        let Ok(text) = std::fs::read_to_string(d.join("index.m3u8")) else {
            continue;
        };
        let mut pdt: Option<SystemTime> = None;
        let mut dur = 0.0;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = parse_pdt(v);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                dur = v.trim_end_matches(',').parse().unwrap_or(0.0);
            } else if !line.starts_with('#') && !line.is_empty() {
                if let (Some(start), Some(at)) = (pdt, appeared.get(&d.join(line))) {
                    let end = start + Duration::from_secs_f64(dur);
                    // Signed: ffmpeg stamps from its own output clock, which
                    // can run ahead of the frames' arrival.
                    let l = match at.duration_since(end) {
                        Ok(l) => l.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    };
                    latencies.push(l * 1e3);
                }
                pdt = None;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let segments = appeared.len() as u64;
    let expected = (secs / 2.0).floor() as u64 * n as u64;
    let latency_p95_ms = percentile(&latencies, 0.95);
    Ok(Row {
        contender: "ffmpeg".into(),
        channels: n,
        sustained: fps_in >= 0.97 * FPS
            && segments + n as u64 >= expected
            && latency_p95_ms <= LATENCY_P95_LIMIT_MS,
        fps_in,
        dropped: 0,
        segments,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p95_ms,
    })
}

/// `2026-11-30T06:21:13.682+0000` or `…Z` → a time.
fn parse_pdt(v: &str) -> Option<SystemTime> {
    let fmt = time::format_description::well_known::Iso8601::DEFAULT;
    let fixed = if v.len() > 5 && (v.ends_with("+0000") || v.ends_with("-0000")) {
        format!("{}Z", &v[..v.len() - 5])
    } else {
        v.to_owned()
    };
    let t = time::OffsetDateTime::parse(&fixed, &fmt).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.unix_timestamp_nanos() as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ffmpeg_program_date_times_parse() {
        let t = super::parse_pdt("2026-01-01T00:00:01.500+0000").unwrap();
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((secs - 1_767_225_601.5).abs() < 1e-3, "{secs}");
        assert!(super::parse_pdt("2026-01-01T00:00:01.500Z").is_some());
    }
}
