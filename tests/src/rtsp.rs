//! Live RTSP ingest: a real RTSP server (Debian's GStreamer, driven by
//! `tests/rtsp/serve.py`), the `appliance ingest-rtsp` process under test, a
//! poller that records every version of a live playlist, a parser for live
//! media playlists (RFC 8216 §4.3) and the invariants a live playlist must
//! keep from one reload to the next (§6.2.2, §6.3.4).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{appliance_bin, manifest_dir, run};

/// Debian's Python, which has `python3-gi` (a virtualenv's may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// The Debian packages `tests/rtsp/serve.py` needs.
pub const PACKAGES: &str = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
     gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
     gstreamer1.0-plugins-ugly gstreamer1.0-libav";

/// `CI` is set to something other than empty, `0` or `false`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Whether GStreamer's RTSP server and every element `serve.py` uses are
/// installed. Missing pieces skip the test (with a message) outside CI and
/// fail it under CI, where `scripts/setup` must have installed them.
pub fn rtsp_server_available(what: &str) -> bool {
    let why = if !Path::new(PYTHON).is_file() {
        format!("{PYTHON} is missing")
    } else {
        let o = run(
            Command::new(PYTHON).arg(serve_script()).arg("--check"),
            Duration::from_secs(60),
        );
        if o.code == Some(0) {
            return true;
        }
        o.stderr.trim().to_owned()
    };
    assert!(
        !under_ci(),
        "GStreamer's RTSP server is required in CI for {what} ({why}); \
         scripts/setup must install: {PACKAGES}"
    );
    eprintln!("SKIPPED: {what}: GStreamer's RTSP server is not usable ({why}); install {PACKAGES}");
    false
}

pub fn serve_script() -> PathBuf {
    manifest_dir().join("rtsp/serve.py")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -s {sig} {pid} failed");
}

/// `tests/rtsp/serve.py` on a loopback port: mounts `/h264`, `/h265`,
/// `/h264-pcma`, `/h264-aac` (1280x720, 30 fps, a key frame every second).
pub struct RtspServer {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    frozen: bool,
}

