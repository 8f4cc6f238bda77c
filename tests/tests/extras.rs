//! What a published ladder offers beside HLS, through the real server: the
//! storyboard (sprite + WebVTT thumbnails, loaded by the player page in
//! headless Chromium), stills at any time rendered on demand and cached,
//! and the MP4 download with ranges.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::server::{register, tiny_clip, upload_small, wait_final, Client, Resp, Server};
use e2e::{ffprobe_json, run, shared_media};
use serde_json::json;

const CLIP: &str = "bbb_320x240_h264_aac_10s.mp4";
const FPS: f64 = 24.0;

fn publish(server: &Server, creator: &Client, file: &Path, visibility: &str) -> String {
    let id = upload_small(
        server,
        creator,
        file,
        &json!({"title": "extras", "visibility": visibility}),
    );
    assert_eq!(
        wait_final(server, creator, &id, Duration::from_secs(240))["status"],
        "ready"
    );
    id
}

fn is_jpeg(r: &Resp) -> bool {
    r.header("content-type") == Some("image/jpeg") && r.body.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// The top rung's duration, from the playlists the origin serves.
fn ladder_duration(server: &Server, video: &str) -> f64 {
    let client = Client::new();
    let master = client
        .get(&server.url(&format!("/hls/{video}/master.m3u8")))
        .text();
    // Our packager lists the top rung first.
    let top = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a rendition");
    client
        .get(&server.url(&format!("/hls/{video}/{top}")))
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse::<f64>().unwrap())
        .sum()
}

#[test]
fn storyboard_stills_and_download_through_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    let video = publish(&server, &ann, &shared_media(CLIP), "public");
    let secret = publish(&server, &ann, &tiny_clip(dir.path()), "private");
    let anon = Client::new();
    let get = |path: &str| anon.get(&server.url(path));
    let duration = ladder_duration(&server, &video);

    // The storyboard: a WebVTT track whose cues cover the video and name
    // tiles of the sprite next to it.
    let vtt = get(&format!("/hls/{video}/storyboard.vtt"));
    assert_eq!(vtt.status, 200, "{}", vtt.text());
    assert_eq!(vtt.header("content-type"), Some("text/vtt; charset=utf-8"));
    let text = vtt.text();
    assert!(text.starts_with("WEBVTT\n"), "{text}");
    let cues: Vec<&str> = text.lines().filter(|l| l.contains(" --> ")).collect();
    assert_eq!(cues.len(), 10, "one tile a second for 10 s:\n{text}");
    assert!(cues[0].starts_with("00:00:00.000 --> "));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("storyboard.jpg#xywh="))
            .count(),
        cues.len()
    );
    let sprite = get(&format!("/hls/{video}/storyboard.jpg"));
    assert_eq!(sprite.status, 200);
    assert!(is_jpeg(&sprite), "{:?}", sprite.headers);
    assert!(sprite.header("etag").is_some());

    // A still: rendered on the first request, then served from the cache.
    let still = format!("/thumbs/{video}/still.jpg?t=3");
    let started = Instant::now();
    let first = get(&still);
    let first_took = started.elapsed();
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(is_jpeg(&first), "{:?}", first.headers);
    assert!(
        server
            .objects()
            .contains(&format!("videos/{video}/stills/3000.jpg")),
        "the still is kept under the video's prefix: {:?}",
        server.objects()
    );
    let started = Instant::now();
    let second = get(&still);
    eprintln!(
        "still at 3 s: rendered in {first_took:?}, then served in {:?}",
        started.elapsed()
    );
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the cached still");
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    let revalidated = anon.request(
        "GET",
        &server.url(&still),
        &[("if-none-match", &etag)],
        None,
    );
    assert_eq!(revalidated.status, 304);
    // Nearer than a tenth of a second is the same still.
    let near = get(&format!("/thumbs/{video}/still.jpg?t=3.04"));
    assert_eq!((near.status, near.body == first.body), (200, true));
    // Another time is another picture.
    let later = get(&format!("/thumbs/{video}/still.jpg?t=7.5"));
    assert_eq!(later.status, 200);
    assert!(is_jpeg(&later) && later.body != first.body);

    // A `t` that is not a time in the video is refused, naming `t`.
    for bad in ["t=-1", "t=abc", "t=99999", "", "t="] {
        let r = get(&format!("/thumbs/{video}/still.jpg?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.error_code(), "VALIDATION_ERROR");
        assert_eq!(r.json()["error"]["details"]["field"], "t", "{bad}");
    }

    // A private video's still is refused like its poster.
    let poster = get(&format!("/thumbs/{secret}/poster.jpg"));
    let secret_still = get(&format!("/thumbs/{secret}/still.jpg?t=1"));
    assert_eq!(poster.status, 404);
    assert_eq!(secret_still.status, poster.status);
    assert_eq!(
        secret_still.header("cache-control"),
        poster.header("cache-control")
    );
    assert_eq!(
        secret_still.header("cache-control"),
        Some("private, no-store")
    );
    assert_eq!(get("/thumbs/nosuchvideo/still.jpg?t=1").status, 404);

    // The download: ranges like any origin file, and a whole file that
    // plays as long as the ladder.
    let url = server.url(&format!("/hls/{video}/download.mp4"));
    let part = anon.request("GET", &url, &[("range", "bytes=0-99")], None);
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 100);
    assert_eq!(part.header("content-type"), Some("video/mp4"));
    let whole = anon.get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(part.body, whole.body[..100]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-99/{}", whole.body.len()).as_str())
    );
    assert!(whole.header("content-disposition").is_none());
    let saved = anon.get(&format!("{url}?download=1"));
    assert_eq!(
        saved.header("content-disposition"),
        Some(format!("attachment; filename=\"{video}.mp4\"").as_str())
    );
    let file = dir.path().join("download.mp4");
    std::fs::write(&file, &whole.body).unwrap();
    let probe = ffprobe_json(&file, &["-show_format", "-show_streams"]);
    let got: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (got - duration).abs() <= 1.0 / FPS + 1e-3,
        "download lasts {got} s, the ladder {duration} s"
    );
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["video", "audio"]);
    let out = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.trim().is_empty(), "{}", out.stderr);

    // The still route is in the API description.
    let doc = get("/openapi.json").json();
    let op = &doc["paths"]["/thumbs/{video_id}/still.jpg"]["get"];
    assert!(op.is_object(), "still.jpg missing from openapi.json");
    assert!(op["responses"]["200"]["content"]["image/jpeg"].is_object());
}

#[test]
fn the_player_page_loads_the_thumbnails_track() {
    if !e2e::player::available("the thumbnails track test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    let video = publish(&server, &ann, &shared_media(CLIP), "public");
    let shot = dir.path().join("player.png");
    let (code, report) = e2e::player::play(
        "hlsjs",
        &server.url(&format!("/play/{video}")),
        1,
        &["--thumbnails"],
        &shot,
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        report["thumbnails"], 10,
        "the browser loaded every cue of storyboard.vtt: {report:#}"
    );
    assert!(
        report["failedRequests"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}
