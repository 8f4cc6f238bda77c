//! The camera side of the live tests: GStreamer's RTSP server (Debian's,
//! driven by `tests/rtsp/serve.py`) on a loopback port, which the tests can
//! kill, restart, freeze and thaw; a free-port picker; `kill -s` for it and
//! the ingester; and the skip rule (a missing GStreamer skips a test outside
//! CI and fails it under CI).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{manifest_dir, run};

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

pub(super) fn signal(pid: u32, sig: &str) {
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
