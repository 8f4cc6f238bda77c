//! Playable in seconds (issue 18): a 60 s 1080p phone-like upload is
//! playable from its remuxed top rung while the lower rungs still encode;
//! the master playlist grows (short cache lifetime meanwhile); hls.js in
//! headless Chromium plays it then, with no hole at the start; the finished
//! ladder passes every ladder check.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::ladder::{check_ladder, Expect};
use e2e::server::*;
use e2e::*;
use serde_json::{json, Value};

/// A phone-like upload: 1080p30 H.264 High with B-frames, a key frame every
/// 1.5 s, AAC-LC stereo, `seconds` long.
fn phone_clip(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let out = dir.join("phone.mp4");
    lavfi(
        &out,
        &[
            &format!("testsrc2=size=1920x1080:rate=30:duration={seconds}"),
            &format!("sine=frequency=330:duration={seconds}"),
        ],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "5M",
            "-maxrate",
            "6M",
            "-bufsize",
            "10M",
            "-g",
            "45",
            "-keyint_min",
            "45",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
        ],
    );
    out
}

fn full_ladder_server(dir: &Path) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join("appliance.toml");
    let text = server::test_config(&data, "")
        .replace("rungs = [480, 360]", "rungs = [1080, 720, 480, 360]")
        .replace("playlist_max_age_secs = 1", "playlist_max_age_secs = 30");
    std::fs::write(&config, text).unwrap();
    Server::start_with(&config, &data, dir.join("server.log"))
}

fn status(server: &Server, client: &Client, video: &str) -> Value {
    let r = client.get(&server.url(&format!("/api/v1/videos/{video}/status")));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn master_variants(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.ends_with("/index.m3u8") && !l.starts_with('#'))
        .map(|l| l.trim_end_matches("/index.m3u8").to_owned())
        .collect()
}

#[test]
fn a_phone_upload_plays_from_its_first_rung_while_the_ladder_grows() {
    let dir = tempfile::tempdir().unwrap();
    let clip = phone_clip(dir.path(), 60);
    let server = full_ladder_server(dir.path());
    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(
        &server,
        &ann,
        &clip,
        &json!({"title": "grows", "visibility": "public"}),
    );
    let accepted = Instant::now();
    let events = ann.sse(&server.url(&format!("/api/v1/videos/{video}/events")));

    // Playable from the remuxed 1080p rung, long before the ladder is done.
    let playable = loop {
        let s = status(&server, &ann, &video);
        if s["status"] == "ready" {
            break s;
        }
        assert_ne!(s["status"], "failed", "{s:#}");
        assert!(
            accepted.elapsed() < Duration::from_secs(120),
            "not playable after 120 s: {s:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let to_playable = accepted.elapsed();
    eprintln!("playable {to_playable:?} after the upload was accepted: {playable}");
    assert_eq!(playable["stage"], "growing", "{playable:#}");
    assert_eq!(playable["liveRungs"], json!(["1080p"]), "{playable:#}");

    // The master lists what is live, and a CDN may keep it a second at most.
    let web = Client::new();
    let master = web.get(&server.url(&format!("/hls/{video}/master.m3u8")));
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("cache-control"),
        Some("public, max-age=1, must-revalidate")
    );
    assert_eq!(master_variants(&master.text()), ["1080p"]);
    // The rung's segments are immutable from the first pull.
    let seg = web.get(&server.url(&format!("/hls/{video}/1080p/0.m4s")));
    assert_eq!(seg.status, 200);
    assert!(seg
        .header("cache-control")
        .is_some_and(|c| c.contains("immutable")));

    // A real player plays it now, from 0, with no hole to skip.
    if let Some(report) = play_in_chromium("hlsjs", &server.url(&format!("/play/{video}"))) {
        let still = status(&server, &ann, &video);
        assert_eq!(
            still["stage"], "growing",
            "the ladder finished before playback was checked; the test proves nothing: {still:#}"
        );
        assert_plays_clean(&report);
    }

    // The ladder grows to every rung; events say so along the way.
    let done = wait_final(&server, &ann, &video, Duration::from_secs(600));
    eprintln!(
        "ladder whole {:?} after the upload was accepted",
        accepted.elapsed()
    );
    assert_eq!(done["status"], "ready", "{done:#}");
    assert_eq!(done["stage"], "done");
    assert_eq!(
        done["liveRungs"],
        json!(["1080p", "720p", "480p", "360p"]),
        "{done:#}"
    );
    let (completed, seen) = wait_event(&events, "transcode.completed", Duration::from_secs(30));
    assert_eq!(completed["liveRungs"].as_array().unwrap().len(), 4);
    let playables: Vec<&Value> = seen
        .iter()
        .filter(|(e, _)| e == "transcode.playable")
        .map(|(_, v)| v)
        .collect();
    assert!(
        !playables.is_empty(),
        "no transcode.playable event: {seen:?}"
    );
    assert_eq!(playables[0]["status"], "ready");
    let master = web.get(&server.url(&format!("/hls/{video}/master.m3u8")));
    assert_eq!(
        master_variants(&master.text()),
        ["1080p", "720p", "480p", "360p"]
    );
    assert_eq!(
        master.header("cache-control"),
        Some("public, max-age=30, must-revalidate"),
        "the long lifetime once the ladder is whole"
    );

    // Every ladder check, on what the box stores and serves.
    let ladder = server.data.join("objects/videos").join(&video).join("hls");
    check_ladder(
        &ladder,
        &Expect {
            rungs: &[(1920, 1080), (1280, 720), (854, 480), (640, 360)],
            fps: 30.0,
            audio: true,
        },
    );
    // The top rung is the upload itself, not an encode: same bit rate.
    let top = std::fs::read_to_string(ladder.join("master.m3u8")).unwrap();
    let avg: u64 = attr(
        top.lines().find(|l| l.contains("1920x1080")).unwrap(),
        "AVERAGE-BANDWIDTH",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        avg > 4_000_000,
        "the 1080p rung is the 5 Mb/s source: {avg}"
    );
    assert_decodes(&server.url(&format!("/hls/{video}/master.m3u8")));
    // Shaka Player too: the whole ladder, buffered from 0, no gap jumped.
    if let Some(report) =
        play_in_chromium("shaka", &server.url(&format!("/hls/{video}/master.m3u8")))
    {
        assert_plays_clean(&report);
        assert_eq!(report["engine"], "shaka");
        let start = report["bufferedStart"].as_f64().unwrap();
        assert!(
            start.abs() < 0.001,
            "Shaka buffered from {start} s: {report:#}"
        );
    }
}

/// `engine` (hls.js through the player page at `url`, or Shaka Player on
/// the master at `url`) in headless Chromium for 3 s of media; None where
/// the browser or the player's packages are missing outside CI.
fn play_in_chromium(engine: &str, url: &str) -> Option<Value> {
    if !e2e::player::available("the playback checks") {
        return None;
    }
    let shots = appliance_bin().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("publish-{engine}.png"));
    let (code, report) = e2e::player::play(engine, url, 3, &[], &shot);
    assert_eq!(code, Some(0), "{report:#}");
    Some(report)
}

