//! The operator's commands run against a real data directory beside a real
//! server: `appliance user add|list|passwd` (a changed password logs in,
//! the old one and every token issued before do not), `appliance jobs`
//! (a running job, then the same job failed with its reason), and
//! `serve --demo`, which must print the demo video's URL again after a
//! restart whatever else the demo user uploaded.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::server::{register, test_config, tiny_clip, upload_small, wait_final, Client, Server};
use e2e::{appliance, appliance_bin, lavfi, Output};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// `appliance <args> --config <config>` with `stdin` as its input.
fn cli(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(appliance_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("appliance");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(o: &Output, what: &str) -> String {
    assert_eq!(o.code, Some(0), "{what}:\n{}\n{}", o.stdout, o.stderr);
    o.stdout.clone()
}

fn login(server_url: &str, name: &str, password: &str) -> (u16, Option<String>) {
    let r = Client::new().post_json(
        &format!("{server_url}/api/v1/auth/login"),
        &json!({"username": name, "password": password}),
    );
    let token = (r.status == 200).then(|| r.json()["token"].as_str().unwrap().to_owned());
    (r.status, token)
}

#[test]
fn user_list_and_passwd_against_a_serving_box() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let config = server.config.clone();
    let base = server.base.clone();

    ok(
        &cli(
            &config,
            &["user", "add", "ann", "--role", "creator"],
            &format!("{PASSWORD}\n"),
        ),
        "user add ann",
    );
    ok(
        &cli(
            &config,
            &["user", "add", "root-ops", "--role", "admin"],
            &format!("{PASSWORD}\n"),
        ),
        "user add root-ops",
    );
    let (_, viewer_id) = register(&server, "vic", "viewer");
    assert!(!viewer_id.is_empty());
    let (status, token) = login(&base, "ann", PASSWORD);
    assert_eq!(status, 200);
    let ann = Client::with_token(&token.unwrap());
    let clip = tiny_clip(dir.path());
    upload_small(&server, &ann, &clip, &json!({"title": "one"}));

    // The table: a header, then one line per user, oldest first.
    let table = ok(&cli(&config, &["user", "list"], ""), "user list");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["USERNAME", "ROLE", "CREATED", "(UTC)", "VIDEOS"],
        "{table}"
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l[0] == name)
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
            .clone()
    };
    assert_eq!((row("ann")[1], row("ann")[4]), ("creator", "1"), "{table}");
    assert_eq!(
        (row("root-ops")[1], row("root-ops")[4]),
        ("admin", "0"),
        "{table}"
    );
    assert_eq!((row("vic")[1], row("vic")[4]), ("viewer", "0"), "{table}");
    let listed: Value = serde_json::from_str(&ok(
        &cli(&config, &["user", "list", "--json"], ""),
        "--json",
    ))
    .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    let vic = items.iter().find(|u| u["username"] == "vic").unwrap();
    assert_eq!(vic["id"], viewer_id.as_str());
    assert_eq!(vic["role"], "viewer");
    assert!(vic["createdAt"].as_str().unwrap().ends_with('Z'), "{vic}");

    // The rule `add` applies; an unknown user is an error.
    let short = cli(&config, &["user", "passwd", "ann"], "short\n");
    assert_ne!(short.code, Some(0));
    assert!(short.stderr.contains("10–1024"), "{}", short.stderr);
    let nobody = cli(
        &config,
        &["user", "passwd", "nobody"],
        "a long enough secret\n",
    );
    assert_ne!(nobody.code, Some(0));
    assert!(nobody.stderr.contains("not found"), "{}", nobody.stderr);
    // Nothing changed by the refusals.
    assert_eq!(ann.get(&server.url("/api/v1/feed/following")).status, 200);

    // A second session, then the change: both tokens die with the old password.
    let (_, second) = login(&base, "ann", PASSWORD);
    let second = Client::with_token(&second.unwrap());
    let changed = ok(
        &cli(
            &config,
            &["user", "passwd", "ann"],
            "a brand new passphrase\r\n",
        ),
        "user passwd",
    );
    assert!(changed.contains("2 token(s) revoked"), "{changed}");
    for client in [&ann, &second] {
        let r = client.get(&server.url("/api/v1/feed/following"));
        assert_eq!(
            r.status,
            401,
            "a token issued before the change still works: {}",
            r.text()
        );
    }
    assert_eq!(
        login(&base, "ann", PASSWORD).0,
        401,
        "the old password still logs in"
    );
    let (status, token) = login(&base, "ann", "a brand new passphrase");
    assert_eq!(
        status, 200,
        "the new password (sent with CRLF) does not log in"
    );
    let fresh = Client::with_token(&token.unwrap());
    assert_eq!(fresh.get(&server.url("/api/v1/feed/following")).status, 200);
    // Other users keep their passwords.
    assert_eq!(login(&base, "root-ops", PASSWORD).0, 200);
}