impl RtspServer {
    /// Starts the server on `port`; its stderr goes to `log` (appended).
    pub fn start(port: u16, log: &Path) -> Self {
        let mut s = Self {
            child: None,
            port,
            log: log.to_path_buf(),
            frozen: false,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // A restart right after `kill -9` may find the port briefly unusable
        // (serve.py exits 3): retry for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let mut child = Command::new(PYTHON)
                .arg(serve_script())
                .args(["--port", &self.port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {PYTHON} serve.py: {e}"));
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                while let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            });
            let ready = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line.starts_with("ready"),
                Err(_) => false,
            };
            if ready {
                self.child = Some(child);
                self.frozen = false;
                return;
            }
            let _ = child.kill();
            let status = child.wait().ok();
            let bind_failed = status.and_then(|s| s.code()) == Some(3);
            if !bind_failed || Instant::now() > deadline {
                panic!(
                    "the RTSP server did not start on port {} ({status:?}); its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `rtsp://127.0.0.1:PORT/MOUNT`, `mount` without the slash.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: the camera vanishes, its TCP connections are reset.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frozen = false;
    }

    /// Starts it again on the same port (after `kill9`).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `kill -STOP`: the camera freezes; its connections stay open and silent.
    pub fn freeze(&mut self) {
        signal(self.pid().expect("server running"), "STOP");
        self.frozen = true;
    }

    /// `kill -CONT`.
    pub fn thaw(&mut self) {
        if self.frozen {
            signal(self.pid().expect("server running"), "CONT");
            self.frozen = false;
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One line the ingester printed, with when it arrived.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// `appliance ingest-rtsp URL --out DIR ARGS…` running in the background,
/// its stderr collected line by line (progress bars' `\r` split lines too).
pub struct Ingest {
    child: Option<Child>,
    pub out: PathBuf,
    pub started: Instant,
    pub args: Vec<String>,
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<JoinHandle<()>>,
    code: Option<Option<i32>>,
}

impl Ingest {
    pub fn start(url: &str, out: &Path, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "ingest-rtsp".into(),
            url.into(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(appliance_bin())
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start appliance {args:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out_pipe: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err_pipe: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for (pipe, tag) in [(out_pipe, "out| "), (err_pipe, "")] {
            let lines = Arc::clone(&lines);
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    let n = r.read(&mut byte).unwrap_or(0);
                    if n == 0 || byte[0] == b'\n' || byte[0] == b'\r' {
                        if !buf.is_empty() {
                            let text = format!("{tag}{}", String::from_utf8_lossy(&buf));
                            lines.lock().unwrap().push(Line {
                                at: Instant::now(),
                                text,
                            });
                            buf.clear();
                        }
                        if n == 0 {
                            return;
                        }
                    } else {
                        buf.push(byte[0]);
                    }
                }
            }));
        }
        Self {
            child: Some(child),
            out: out.to_path_buf(),
            started: Instant::now(),
            args,
            lines,
            readers,
            code: None,
        }
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    /// Everything it printed so far (stdout lines prefixed with `out| `),
    /// each line with its time since the start.
    pub fn output(&self) -> String {
        self.lines()
            .iter()
            .map(|l| {
                format!(
                    "[{:6.2}s] {}\n",
                    l.at.duration_since(self.started).as_secs_f64(),
                    l.text
                )
            })
            .collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        if self.code.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    self.code = Some(s.code());
                }
            }
        }
        self.code
    }

    /// Polls `ready` every 100 ms until it holds; panics (with the
    /// ingester's output) if the ingester exits first or `limit` passes.
    pub fn wait_until(&mut self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return;
            }
            if let Some(code) = self.exited() {
                self.join_readers();
                panic!(
                    "`appliance {}` exited ({code:?}) while waiting for {what}; its output:\n{}",
                    self.args.join(" "),
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {limit:?} of `appliance {}`; its output:\n{}",
                self.args.join(" "),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the first line after `since` that `matches`, up to `until`.
    pub fn wait_line(
        &mut self,
        since: Instant,
        until: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> Option<Line> {
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| l.at >= since && matches(&l.text))
            {
                return Some(l);
            }
            if Instant::now() >= until || self.exited().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit by itself; panics after `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(code) = self.exited() {
                self.join_readers();
                return code;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "`appliance {}` still running after {limit:?}; its output:\n{}",
                    self.args.join(" "),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` (`TERM`, `INT`) and waits up to `limit` for the exit.
    pub fn signal_and_wait(&mut self, sig: &str, limit: Duration) -> Option<i32> {
        if self.exited().is_none() {
            signal(self.pid().unwrap(), sig);
        }
        self.wait(limit)
    }

    fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// One segment of a live media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSegment {
    /// Media sequence number (EXT-X-MEDIA-SEQUENCE + index).
    pub seq: u64,
    pub uri: String,
    pub duration: f64,
    /// EXT-X-PROGRAM-DATE-TIME as written, and in ms since the epoch.
    pub pdt: Option<String>,
    pub pdt_ms: Option<i64>,
    /// An EXT-X-DISCONTINUITY precedes it.
    pub discontinuity: bool,
    /// The EXT-X-MAP URI in force for it, and whether the tag is in its own
    /// tag block (right before it).
    pub map: Option<String>,
    pub map_here: bool,
}

/// A media playlist as a live client sees it on one reload.
#[derive(Clone, Debug)]
pub struct LivePlaylist {
    pub target_duration: Option<u64>,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<LiveSegment>,
    pub endlist: bool,
}

impl LivePlaylist {
    /// Parses `text`; an error says what is wrong (a playlist read half
    /// written is one: live playlists must be replaced atomically).
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with("#EXTM3U") {
            return Err("does not start with #EXTM3U".into());
        }
        if !text.ends_with('\n') {
            return Err("does not end with a newline (written in place, not renamed?)".into());
        }
        let mut p = LivePlaylist {
            target_duration: None,
            media_sequence: 0,
            discontinuity_sequence: 0,
            segments: Vec::new(),
            endlist: false,
        };
        let mut map: Option<String> = None;
        let mut duration = None;
        let mut pdt = None;
        let mut disc = false;
        let mut map_here = false;
        let mut seen_segment = false;
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            if p.endlist {
                return Err(format!("{line:?} after #EXT-X-ENDLIST"));
            }
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = Some(
                    v.parse()
                        .map_err(|_| format!("bad target duration {v:?}"))?,
                );
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                if seen_segment {
                    return Err("EXT-X-MEDIA-SEQUENCE after the first segment".into());
                }
                p.media_sequence = v.parse().map_err(|_| format!("bad media sequence {v:?}"))?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                if seen_segment {
                    return Err("EXT-X-DISCONTINUITY-SEQUENCE after the first segment".into());
                }
                p.discontinuity_sequence = v
                    .parse()
                    .map_err(|_| format!("bad discontinuity sequence {v:?}"))?;
            } else if line == "#EXT-X-DISCONTINUITY" {
                disc = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                let uri = crate::attr(v, "URI").ok_or(format!("EXT-X-MAP without URI: {v}"))?;
                map = Some(uri.to_owned());
                map_here = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v.split(',').next().unwrap_or("");
                duration = Some(d.parse::<f64>().map_err(|_| format!("bad EXTINF {v:?}"))?);
            } else if line == "#EXT-X-ENDLIST" {
                p.endlist = true;
            } else if !line.starts_with('#') {
                let d = duration.take().ok_or(format!("{line:?} without #EXTINF"))?;
                if !line.ends_with(".m4s") {
                    return Err(format!(
                        "segment URI {line:?} does not end in .m4s (truncated?)"
                    ));
                }
                let seq = p.media_sequence + p.segments.len() as u64;
                let pdt_ms = pdt.as_deref().and_then(parse_pdt);
                p.segments.push(LiveSegment {
                    seq,
                    uri: line.to_owned(),
                    duration: d,
                    pdt: pdt.take(),
                    pdt_ms,
                    discontinuity: std::mem::take(&mut disc),
                    map: map.clone(),
                    map_here: std::mem::take(&mut map_here),
                });
                seen_segment = true;
            }
        }
        if duration.is_some() {
            return Err("#EXTINF without a segment URI at the end (truncated?)".into());
        }
        Ok(p)
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}:\n{text}", path.display()))
    }

