//! `appliance serve` across its life: config errors before start, `kill -9`
//! and SIGTERM in the middle of a transcode, upload sessions that expire.

use std::time::Duration;

use e2e::run;
use e2e::server::{assert_decodes, register, upload_small, wait_event, wait_final, Client, Server};
use serde_json::json;

/// Config errors are caught before anything starts.
#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("appliance.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_adress = 1\n",
    )
    .unwrap();
    let out = e2e::appliance(
        &["serve", "--config", config.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("listen_adress"), "{}", out.stderr);
    let out = run(
        std::process::Command::new(e2e::appliance_bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("APPLIANCE_SERVER__LISTEN", "127.0.0.1:0")
            .env("APPLIANCE_JOBS__WROKERS", "2"),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1));
}

/// `kill -9` in the middle of a transcode: after a restart the same video
/// becomes ready, and nothing is left behind. A video deleted while it
/// transcodes never appears.
#[test]
fn crash_mid_transcode_and_delete_mid_transcode() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough at 1080p to be caught mid-transcode on a fast box.
    let src = dir.path().join("long.mp4");
    e2e::lavfi(
        &src,
        &[
            "testsrc2=size=1920x1080:rate=30:duration=12",
            "sine=frequency=440:duration=12",
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
    let extra = "";
    let mut server = Server::start(dir.path(), extra);
    let config = server.config.clone();
    let data = server.data.clone();
    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(&server, &ann, &src, &json!({"title": "crash me"}));
    let events = ann.sse(&server.url(&format!("/api/v1/videos/{video}/events")));
    let (_, _) = wait_event(&events, "transcode.progress", Duration::from_secs(60));
    // Some real progress, then the plug is pulled.
    loop {
        let (v, _) = wait_event(&events, "transcode.progress", Duration::from_secs(60));
        if v["percent"].as_f64().unwrap_or(0.0) > 5.0 {
            break;
        }
    }
    server.kill9();
    let server = Server::start_with(&config, &data, dir.path().join("server2.log"));
    let status = wait_final(&server, &ann, &video, Duration::from_secs(300));
    assert_eq!(status["status"], "ready", "{status}");
    assert!(
        status["attempts"].as_u64().unwrap() >= 2,
        "the job ran again: {status}"
    );
    let master = server.url(&format!("/hls/{video}/master.m3u8"));
    assert_decodes(&master);
    let objects = server.objects();
    let expected_prefix = format!("videos/{video}/");
    assert!(
        objects.iter().all(|o| o.starts_with(&expected_prefix)),
        "orphans: {objects:?}"
    );
    let work: Vec<_> = std::fs::read_dir(data.join("work")).unwrap().collect();
    assert!(work.is_empty(), "scratch left behind: {work:?}");

    // Delete while transcoding: never published, nothing left.
    let doomed = upload_small(&server, &ann, &src, &json!({"title": "doomed"}));
    let events = ann.sse(&server.url(&format!("/api/v1/videos/{doomed}/events")));
    wait_event(&events, "transcode.progress", Duration::from_secs(60));
    let r = ann.delete(&server.url(&format!("/api/v1/videos/{doomed}")));
    assert_eq!(r.status, 204);
    let (v, _) = wait_event(&events, "transcode.failed", Duration::from_secs(30));
    assert_eq!(v["stage"], "deleted");
    // Give a zombie worker every chance to publish.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        ann.get(&server.url(&format!("/api/v1/videos/{doomed}")))
            .status,
        404
    );
    assert_eq!(
        Client::new()
            .get(&server.url(&format!("/hls/{doomed}/master.m3u8")))
            .status,
        404
    );
    let objects = server.objects();
    assert!(
        !objects.iter().any(|o| o.contains(&doomed)),
        "deleted video left {objects:?}"
    );
    let jobs_idle = server.log();
    assert!(!jobs_idle.contains("panicked"), "{jobs_idle}");
}

/// SIGTERM mid-transcode: the job is released, not failed, and the next
/// start finishes it.
#[test]
fn graceful_shutdown_releases_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("long.mp4");
    e2e::lavfi(
        &src,
        &["testsrc2=size=1920x1080:rate=30:duration=12"],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let mut server = Server::start(dir.path(), "[server]\nshutdown_grace_secs = 0\n");
    let (config, data) = (server.config.clone(), server.data.clone());
    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(&server, &ann, &src, &json!({"title": "t"}));
    let events = ann.sse(&server.url(&format!("/api/v1/videos/{video}/events")));
    wait_event(&events, "transcode.progress", Duration::from_secs(60));
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("released for the next start"),
        "{}",
        server.log()
    );
    let server = Server::start_with(&config, &data, dir.path().join("server2.log"));
    let status = wait_final(&server, &ann, &video, Duration::from_secs(300));
    assert_eq!(status["status"], "ready", "{status}");
}

/// Upload sessions expire: writes and completion are refused with
/// `UPLOAD_EXPIRED`, and the chunks are cleaned up.
#[test]
fn upload_sessions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_env(
        dir.path(),
        "",
        &[("APPLIANCE_UPLOADS__SESSION_TTL_SECS", "2")],
    );
    let (ann, _) = register(&server, "ann", "creator");
    let s = ann
        .post_json(
            &server.url("/api/v1/uploads/init"),
            &json!({"filename": "a.mp4", "fileSize": 100_000, "mimeType": "video/mp4"}),
        )
        .json();
    let id = s["uploadId"].as_str().unwrap().to_owned();
    let chunk = vec![7u8; 65536];
    let put = |n: u32, body: &[u8]| {
        ann.request(
            "PUT",
            &server.url(&format!("/api/v1/uploads/{id}/chunks/{n}")),
            &[],
            Some(body),
        )
    };
    assert_eq!(put(0, &chunk).status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let r = put(1, &chunk[..100_000 - 65536]);
    assert_eq!((r.status, r.error_code().as_str()), (410, "UPLOAD_EXPIRED"));
    let r = ann.post_json(
        &server.url(&format!("/api/v1/uploads/{id}/complete")),
        &json!({"title": "late"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (410, "UPLOAD_EXPIRED"));
    assert_eq!(
        ann.get(&server.url(&format!("/api/v1/uploads/{id}")))
            .status,
        410
    );
    // The janitor (it also runs at start) removes what the session held.
    let (config, data) = (server.config.clone(), server.data.clone());
    server.kill9();
    let server = Server::start_with(&config, &data, dir.path().join("server2.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.objects().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "expired chunks kept: {:?}",
            server.objects()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
