//! A real `appliance serve` process on loopback, with its own data
//! directory and config, and a small HTTP client for talking to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::appliance_bin;

pub struct Server {
    child: Option<Child>,
    pid: u32,
    pub base: String,
    pub data: PathBuf,
    pub config: PathBuf,
    stderr_log: PathBuf,
}

/// Config for tests: small chunks (so shared clips span several), fast
/// retries and leases, short playlist max-age (so a CDN revalidates soon).
pub fn test_config(data: &Path, extra: &str) -> String {
    format!(
        r#"
[storage]
data_dir = "{data}"

[uploads]
chunk_size = 65536

[jobs]
workers = 1
lease_secs = 6
backoff_secs = 1

[transcode]
rungs = [480, 360]

[origin]
playlist_max_age_secs = 1
not_found_max_age_secs = 5

[player]
hls_js = "{hls}"

[feed]
model_dir = "{model}"
refresh_secs = 1
{extra}
"#,
        data = data.display(),
        hls = crate::manifest_dir()
            .join("../player/node_modules/hls.js/dist/hls.min.js")
            .display(),
        model = crate::manifest_dir()
            .join("../models/all-MiniLM-L6-v2")
            .display(),
    )
}

impl Server {
    /// Starts a server on `dir/data` with `test_config` (+ `extra` TOML).
    pub fn start(dir: &Path, extra: &str) -> Self {
        Self::start_env(dir, extra, &[])
    }

    /// Like `start`, with `APPLIANCE_*` overrides in the environment.
    pub fn start_env(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Self {
        let data = dir.join("data");
        let config = dir.join("appliance.toml");
        std::fs::write(&config, test_config(&data, extra)).unwrap();
        Self::spawn(&config, &data, dir.join("server.log"), env, None, &[])
    }

    /// Like `start`, with the server's open-file limit (soft and hard) set
    /// to `nofile` by util-linux `prlimit`.
    pub fn start_nofile(dir: &Path, extra: &str, nofile: u64) -> Self {
        let data = dir.join("data");
        let config = dir.join("appliance.toml");
        std::fs::write(&config, test_config(&data, extra)).unwrap();
        Self::spawn(
            &config,
            &data,
            dir.join("server.log"),
            &[],
            Some(nofile),
            &[],
        )
    }

    /// Starts (or restarts) a server on an existing config.
    pub fn start_with(config: &Path, data: &Path, stderr_log: PathBuf) -> Self {
        Self::spawn(config, data, stderr_log, &[], None, &[])
    }

    /// Starts a server on `dir/data` with `test_config`, passing `args` to
    /// the binary too (e.g. `--log-format json`).
    pub fn start_args(dir: &Path, args: &[&str]) -> Self {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.join("appliance.toml");
        std::fs::write(&config, test_config(&data, "")).unwrap();
        Self::spawn(&config, &data, dir.join("server.log"), &[], None, args)
    }

    fn spawn(
        config: &Path,
        data: &Path,
        stderr_log: PathBuf,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        args: &[&str],
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .unwrap();
        // prlimit execs the command, so the child is the server itself.
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(appliance_bin());
                c
            }
            None => Command::new(appliance_bin()),
        };
        // From `/`: nothing the server reads may depend on where it starts.
        let mut child = cmd
            .current_dir("/")
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info,tower_http=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start appliance serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; its log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        Self {
            pid: child.id(),
            child: Some(child),
            base,
            data: data.to_path_buf(),
            config: config.to_path_buf(),
            stderr_log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("server ignored SIGTERM for 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn objects(&self) -> Vec<String> {
        let root = self.data.join("objects");
        crate::files_under(&root)
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A response, with everything tests look at.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The spec's error shape, returning the code.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(
            v["error"]["message"].is_string(),
            "not the spec's error shape: {v}"
        );
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

pub struct Client {
    agent: ureq::Agent,
    pub token: Option<String>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { agent, token: None }
    }

    pub fn with_token(token: &str) -> Self {
        let mut c = Self::new();
        c.token = Some(token.to_owned());
        c
    }

    /// Any request: `headers` added as given, `body` sent when present.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let result = match body {
            Some(b) => self.agent.run(req.body(b.to_vec()).unwrap()),
            None => self.agent.run(req.body(()).unwrap()),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let mut body = Vec::new();
        if method != "HEAD" {
            resp.body_mut().as_reader().read_to_end(&mut body).unwrap();
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, url: &str) -> Resp {
        self.request("GET", url, &[], None)
    }

    pub fn delete(&self, url: &str) -> Resp {
        self.request("DELETE", url, &[], None)
    }

    pub fn post_json(&self, url: &str, v: &Value) -> Resp {
        self.request(
            "POST",
            url,
            &[("content-type", "application/json")],
            Some(&serde_json::to_vec(v).unwrap()),
        )
    }

    /// Opens an SSE stream; events arrive on the returned channel as
    /// `(event, data)` until the stream ends.
    pub fn sse(&self, url: &str) -> mpsc::Receiver<(String, Value)> {
        // An event stream lives as long as the test needs it: the plain
        // agent's 60 s overall limit would end it mid-ladder on a loaded
        // machine. Callers bound their waits themselves (`wait_event`).
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut req = agent.get(url).header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "SSE {url}");
        let reader = BufReader::new(resp.into_body().into_reader());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                    if tx.send((std::mem::take(&mut event), v)).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

/// Registers a user with `role` and returns a client holding its token.
pub fn register(server: &Server, name: &str, role: &str) -> (Client, String) {
    let r = Client::new().post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"username": name, "password": "correct horse battery", "role": role}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        Client::with_token(v["token"].as_str().unwrap()),
        v["user"]["id"].as_str().unwrap().to_owned(),
    )
}