    /// Reads `path`, panicking with the reason if it is not a valid playlist.
    pub fn load(path: &Path) -> Self {
        Self::read(path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Discontinuities since the stream began: the ones that slid out
    /// (the discontinuity sequence) plus the visible tags.
    pub fn discontinuities_total(&self) -> u64 {
        self.discontinuity_sequence
            + self.segments.iter().filter(|s| s.discontinuity).count() as u64
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.segments.last().map(|s| s.seq)
    }

    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM|±HHMM)` → ms since the Unix epoch.
pub fn parse_pdt(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let mi: i64 = digits[2..].parse().ok()?;
        (t, sign * (h * 60 + mi))
    };
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let secs: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + hh * 3600 + mm * 60 - offset_min * 60) as f64 + secs) * 1000.0;
    Some(ms.round() as i64)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One read of a playlist by the poller.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Wall clock, ms since the epoch.
    pub wall_ms: i64,
    pub text: String,
}

/// Reads a playlist every `every`, like a live player reloading it, and
/// keeps every version it saw.
pub struct PlaylistPoller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Snapshot>>>,
}

impl PlaylistPoller {
    pub fn start(path: &Path, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || {
            let mut snaps = Vec::new();
            loop {
                let done = flag.load(Ordering::SeqCst);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    snaps.push(Snapshot {
                        at: Instant::now(),
                        wall_ms: now_ms(),
                        text,
                    });
                }
                if done {
                    return snaps;
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Takes one last read and returns every snapshot.
    pub fn finish(mut self) -> Vec<Snapshot> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("poller thread")
    }
}

impl Drop for PlaylistPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What a playlist's history adds up to.
#[derive(Debug, Default)]
pub struct History {
    pub playlists: Vec<(Instant, i64, LivePlaylist)>,
    /// Media sequence numbers of the segments seen with EXT-X-DISCONTINUITY.
    pub discontinuity_seqs: BTreeSet<u64>,
    /// Discontinuities since the start, per the last playlist.
    pub discontinuities_total: u64,
    /// Every segment ever listed, by media sequence number.
    pub segments: BTreeMap<u64, LiveSegment>,
}

/// Checks every invariant RFC 8216 §6.2.2 asks of a live playlist across
/// reloads, over the snapshots of one run of the ingester: each parses (was
/// replaced atomically); the target duration is `target` every time; the
/// media and discontinuity sequences never go back, and the latter counts
/// exactly the discontinuities that slid out; a media sequence number always
/// names the same URI; once the window has `min_window` segments it never
/// has fewer; every segment has a program date-time that advances by the
/// segment's duration except across a discontinuity; every discontinuity
/// carries its own EXT-X-MAP; no segment is longer than the target; once
/// EXT-X-ENDLIST appears the playlist no longer changes.
pub fn check_history(name: &str, snaps: &[Snapshot], target: u64, min_window: usize) -> History {
    let mut h = History::default();
    let dump = |i: usize| -> String {
        let lo = i.saturating_sub(1);
        snaps[lo..=i]
            .iter()
            .map(|s| format!("--- snapshot at wall {} ms:\n{}", s.wall_ms, s.text))
            .collect()
    };
    assert!(!snaps.is_empty(), "{name}: the playlist was never seen");
    let mut reached_window = false;
    let mut ended: Option<String> = None;
    for (i, s) in snaps.iter().enumerate() {
        let p = LivePlaylist::parse(&s.text).unwrap_or_else(|e| {
            panic!(
                "{name}: snapshot {i} is not a valid playlist: {e}:\n{}",
                s.text
            )
        });
        if let Some(end) = &ended {
            assert_eq!(
                &s.text,
                end,
                "{name}: the playlist changed after EXT-X-ENDLIST:\n{}",
                dump(i)
            );
        }
        if p.endlist {
            ended = Some(s.text.clone());
        }
        assert_eq!(
            p.target_duration,
            Some(target),
            "{name}: EXT-X-TARGETDURATION must be {target} on every reload:\n{}",
            dump(i)
        );
        if p.segments.len() >= min_window {
            reached_window = true;
        } else {
            assert!(
                !reached_window,
                "{name}: the window shrank below {min_window} segments:\n{}",
                dump(i)
            );
        }
        for (k, seg) in p.segments.iter().enumerate() {
            assert!(
                seg.pdt_ms.is_some(),
                "{name}: segment {} has no (parsable) EXT-X-PROGRAM-DATE-TIME ({:?}):\n{}",
                seg.uri,
                seg.pdt,
                s.text
            );
            assert!(
                seg.duration > 0.0 && seg.duration.round() as u64 <= target,
                "{name}: EXTINF {} of {} exceeds the target duration {target}:\n{}",
                seg.duration,
                seg.uri,
                s.text
            );
            assert!(
                seg.map.is_some(),
                "{name}: {} has no EXT-X-MAP:\n{}",
                seg.uri,
                s.text
            );
            if seg.discontinuity {
                assert!(
                    seg.map_here,
                    "{name}: the discontinuity before {} has no EXT-X-MAP of its own:\n{}",
                    seg.uri, s.text
                );
                h.discontinuity_seqs.insert(seg.seq);
            }
            if k > 0 {
                let prev = &p.segments[k - 1];
                let (a, b) = (prev.pdt_ms.unwrap(), seg.pdt_ms.unwrap());
                let expected = a + (prev.duration * 1000.0).round() as i64;
                if seg.discontinuity {
                    assert!(
                        b >= expected - 250,
                        "{name}: program date-time goes back across the discontinuity before {}:\n{}",
                        seg.uri,
                        s.text
                    );
                } else {
                    assert!(
                        (b - expected).abs() <= 250,
                        "{name}: program date-time of {} is {} ms off the previous one plus its \
                         duration (no discontinuity between them):\n{}",
                        seg.uri,
                        b - expected,
                        s.text
                    );
                }
            }
            if let Some(old) = h.segments.get(&seg.seq) {
                assert_eq!(
                    (&old.uri, old.discontinuity, &old.pdt),
                    (&seg.uri, seg.discontinuity, &seg.pdt),
                    "{name}: media sequence number {} changed meaning between reloads:\n{}",
                    seg.seq,
                    dump(i)
                );
            }
            h.segments.insert(seg.seq, seg.clone());
        }
        if let Some((_, _, prev)) = h.playlists.last() {
            assert!(
                p.media_sequence >= prev.media_sequence,
                "{name}: EXT-X-MEDIA-SEQUENCE went back from {} to {}:\n{}",
                prev.media_sequence,
                p.media_sequence,
                dump(i)
            );
            assert!(
                p.discontinuity_sequence >= prev.discontinuity_sequence,
                "{name}: EXT-X-DISCONTINUITY-SEQUENCE went back:\n{}",
                dump(i)
            );
            // The segments that slid out since the previous reload, if it
            // listed all of them: the discontinuity sequence grows by the
            // number of discontinuity tags among them.
            let removed: Vec<&LiveSegment> = prev
                .segments
                .iter()
                .filter(|s| s.seq < p.media_sequence)
                .collect();
            if p.media_sequence <= prev.media_sequence + prev.segments.len() as u64 {
                let tags = removed.iter().filter(|s| s.discontinuity).count() as u64;
                assert_eq!(
                    p.discontinuity_sequence - prev.discontinuity_sequence,
                    tags,
                    "{name}: EXT-X-DISCONTINUITY-SEQUENCE must grow by the number of \
                     discontinuity tags that slid out ({tags}):\n{}",
                    dump(i)
                );
            }
            // Segments are only ever appended at the live edge.
            if let (Some(a), Some(b)) = (prev.last_seq(), p.last_seq()) {
                assert!(b >= a, "{name}: the last segment went back:\n{}", dump(i));
            }
        }
        h.playlists.push((s.at, s.wall_ms, p));
    }
    let last = &h.playlists.last().unwrap().2;
    h.discontinuities_total = last.discontinuities_total();
    h
}

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

/// A minimal static HTTP server for the browser test: `routes` map a URL
/// path to a file, or a URL prefix (ending in `/`) to a directory.
/// Every response says `Cache-Control: no-cache`, as a live origin's
/// playlists would.
pub struct StaticServer {
    pub base: String,
    stop: Arc<AtomicBool>,
}

impl StaticServer {
    pub fn start(routes: Vec<(String, PathBuf)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let routes = Arc::new(routes);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let routes = Arc::clone(&routes);
                        std::thread::spawn(move || {
                            let _ = serve_one(stream, &routes);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { base, stop }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one(mut stream: TcpStream, routes: &[(String, PathBuf)]) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let file = routes.iter().find_map(|(prefix, target)| {
        if target.is_dir() {
            let rest = path.strip_prefix(prefix.as_str())?;
            if rest.split('/').any(|c| c == ".." || c.is_empty()) {
                return None;
            }
            Some(target.join(rest))
        } else {
            (path == prefix).then(|| target.clone())
        }
    });
    let body = file.as_ref().and_then(|f| std::fs::read(f).ok());
    let (status, body, ctype) = match body {
        Some(b) => {
            let f = file.unwrap();
            let ctype = match f.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "m3u8" => "application/vnd.apple.mpegurl",
                "mp4" => "video/mp4",
                "m4s" => "video/iso.segment",
                "html" => "text/html; charset=utf-8",
                "js" => "text/javascript",
                _ => "application/octet-stream",
            };
            ("200 OK", b, ctype)
        }
        None => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_date_times_parse() {
        assert_eq!(parse_pdt("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_pdt("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(
            parse_pdt("2000-03-01T00:00:00.000+00:00"),
            Some(951_868_800_000)
        );
        assert_eq!(
            parse_pdt("2026-11-30T07:10:00.250+01:00"),
            parse_pdt("2026-11-30T06:10:00.250Z")
        );
        assert_eq!(
            parse_pdt("2026-11-30T06:10:00.250-0130"),
            parse_pdt("2026-11-30T07:40:00.250Z")
        );
        assert_eq!(parse_pdt("yesterday"), None);
    }

    /// A 3-segment window over segments `first..first+3` of a stream with a
    /// discontinuity before segment 5 (a 4 s gap); `ds` is written as the
    /// discontinuity sequence.
    fn window(first: u64, ds: u64) -> Snapshot {
        let mut t = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{ds}\n"
        );
        for seq in first..first + 3 {
            let gap = if seq >= 5 { 4 } else { 0 };
            if seq == 5 {
                t.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if seq == first || seq == 5 {
                t.push_str(&format!(
                    "#EXT-X-MAP:URI=\"init-{}.mp4\"\n",
                    u64::from(seq >= 5)
                ));
            }
            let s = seq * 2 + gap;
            t.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:{s:02}.000Z\n#EXTINF:2.0,\n{seq}.m4s\n"
            ));
        }
        Snapshot {
            at: Instant::now(),
            wall_ms: 0,
            text: t,
        }
    }

    #[test]
    fn a_window_sliding_over_a_discontinuity_keeps_the_invariants() {
        let snaps: Vec<_> = (0..8)
            .map(|first| window(first, u64::from(first > 5)))
            .collect();
        let h = check_history("test", &snaps, 2, 3);
        assert_eq!(h.discontinuities_total, 1);
        assert_eq!(h.discontinuity_seqs, BTreeSet::from([5]));
        assert_eq!(h.segments.len(), 10);
    }

    #[test]
    #[should_panic(expected = "must grow by the number of discontinuity tags")]
    fn a_discontinuity_sliding_out_must_bump_the_discontinuity_sequence() {
        let snaps: Vec<_> = (0..8).map(|first| window(first, 0)).collect();
        check_history("test", &snaps, 2, 3);
    }

    #[test]
    #[should_panic(expected = "EXT-X-MEDIA-SEQUENCE went back")]
    fn the_media_sequence_must_not_go_back() {
        check_history("test", &[window(3, 0), window(2, 0)], 2, 3);
    }

    #[test]
    fn live_playlists_parse() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
            #EXT-X-MAP:URI=\"init-1.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:00.000Z\n#EXTINF:2.000,\n10.m4s\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:07.000Z\n#EXTINF:2.000,\n11.m4s\n\
            #EXT-X-ENDLIST\n";
        let p = LivePlaylist::parse(text).unwrap();
        assert_eq!(p.target_duration, Some(2));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].seq, 11);
        assert!(p.segments[1].discontinuity && p.segments[1].map_here);
        assert_eq!(p.segments[1].map.as_deref(), Some("init-2.mp4"));
        assert_eq!(p.discontinuities_total(), 2);
        assert!(p.endlist);
        assert!(LivePlaylist::parse(&text[..text.len() - 20]).is_err());
        assert!(LivePlaylist::parse("#EXTM3U\n#EXTINF:2.0,\n1.m").is_err());
    }
}
