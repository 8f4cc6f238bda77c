//! nginx from Debian with the tests' CDN config (`tests/nginx/cdn.conf`:
//! `proxy_cache` in front of the box), on a free loopback port, stopped on
//! drop. Used by the CDN, player and signed-playback tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::manifest_dir;

pub struct Nginx {
    child: Child,
    pub prefix: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx caching `upstream` (`host:port`) with its files under `prefix`.
    pub fn start(prefix: &Path, upstream: &str) -> Self {
        std::fs::create_dir_all(prefix).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let conf = std::fs::read_to_string(manifest_dir().join("nginx/cdn.conf"))
            .unwrap()
            .replace("__LISTEN__", &listen)
            .replace("__UPSTREAM__", upstream)
            .replace("__PREFIX__", &prefix.display().to_string());
        std::fs::write(prefix.join("cdn.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("cdn.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            prefix: prefix.to_path_buf(),
            base: format!("http://{listen}"),
        }
    }

    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.prefix.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// nginx logs a request after the client has its response: polls
    /// briefly until `done` holds.
    pub fn wait_log(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if done(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cache key of every entry nginx stored (its `KEY:` line).
    pub fn cached_keys(&self) -> Vec<String> {
        crate::files_under(&self.prefix.join("cache"))
            .into_iter()
            .filter_map(|f| {
                let bytes = std::fs::read(f).ok()?;
                let at = bytes.windows(6).position(|w| w == b"\nKEY: ")? + 6;
                let end = bytes[at..].iter().position(|b| *b == b'\n')? + at;
                Some(String::from_utf8_lossy(&bytes[at..end]).into_owned())
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
