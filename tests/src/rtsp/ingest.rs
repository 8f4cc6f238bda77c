//! `appliance ingest-rtsp` under test: the process in the background, every
//! line it prints (stdout and stderr) with when it arrived, waits on its
//! output and its exit, and the signals that stop it.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::server::signal;
use crate::appliance_bin;

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
