//! Whether what the ingester wrote plays: one segment joined to its init
//! segment, probed by `ffprobe` and decoded by `ffmpeg`; and `ffmpeg`
//! reading the live master playlist while it grows, as a live player does.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::run;

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// `init` + `segment` joined into one file (outside the ingester's
/// directory), as a player appends them.
fn joined(init: &Path, segment: &Path) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "e2e-live-{}-{}.mp4",
        std::process::id(),
        SCRATCH.fetch_add(1, Ordering::SeqCst)
    ));
    let mut bytes =
        std::fs::read(init).unwrap_or_else(|e| panic!("init segment {}: {e}", init.display()));
    bytes.extend(
        std::fs::read(segment).unwrap_or_else(|e| panic!("segment {}: {e}", segment.display())),
    );
    std::fs::write(&p, bytes).unwrap();
    p
}

/// ffprobe's packets (codec_type, flags, pts_time) and streams of
/// `init` + `segment`; panics if ffprobe cannot parse them.
pub fn probe_segment(init: &Path, segment: &Path) -> serde_json::Value {
    let j = joined(init, segment);
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json", "-show_entries"])
        .arg("stream=codec_type,codec_name,width,height,sample_rate:packet=stream_index,pts_time,flags")
        .arg(&j);
    let o = run(&mut cmd, Duration::from_secs(60));
    let _ = std::fs::remove_file(&j);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (Some(0), ""),
        "ffprobe cannot parse {} + {}",
        init.display(),
        segment.display()
    );
    serde_json::from_str(&o.stdout).expect("ffprobe json")
}

/// `init` + `segment` decode with no error, and a video segment starts
/// with a key frame.
pub fn assert_segment_decodes(init: &Path, segment: &Path) {
    let v = probe_segment(init, segment);
    let streams = v["streams"].as_array().expect("streams");
    assert!(!streams.is_empty(), "no stream in {}", segment.display());
    let packets = v["packets"].as_array().expect("packets");
    assert!(!packets.is_empty(), "no packet in {}", segment.display());
    if streams[0]["codec_type"] == "video" {
        let flags = packets[0]["flags"].as_str().unwrap_or("");
        assert!(
            flags.starts_with('K'),
            "{} does not start with a key frame (first packet flags {flags:?})",
            segment.display()
        );
    }
    let j = joined(init, segment);
    let o = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&j)
            .args(["-map", "0", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_file(&j);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (Some(0), ""),
        "ffmpeg reported errors decoding {}",
        segment.display()
    );
}

/// What an `ffmpeg` reading a live master playlist got.
#[derive(Debug)]
pub struct ReaderResult {
    pub code: Option<i32>,
    /// Video frames decoded.
    pub frames: u64,
    pub stderr: String,
}

/// `ffmpeg -v error -i master.m3u8 -map 0:v:0 -map 0:a:0? [-t T] -f null -`
/// started while the stream is live: ffmpeg's HLS demuxer reloads the
/// playlist like any live player until `-t` or EXT-X-ENDLIST.
pub struct LiveReader {
    child: Child,
    progress: JoinHandle<u64>,
    stderr: JoinHandle<String>,
}

impl LiveReader {
    pub fn start(master: &Path, seconds: Option<f64>) -> Self {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-nostats", "-v", "error", "-i"])
            .arg(master)
            .args(["-map", "0:v:0", "-map", "0:a:0?"]);
        if let Some(t) = seconds {
            cmd.args(["-t", &t.to_string()]);
        }
        let mut child = cmd
            .args(["-f", "null", "-", "-progress", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ffmpeg");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let progress = std::thread::spawn(move || {
            let mut frames = 0;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(v) = line.strip_prefix("frame=") {
                    frames = v.trim().parse().unwrap_or(frames);
                }
            }
            frames
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Self {
            child,
            progress,
            stderr,
        }
    }

    pub fn wait(mut self, limit: Duration) -> ReaderResult {
        use wait_timeout::ChildExt;
        let code = match self.child.wait_timeout(limit).expect("wait") {
            Some(s) => s.code(),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.join().unwrap_or_default();
                panic!("ffmpeg reading the live stream still running after {limit:?}:\n{err}");
            }
        };
        ReaderResult {
            code,
            frames: self.progress.join().unwrap_or(0),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}