#[test]
fn jobs_shows_a_running_job_then_its_failure_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("long.mp4");
    lavfi(
        &clip,
        &[
            "testsrc2=size=1280x720:rate=30:duration=20",
            "sine=frequency=440:duration=20",
        ],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "600",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    // Key frames 20 s apart: not a top rung as it is, so it is transcoded
    // (seconds of work to interrupt), not remuxed.
    // One attempt per job: a job whose process dies fails at the next start.
    let mut server = Server::start_env(dir.path(), "", &[("APPLIANCE_JOBS__MAX_ATTEMPTS", "1")]);
    let (config, data) = (server.config.clone(), server.data.clone());

    let empty = ok(&cli(&config, &["jobs"], ""), "jobs");
    assert!(empty.contains("no queued/running/failed jobs"), "{empty}");

    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(&server, &ann, &clip, &json!({"title": "doomed upload"}));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = ann
            .get(&server.url(&format!("/api/v1/videos/{video}/status")))
            .json();
        if s["attempts"].as_u64().unwrap_or(0) >= 1 {
            assert_ne!(s["stage"], "done", "finished too soon to fail: {s}");
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = ok(&cli(&config, &["jobs"], ""), "jobs");
    let line = running
        .lines()
        .find(|l| l.contains(&video))
        .unwrap_or_else(|| panic!("{video} not listed:\n{running}"));
    assert!(
        line.contains("running") && line.contains("1/1") && line.contains("ann"),
        "{running}"
    );
    assert!(line.contains("doomed upload"), "{running}");
    server.kill9();

    // Down, the catalog still answers; after the restart the job is failed.
    let server = Server::start_with(&config, &data, dir.path().join("server2.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let v: Value = serde_json::from_str(&ok(
            &cli(&config, &["jobs", "--failed", "--json"], ""),
            "jobs --json",
        ))
        .unwrap();
        if !v["items"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no failed job:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let job = &failed["items"][0];
    assert_eq!(job["videoId"], video.as_str(), "{failed}");
    assert_eq!(job["state"], "failed");
    assert_eq!(
        (job["attempts"].as_u64(), job["maxAttempts"].as_u64()),
        (Some(2), Some(1))
    );
    let reason = job["reason"].as_str().unwrap();
    assert!(reason.contains("gave up after 1 attempts"), "{failed}");
    assert_eq!(failed["counts"]["failed"], 1, "{failed}");

    let text = ok(&cli(&config, &["jobs", "--failed"], ""), "jobs --failed");
    let line = text
        .lines()
        .find(|l| l.contains(&video))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("failed") && line.contains("gave up after 1 attempts"),
        "{text}"
    );
    assert!(text.contains("in the catalog: 1 failed"), "{text}");

    // A job that succeeds is not a failure, but `--all` lists it.
    let tiny = tiny_clip(dir.path());
    let good = upload_small(&server, &ann, &tiny, &json!({"title": "fine"}));
    assert_eq!(
        wait_final(&server, &ann, &good, Duration::from_secs(120))["status"],
        "ready"
    );
    let failed_only = ok(&cli(&config, &["jobs", "--failed"], ""), "jobs --failed");
    assert!(!failed_only.contains(&good), "{failed_only}");
    let all = ok(
        &cli(&config, &["jobs", "--all", "--limit", "10"], ""),
        "jobs --all",
    );
    let line = all
        .lines()
        .find(|l| l.contains(&good))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(line.contains("succeeded"), "{all}");
    let one = ok(
        &cli(&config, &["jobs", "--all", "--limit", "1"], ""),
        "--limit 1",
    );
    assert_eq!(
        one.lines().count(),
        3,
        "header, one job, the summary:\n{one}"
    );
}

#[test]
fn jobs_and_user_list_refuse_a_data_dir_without_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("appliance.toml");
    std::fs::write(&config, test_config(&dir.path().join("nowhere"), "")).unwrap();
    for args in [&["jobs"][..], &["user", "list"], &["user", "passwd", "ann"]] {
        let o = cli(&config, args, "a long enough secret\n");
        assert_ne!(o.code, Some(0), "{args:?}");
        assert!(o.stderr.contains("no catalog at"), "{args:?}: {}", o.stderr);
    }
    assert!(
        !dir.path().join("nowhere").exists(),
        "a data dir was created"
    );
    let help = appliance(&["jobs", "--help"], Duration::from_secs(30));
    assert!(help.stdout.contains("--failed"), "{}", help.stdout);
}