/// Single-shot upload; returns the video id.
pub fn upload_small(server: &Server, client: &Client, file: &Path, meta: &Value) -> String {
    let bytes = std::fs::read(file).unwrap();
    let boundary = "----appliance-test-boundary";
    let name = file.file_name().unwrap().to_string_lossy();
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: video/mp4\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = client.request(
        "POST",
        &server.url("/api/v1/videos"),
        &[("content-type", &ct)],
        Some(&body),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["videoId"].as_str().unwrap().to_owned()
}

/// A 1.5 s 192x108 clip with sound: the smallest thing worth publishing.
pub fn tiny_clip(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("tiny.mp4");
    crate::lavfi(
        &out,
        &[
            "testsrc2=size=192x108:rate=15:duration=1.5",
            "sine=frequency=330:duration=1.5",
        ],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    out
}

/// An admin named `name`, added with `appliance user add` (the API
/// registers none), logged in.
pub fn admin(server: &Server, name: &str) -> Client {
    use std::io::Write;
    let mut add = std::process::Command::new(crate::appliance_bin())
        .args(["user", "add", name, "--role", "admin", "--config"])
        .arg(&server.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(add.wait().unwrap().success(), "appliance user add failed");
    let login = Client::new().post_json(
        &server.url("/api/v1/auth/login"),
        &json!({"username": name, "password": "correct horse battery"}),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    Client::with_token(login.json()["token"].as_str().unwrap())
}

/// Uploads `file` as a public video and waits until it is ready. `sound`
/// names an existing sound to reuse (`GET /sounds/{id}`), or is empty:
/// the video's own audio then becomes (or is linked to) its sound.
pub fn publish(
    server: &Server,
    creator: &Client,
    file: &Path,
    title: &str,
    tags: &[&str],
    sound: &str,
) -> String {
    let mut meta =
        json!({"title": title, "description": "", "hashtags": tags, "visibility": "public"});
    if !sound.is_empty() {
        meta["soundId"] = json!(sound);
    }
    let id = upload_small(server, creator, file, &meta);
    assert_eq!(
        wait_final(server, creator, &id, Duration::from_secs(120))["status"],
        "ready"
    );
    id
}

/// Polls the status until `status` is final (a playable video whose
/// ladder still grows is not); returns the last status.
pub fn wait_final(server: &Server, client: &Client, video: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = client.get(&server.url(&format!("/api/v1/videos/{video}/status")));
        if r.status == 200 {
            let v = r.json();
            if v["status"] != "processing" && v["stage"] != "growing" {
                return v;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "video {video} not final after {limit:?} (last: {} {}); server log:\n{}",
                r.status,
                r.text(),
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for an SSE event named `name` (other events are collected).
pub fn wait_event(
    rx: &mpsc::Receiver<(String, Value)>,
    name: &str,
    limit: Duration,
) -> (Value, Vec<(String, Value)>) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((e, v)) if e == name => return (v, seen),
            Ok(ev) => seen.push(ev),
            Err(_) => panic!("no `{name}` event within {limit:?}; saw {seen:?}"),
        }
    }
}

/// `which` on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `ffmpeg` reads the whole ladder at `master` (a URL, or a path on disk)
/// and prints no error.
pub fn assert_decodes(master: &str) {
    let out = crate::run(
        Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-i", master, "-f", "null", "-"]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.trim().is_empty(),
        "ffmpeg reported errors over HTTP:\n{}",
        out.stderr
    );
}
