//! The API contract as outside tools read it: Schemathesis fuzzes every
//! operation of the served `/openapi.json` with all of its checks, and a
//! client generated from that document by `openapi-python-client` calls
//! search (paged with its cursor), trending hashtags, the feed with a
//! cursor and analytics with a period.

use std::process::Command;
use std::time::Duration;

use e2e::server::{have, publish, register, tiny_clip, Client, Server};
use e2e::{manifest_dir, run};
use serde_json::Value;

#[test]
fn schemathesis_finds_no_failure_in_any_check() {
    assert!(have("st"), "schemathesis is installed by scripts/setup");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    // An admin, so the ops routes are fuzzed past their role check.
    let mut add = Command::new(e2e::appliance_bin())
        .args(["user", "add", "stadmin", "--role", "admin", "--config"])
        .arg(&server.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(b"correct horse battery\n").unwrap();
    }
    assert!(add.wait().unwrap().success(), "appliance user add failed");
    let login = Client::new().post_json(
        &server.url("/api/v1/auth/login"),
        &serde_json::json!({"username": "stadmin", "password": "correct horse battery"}),
    );
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let out = run(
        Command::new("st")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            // Serializers for media types Schemathesis does not know (tus).
            .env(
                "SCHEMATHESIS_HOOKS",
                manifest_dir().join("schemathesis/hooks.py"),
            )
            .arg("--config-file")
            .arg(manifest_dir().join("schemathesis/schemathesis.toml"))
            .args(["run", &server.url("/openapi.json"), "--url", &server.base])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "all", "--max-examples", "25", "--seed", "1"])
            .arg("--no-color"),
        Duration::from_secs(240),
    );
    assert_eq!(
        out.code,
        Some(0),
        "schemathesis failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stdout.contains("Failures:") && out.stdout.contains(" passed"),
        "{}",
        out.stdout
    );
    assert!(
        !server.log().contains("internal error"),
        "a 5xx under fuzzing:\n{}",
        server.log()
    );
}

#[test]
fn a_client_generated_from_openapi_calls_search_feed_and_analytics() {
    assert!(
        have("openapi-python-client"),
        "openapi-python-client is installed by scripts/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (creator, creator_id) = register(&server, "gencreator", "creator");
    let clip = tiny_clip(dir.path());
    let mut videos = Vec::new();
    for title in ["harbour sunrise", "mountain sunrise", "city sunrise"] {
        videos.push(publish(&server, &creator, &clip, title, &["sunrise"], ""));
    }
    let (viewer, _) = register(&server, "genviewer", "viewer");
    let token = |c: &Client| c.token.clone().expect("register gives a token");
    // Search ranks by embeddings too: once every video is indexed, its
    // order holds still while the client pages through it.
    let indexed = || {
        let text = Client::new().get(&server.url("/metrics")).text();
        text.lines()
            .find_map(|l| l.strip_prefix("appliance_feed_index_videos "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let start = std::time::Instant::now();
    while indexed() < videos.len() as f64 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "videos not indexed within 90 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, Client::new().get(&server.url("/openapi.json")).body).unwrap();
    let gen = dir.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    let out = run(
        Command::new("openapi-python-client")
            .args(["generate", "--meta", "none", "--config"])
            .arg(manifest_dir().join("clients/openapi-python-client.yaml"))
            .arg("--path")
            .arg(&spec)
            .arg("--output-path")
            .arg(gen.join("appliance_client")),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        !out.stdout.contains("WARNING") && !out.stderr.contains("WARNING"),
        "the generator left parts of the API out:\n{}{}",
        out.stdout,
        out.stderr
    );

    let out = run(
        Command::new("python3")
            .arg(manifest_dir().join("clients/generated_client.py"))
            .arg(&gen)
            .args([
                &server.base,
                &token(&creator),
                &creator_id,
                &token(&viewer),
                &videos[0],
                "sunrise",
            ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["search"]["status"], 200, "{v}");
    let found: Vec<&str> = v["search"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in &videos {
        assert!(found.contains(&id.as_str()), "search missed {id}: {v}");
    }
    // Page by page, the same results as in one page.
    let paged: Vec<&str> = v["searchPages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p.as_array().unwrap().iter().filter_map(Value::as_str))
        .collect();
    assert_eq!(paged, found, "{v}");
    assert_eq!(v["trending"]["status"], 200, "{v}");
    assert!(v["trending"]["nextCursor"].is_null(), "{v}");
    assert_eq!(v["feed"]["status"], serde_json::json!([200, 200]), "{v}");
    assert!(
        v["feed"]["cursor"].is_string(),
        "no cursor after page 1: {v}"
    );
    let pages = v["feed"]["pages"].as_array().unwrap();
    assert_eq!(pages[0].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(pages[1].as_array().unwrap().len(), 1, "{v}");
    assert_ne!(
        pages[0], pages[1],
        "the cursor did not move the feed on: {v}"
    );
    assert_eq!(
        v["analytics"]["status"],
        serde_json::json!([200, 200]),
        "{v}"
    );
    assert_eq!(
        v["analytics"]["periods"],
        serde_json::json!(["7d", "30d"]),
        "{v}"
    );
}
