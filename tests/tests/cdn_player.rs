//! The origin with real clients in front of it: nginx as a caching CDN
//! (`proxy_cache`), and hls.js in headless Chromium. Both programs come
//! from Debian/npm and are installed by `scripts/setup`; outside CI a
//! missing one skips its test with a message.

use std::time::Duration;

use e2e::nginx::Nginx;
use e2e::server::{have, register, upload_small, wait_final, Client, Server};
use e2e::shared_media;
use serde_json::json;

fn available(program: &str, what: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is required in CI (scripts/setup installs it) for {what}"
    );
    eprintln!("SKIPPED: {program} is not installed ({what}); run scripts/setup");
    false
}

#[test]
fn nginx_proxy_cache_in_front_of_the_origin() {
    if !available("nginx", "the CDN test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    let public = upload_small(
        &server,
        &ann,
        &shared_media("prog_640x360_h264_aac_8s.mp4"),
        &json!({"title": "public"}),
    );
    let private = upload_small(
        &server,
        &ann,
        &shared_media("h264_1080p50_1s.mp4"),
        &json!({"title": "private", "visibility": "private"}),
    );
    for v in [&public, &private] {
        assert_eq!(
            wait_final(&server, &ann, v, Duration::from_secs(240))["status"],
            "ready"
        );
    }
    let prefix = dir.path().join("cdn");
    std::fs::create_dir_all(&prefix).unwrap();
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let cdn = Nginx::start(&prefix, &upstream);
    let client = Client::new();
    let url = |p: &str| format!("{}{p}", cdn.base);

    // Segments: fetched once from the origin, then served from the cache.
    let seg = format!("/hls/{public}/360p/0.m4s");
    let first = client.get(&url(&seg));
    assert_eq!(
        (first.status, first.header("x-cache-status")),
        (200, Some("MISS"))
    );
    let second = client.get(&url(&seg));
    assert_eq!(
        (second.status, second.header("x-cache-status")),
        (200, Some("HIT"))
    );
    assert_eq!(first.body, second.body);
    assert_eq!(
        first.body,
        client.get(&server.url(&seg)).body,
        "the CDN serves the origin's bytes"
    );
    let part = client.request("GET", &url(&seg), &[("range", "bytes=0-99")], None);
    assert_eq!(
        (part.status, part.header("x-cache-status")),
        (206, Some("HIT"))
    );
    assert_eq!(part.body, first.body[..100]);

    // Playlists: cached for their max-age (1 s here), then revalidated
    // with a conditional request that the origin answers 304.
    let playlist = format!("/hls/{public}/master.m3u8");
    let p1 = client.get(&url(&playlist));
    assert_eq!(p1.status, 200);
    assert_eq!(
        client.get(&url(&playlist)).header("x-cache-status"),
        Some("HIT")
    );
    std::thread::sleep(Duration::from_millis(2500));
    let p2 = client.get(&url(&playlist));
    assert_eq!(
        (p2.status, p2.header("x-cache-status")),
        (200, Some("REVALIDATED"))
    );
    assert_eq!(p1.body, p2.body);
    let log = cdn.wait_log(|log| {
        log.iter()
            .any(|l| l.contains("master.m3u8 200 upstream=304 cache=REVALIDATED"))
    });
    assert!(
        log.iter()
            .any(|l| l.contains("master.m3u8 200 upstream=304 cache=REVALIDATED")),
        "no 304 revalidation upstream in {log:#?}"
    );

    // A private video: never cached, the origin is asked every time.
    let secret = format!("/hls/{private}/master.m3u8");
    for _ in 0..2 {
        let r = client.get(&url(&secret));
        assert_eq!(r.status, 404);
        assert_ne!(r.header("x-cache-status"), Some("HIT"));
    }
    let asked_twice = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains(&secret) && l.contains("upstream=404"))
            .count()
            >= 2
    };
    let log = cdn.wait_log(asked_twice);
    let asked = log
        .iter()
        .filter(|l| l.contains(&secret) && l.contains("upstream=404"))
        .count();
    assert_eq!(
        asked, 2,
        "each request for a private video must reach the origin: {log:#?}"
    );
    let cached: Vec<_> = e2e::files_under(&prefix.join("cache"))
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .is_ok_and(|b| b.windows(private.len()).any(|w| w == private.as_bytes()))
        })
        .collect();
    assert!(
        cached.is_empty(),
        "the CDN stored something of the private video: {cached:?}"
    );
}