/// Played past 3 s with no fatal error and without the player ever skipping
/// a hole in the buffer (what a late first picture or sound causes:
/// hls.js says `bufferSeekOverHole`, Shaka counts a jumped gap).
pub fn assert_plays_clean(report: &Value) {
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["fatal"].is_null(), "{report:#}");
    assert!(report["currentTime"].as_f64().unwrap() >= 3.0, "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        !errors.iter().any(
            |e| ["bufferSeekOverHole", "bufferNudgeOnStall", "gapJumped"]
                .contains(&e["details"].as_str().unwrap_or_default())
        ),
        "hls.js skipped a hole: {report:#}"
    );
}

/// The box dies while the ladder grows: the next start finishes the ladder
/// without touching a file that was already served.
#[test]
fn a_crash_while_the_ladder_grows_keeps_what_was_served() {
    let dir = tempfile::tempdir().unwrap();
    let clip = phone_clip(dir.path(), 30);
    let mut server = full_ladder_server(dir.path());
    let (config, data) = (server.config.clone(), server.data.clone());
    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(
        &server,
        &ann,
        &clip,
        &json!({"title": "crash while growing", "visibility": "public"}),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(&server, &ann, &video)["stage"] != "growing" {
        assert!(
            Instant::now() < deadline,
            "never playable:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let web = Client::new();
    let served: Vec<(String, Vec<u8>)> = ["1080p/init.mp4", "1080p/0.m4s", "audio/0.m4s"]
        .iter()
        .map(|p| {
            let r = web.get(&server.url(&format!("/hls/{video}/{p}")));
            assert_eq!(r.status, 200, "{p}");
            (p.to_string(), r.body)
        })
        .collect();
    server.kill9();

    let server = Server::start_with(&config, &data, dir.path().join("server2.log"));
    // Playable all along: the restarted box serves what it had at once.
    let s = status(&server, &ann, &video);
    assert_eq!(
        (s["status"].as_str(), s["stage"].as_str()),
        (Some("ready"), Some("growing")),
        "{s:#}"
    );
    let done = wait_final(&server, &ann, &video, Duration::from_secs(600));
    assert_eq!(done["stage"], "done", "{done:#}");
    assert!(done["attempts"].as_u64().unwrap() >= 2, "{done:#}");
    for (p, bytes) in &served {
        let r = web.get(&server.url(&format!("/hls/{video}/{p}")));
        assert_eq!(r.status, 200, "{p}");
        assert!(
            r.body == *bytes,
            "{p} changed under its URL after the restart"
        );
    }
    check_ladder(
        &data.join("objects/videos").join(&video).join("hls"),
        &Expect {
            rungs: &[(1920, 1080), (1280, 720), (854, 480), (640, 360)],
            fps: 30.0,
            audio: true,
        },
    );
    let work: Vec<_> = std::fs::read_dir(data.join("work")).unwrap().collect();
    assert!(work.is_empty(), "scratch left behind: {work:?}");
}
