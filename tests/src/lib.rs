//! Helpers for the cross-crate end-to-end tests in `tests/tests/`: they run
//! the real `appliance` binary (and the real `ffmpeg`/`ffprobe`) on real media,
//! every child process under a timeout so nothing can hang CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

pub mod ladder;
pub mod nginx;
pub mod player;
pub mod rtsp;
pub mod server;
pub mod services;

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd`, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = match child.wait_timeout(limit).expect("wait") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {limit:?}: {shown}");
        }
    };
    Output {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The `appliance` binary built next to this test binary (same profile),
/// or the one `E2E_APPLIANCE_BIN` names (to run the suite against another
/// build; the name stays outside the `APPLIANCE_` prefix, which the
/// server reads as its own configuration and refuses unknown keys of).
pub fn appliance_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_APPLIANCE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/appliance
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("appliance");
    assert!(
        bin.is_file(),
        "{} not found: build it first (`cargo build --release -p appliance`; scripts/test does)",
        bin.display()
    );
    bin
}

pub fn appliance(args: &[&str], limit: Duration) -> Output {
    run(
        Command::new(appliance_bin())
            .args(args)
            .env("NO_COLOR", "1"),
        limit,
    )
}

/// This package's directory in the checkout being tested, read at run time:
/// `env!` would bake in the checkout the binary was first built in, and CI
/// builds into one persistent target dir from a fresh clone each time.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The shared sample clips (`../shared/media` from the repo root).
pub fn shared_media(name: &str) -> PathBuf {
    let root = manifest_dir().parent().expect("repo root").to_owned();
    let p = root.join("../shared/media").join(name);
    assert!(p.is_file(), "missing sample clip {}", p.display());
    p
}

pub fn golden_dir() -> PathBuf {
    manifest_dir().join("golden")
}

/// Generates a test clip with `ffmpeg -f lavfi`; `args` go between the inputs and the output.
pub fn lavfi(out: &Path, inputs: &[&str], args: &[&str]) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]);
    for i in inputs {
        cmd.args(["-f", "lavfi", "-i", i]);
    }
    cmd.args(args).arg(out);
    let o = run(&mut cmd, Duration::from_secs(300));
    assert_eq!(
        o.code,
        Some(0),
        "ffmpeg failed to generate {}: {}",
        out.display(),
        o.stderr
    );
}

pub fn ffprobe_json(target: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(target);
    let o = run(&mut cmd, Duration::from_secs(120));
    assert_eq!(
        o.code,
        Some(0),
        "ffprobe {} failed: {}",
        target.display(),
        o.stderr
    );
    serde_json::from_str(&o.stdout).expect("ffprobe json")
}

/// Presentation times (seconds, as ffprobe prints them) of the keyframes of a playlist's video.
pub fn keyframe_times(playlist: &Path) -> Vec<String> {
    let v = ffprobe_json(
        playlist,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
        ],
    );
    v["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| p["flags"].as_str().unwrap_or("").starts_with('K'))
        .map(|p| p["pts_time"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A parsed media playlist: (target duration, [(EXTINF seconds, uri)]).
pub fn media_playlist(path: &Path) -> (u64, Vec<(f64, String)>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut target = 0;
    let mut segs = Vec::new();
    let mut pending = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = t.parse().expect("target duration");
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            pending = Some(d.split(',').next().unwrap().parse::<f64>().expect("extinf"));
        } else if !line.starts_with('#') && !line.is_empty() {
            segs.push((pending.take().expect("EXTINF before uri"), line.to_owned()));
        }
    }
    (target, segs)
}

/// Attribute lists of the `EXT-X-STREAM-INF` lines of a master playlist, with their URIs.
pub fn variants(master: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(master).expect("master");
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            l.strip_prefix("#EXT-X-STREAM-INF:")
                .map(|a| (a.to_owned(), lines[i + 1].to_owned()))
        })
        .collect()
}

pub fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    // Attribute values may contain commas inside quotes (CODECS).
    let mut rest = attrs;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k == name {
            return Some(v);
        }
        rest = next;
    }
    None
}

/// Every file under `dir` (recursively), sorted; empty if `dir` is missing.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Unix seconds as RFC 3339 UTC (`2026-11-30T13:00:00Z`), as clients send
/// timestamps.
pub fn rfc3339(secs: i64) -> String {
    let ((y, m, d), (h, min, s)) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-30T13:00:00.250Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let ((y, m, d), (h, min, s)) = civil(ms.div_euclid(1000));
    let milli = ms.rem_euclid(1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Unix seconds as a UTC date and time of day (Howard Hinnant's
/// days-from-civil, inverted), to keep the tests free of a date crate.
fn civil(secs: i64) -> ((i64, i64, i64), (i64, i64, i64)) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    ((y, m, d), (rem / 3600, rem % 3600 / 60, rem % 60))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(1_796_050_800), "2026-11-30T15:00:00Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(
            super::rfc3339_ms(1_796_050_800_250),
            "2026-11-30T15:00:00.250Z"
        );
        assert_eq!(super::rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