#[test]
fn hls_js_plays_the_stream_in_headless_chromium() {
    if !e2e::player::available("the browser playback test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    // A title that is markup: the page shows it as text.
    let title = "Play <b>me</b> & \"you\"";
    let video = upload_small(
        &server,
        &ann,
        &shared_media("prog_640x360_h264_aac_8s.mp4"),
        &json!({"title": title}),
    );
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(240))["status"],
        "ready"
    );
    let js = Client::new().get(&server.url("/assets/hls.min.js"));
    assert_eq!(js.status, 200, "the server serves hls.js");

    let shots = e2e::appliance_bin().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("hlsjs-playback.png");
    let _ = std::fs::remove_file(&shot);
    let (code, report) = e2e::player::play(
        "hlsjs",
        &server.url(&format!("/play/{video}")),
        2,
        &[],
        &shot,
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["fatal"].is_null(), "{report:#}");
    assert!(report["currentTime"].as_f64().unwrap() >= 2.0, "{report:#}");
    assert_eq!(report["engine"], "hls.js");
    assert_eq!(report["httpStatus"], 200, "{report:#}");
    assert_eq!(report["title"], title, "{report:#}");
    assert_eq!(report["heading"], title, "{report:#}");
    let html = Client::new()
        .get(&server.url(&format!("/play/{video}")))
        .text();
    assert!(
        html.contains("Play &lt;b&gt;me&lt;/b&gt; &amp; &quot;you&quot;")
            && !html.contains("<b>me"),
        "the title is escaped"
    );
    // Every track starts at 0: hls.js never had to skip a hole at the start.
    let errors = report["errors"].as_array().unwrap();
    assert!(
        !errors.iter().any(|e| e["details"] == "bufferSeekOverHole"),
        "{report:#}"
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "screenshot suspiciously small ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// `/play/{id}` for a video nobody may play: an HTML page saying so, with
/// a 404, in a real browser too (no player, no spinner, no stream error).
#[test]
fn the_player_says_a_video_is_not_available() {
    if !e2e::player::available("the not-available page test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    // Private: processing or published, nobody plays it from a link.
    let private = upload_small(
        &server,
        &ann,
        &shared_media("prog_640x360_h264_aac_8s.mp4"),
        &json!({"title": "not for you", "visibility": "private"}),
    );
    let shots = e2e::appliance_bin().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    for id in ["no-such-video", "bad%20id", private.as_str()] {
        let r = Client::new().get(&server.url(&format!("/play/{id}")));
        assert_eq!(r.status, 404, "/play/{id}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "/play/{id}: {:?}",
            r.header("content-type")
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(!r.text().contains("not for you"), "the title stays private");

        let shot = shots.join("player-not-available.png");
        let _ = std::fs::remove_file(&shot);
        let (code, report) =
            e2e::player::play("hlsjs", &server.url(&format!("/play/{id}")), 1, &[], &shot);
        assert_eq!(code, Some(1), "{report:#}");
        assert_eq!(report["httpStatus"], 404, "{report:#}");
        assert_eq!(
            report["heading"], "This video is not available",
            "{report:#}"
        );
        assert_eq!(report["title"], "This video is not available", "{report:#}");
        assert!(report["engine"].is_null(), "no player started: {report:#}");
        assert!(
            report["pageErrors"].as_array().unwrap().is_empty(),
            "{report:#}"
        );
        assert!(std::fs::read(&shot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
    }
}