/// `appliance serve --demo FILE`, its stdout lines on a channel.
struct DemoServer {
    child: Child,
    lines: mpsc::Receiver<String>,
    base: String,
}

impl DemoServer {
    fn start(config: &Path, demo: &Path, log: PathBuf) -> Self {
        let mut child = Command::new(appliance_bin())
            .current_dir("/")
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--demo")
            .arg(demo)
            .env("RUST_LOG", "info,tower_http=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("appliance serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut s = Self {
            child,
            lines,
            base: String::new(),
        };
        s.base = s.wait_line("listening on ", Duration::from_secs(60));
        s
    }

    /// The rest of the first line starting with `prefix` (after trimming).
    fn wait_line(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.trim().strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!("no `{prefix}` line within {limit:?}"),
            }
        }
    }

    /// The video id in the `player:` URL the demo prints once it is ready.
    fn demo_video(&self) -> String {
        let url = self.wait_line("player:", Duration::from_secs(180));
        let id = url
            .rsplit_once("/play/")
            .unwrap_or_else(|| panic!("not a player URL: {url}"))
            .1;
        assert!(url.starts_with(&self.base), "{url} is not on {}", self.base);
        id.to_owned()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `video` is final, through `base`'s status route.
fn wait_ready(base: &str, client: &Client, video: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = client
            .get(&format!("{base}/api/v1/videos/{video}/status"))
            .json();
        if s["status"] == "ready" && s["stage"] != "growing" {
            return;
        }
        assert!(s["status"] != "failed", "{s}");
        assert!(Instant::now() < deadline, "not ready: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Multipart upload of `file` through `base` (the helpers take a `Server`).
fn upload(base: &str, client: &Client, file: &Path, title: &str) -> String {
    let boundary = "----appliance-cli-test";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"other.mp4\"\r\nContent-Type: video/mp4\r\n\r\n",
        json!({"title": title, "description": "not the demo", "visibility": "public"})
    )
    .into_bytes();
    body.extend_from_slice(&std::fs::read(file).unwrap());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = client.request(
        "POST",
        &format!("{base}/api/v1/videos"),
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        Some(&body),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["videoId"].as_str().unwrap().to_owned()
}

#[test]
fn a_restarted_demo_prints_the_demo_video_not_the_latest_upload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("appliance.toml");
    std::fs::write(&config, test_config(&dir.path().join("data"), "")).unwrap();
    let demo = tiny_clip(dir.path());
    let other = dir.path().join("other.mp4");
    lavfi(
        &other,
        &[
            "testsrc=size=160x90:rate=15:duration=1",
            "sine=frequency=220:duration=1",
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

    let first = DemoServer::start(&config, &demo, dir.path().join("1.log"));
    let demo_id = first.demo_video();
    // The demo user uploads something else, which becomes their newest.
    let (_, token) = login(&first.base, "demo", "demo-password");
    let demo_user = Client::with_token(&token.unwrap());
    let newer = upload(&first.base, &demo_user, &other, "newer");
    wait_ready(&first.base, &demo_user, &newer);
    first.stop();

    let second = DemoServer::start(&config, &demo, dir.path().join("2.log"));
    assert_eq!(
        second.demo_video(),
        demo_id,
        "the restarted demo printed another video"
    );
    second.stop();
    let log = std::fs::read_to_string(dir.path().join("2.log")).unwrap();
    assert!(
        !log.contains("demo: transcoding"),
        "the demo was transcoded again:\n{log}"
    );

    // Deleted, it is made again (and found again after that).
    let third = DemoServer::start(&config, &demo, dir.path().join("3.log"));
    assert_eq!(third.demo_video(), demo_id);
    let r = demo_user.delete(&format!("{}/api/v1/videos/{demo_id}", third.base));
    assert_eq!(r.status, 204, "{}", r.text());
    third.stop();
    let fourth = DemoServer::start(&config, &demo, dir.path().join("4.log"));
    let remade = fourth.demo_video();
    assert_ne!(remade, demo_id);
    assert_ne!(remade, newer);
    fourth.stop();
    let fifth = DemoServer::start(&config, &demo, dir.path().join("5.log"));
    assert_eq!(fifth.demo_video(), remade);
    fifth.stop();
}
