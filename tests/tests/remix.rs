//! Duets, stitches and speed (issue 21, FR6) on the real binary: two shared
//! clips of different sizes and shapes (a 4:3-pixel 320x240 at 24 fps with
//! sound, a square-pixel 640x360 at 30 fps with sound) are composed by the
//! box's edit stage, and what it publishes passes every ladder check.
//! A duet lasts as long as the shorter of its two inputs; a stitch as its
//! clip plus the recording; a 2x upload half as long, with its sound.
//! Disabled remixes and bad values are refused naming what was wrong.

use std::path::Path;
use std::time::Duration;

use e2e::ladder::{check_ladder, Expect};
use e2e::server::*;
use e2e::*;
use serde_json::{json, Value};

const BBB: &str = "bbb_320x240_h264_aac_10s.mp4";
const PROG: &str = "prog_640x360_h264_aac_8s.mp4";
const LIMIT: Duration = Duration::from_secs(300);

/// An upload session with every byte of `file` received and not completed:
/// what a remix request completes. Returns the upload id.
fn staged_upload(server: &Server, client: &Client, file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let r = client.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "take.mp4", "fileSize": bytes.len(), "mimeType": "video/mp4"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let session = r.json();
    let id = session["uploadId"].as_str().unwrap().to_owned();
    let chunk = session["chunkSize"].as_u64().unwrap() as usize;
    for (n, part) in bytes.chunks(chunk).enumerate() {
        let r = client.request(
            "PUT",
            &server.url(&format!("/api/v1/uploads/{id}/chunks/{n}")),
            &[("content-type", "application/octet-stream")],
            Some(part),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    }
    id
}

fn field(r: &Resp) -> String {
    r.json()["error"]["details"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn video(server: &Server, client: &Client, id: &str) -> Value {
    let r = client.get(&server.url(&format!("/api/v1/videos/{id}")));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Seconds of the published top rung, as ffprobe reads its playlist.
fn probed_secs(server: &Server, id: &str, rung: &str) -> f64 {
    let pl = server
        .data
        .join("objects/videos")
        .join(id)
        .join("hls")
        .join(rung)
        .join("index.m3u8");
    let v = ffprobe_json(&pl, &["-show_entries", "format=duration"]);
    v["format"]["duration"].as_str().unwrap().parse().unwrap()
}

fn ladder_of(server: &Server, id: &str) -> std::path::PathBuf {
    server.data.join("objects/videos").join(id).join("hls")
}

#[test]
fn duets_stitches_and_speed_are_composed_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (alice, _) = register(&server, "alice", "creator");
    let (bob, _) = register(&server, "bob", "creator");

    // Alice's original; a second one with remixes turned off.
    let original = upload_small(
        &server,
        &alice,
        &shared_media(BBB),
        &json!({"title": "Original", "visibility": "public"}),
    );
    assert_eq!(
        wait_final(&server, &alice, &original, LIMIT)["status"],
        "ready"
    );
    let closed = upload_small(
        &server,
        &alice,
        &shared_media(BBB),
        &json!({"title": "No remixes", "duetEnabled": false, "stitchEnabled": false}),
    );
    assert_eq!(
        wait_final(&server, &alice, &closed, LIMIT)["status"],
        "ready"
    );
    let shown = video(&server, &bob, &original);
    assert_eq!(
        (shown["duetEnabled"].clone(), shown["stitchEnabled"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(shown["speed"], 1.0);
    assert!(shown.get("remix").is_none(), "{shown:#}");
    let shown = video(&server, &bob, &closed);
    assert_eq!(
        (shown["duetEnabled"].clone(), shown["stitchEnabled"].clone()),
        (json!(false), json!(false))
    );

    // Refusals, each before anything is consumed: the same session is
    // used for the duet afterwards.
    let take = staged_upload(&server, &bob, &shared_media(PROG));
    let duet_of = |id: &str, body: &Value| {
        bob.post_json(&server.url(&format!("/api/v1/videos/{id}/duet")), body)
    };
    let stitch_of = |id: &str, body: &Value| {
        bob.post_json(&server.url(&format!("/api/v1/videos/{id}/stitch")), body)
    };
    let r = duet_of(&closed, &json!({"uploadId": take}));
    assert_eq!(
        (r.status, r.error_code()),
        (403, "FORBIDDEN".to_owned()),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["error"]["details"]["reason"], "DUET_DISABLED");
    let r = stitch_of(
        &closed,
        &json!({"uploadId": take, "clipStart": 1, "clipEnd": 3}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["details"]["reason"], "STITCH_DISABLED");
    for (body, name) in [
        (
            json!({"uploadId": take, "clipStart": 1, "clipEnd": 7}),
            "clipEnd",
        ),
        (
            json!({"uploadId": take, "clipStart": -1, "clipEnd": 2}),
            "clipStart",
        ),
        (
            json!({"uploadId": take, "clipStart": 3, "clipEnd": 2}),
            "clipEnd",
        ),
        (
            json!({"uploadId": take, "clipStart": 9.5, "clipEnd": 12}),
            "clipEnd",
        ),
        (
            json!({"uploadId": take, "clipStart": 1, "clipEnd": 2, "speed": 4}),
            "speed",
        ),
    ] {
        let r = stitch_of(&original, &body);
        assert_eq!(
            (r.status, field(&r)),
            (400, name.to_owned()),
            "{body}: {}",
            r.text()
        );
        assert_eq!(r.error_code(), "VALIDATION_ERROR");
    }
    let r = duet_of(&original, &json!({"uploadId": take, "speed": 1.5}));
    assert_eq!(
        (r.status, field(&r)),
        (400, "speed".to_owned()),
        "{}",
        r.text()
    );
    let r = duet_of("nope", &json!({"uploadId": take}));
    assert_eq!(r.status, 404, "{}", r.text());
    // Someone else's session is not found.
    let r = alice.post_json(
        &server.url(&format!("/api/v1/videos/{original}/duet")),
        &json!({"uploadId": take}),
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // The duet: side by side at the taller input's height (360), each half
    // as wide as the wider input at that height (640, the 16:9 one; the
    // 4:3-pixel original displays 16:9 too), 30 fps (the faster input);
    // as long as the shorter input (the 8 s recording).
    let r = duet_of(&original, &json!({"uploadId": take, "hashtags": ["duet"]}));
    assert_eq!(r.status, 202, "{}", r.text());
    let duet = r.json()["videoId"].as_str().unwrap().to_owned();
    // The same session again as the same duet: the same video.
    let again = duet_of(&original, &json!({"uploadId": take}));
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(again.json()["videoId"], duet.as_str());
    assert_eq!(wait_final(&server, &bob, &duet, LIMIT)["status"], "ready");
    let v = video(&server, &bob, &duet);
    assert_eq!(v["remix"], json!({"kind": "duet", "originalId": original}));
    assert_eq!(v["title"], "Duet with Original");
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (json!(1280), json!(360))
    );
    let secs = v["durationSecs"].as_f64().unwrap();
    assert!((secs - 8.0).abs() < 0.2, "duet lasts {secs} s");
    check_ladder(
        &ladder_of(&server, &duet),
        &Expect {
            rungs: &[(1280, 360)],
            fps: 30.0,
            audio: true,
        },
    );
    let probed = probed_secs(&server, &duet, "360p");
    assert!((probed - 8.0).abs() < 0.2, "duet ladder lasts {probed} s");

    // The stitch: 3 s of the original (2–5 s), then the 8 s recording, at
    // the recording's size and rate.
    let take = staged_upload(&server, &bob, &shared_media(PROG));
    let r = stitch_of(
        &original,
        &json!({"uploadId": take, "clipStart": 2, "clipEnd": 5, "title": "My stitch"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let stitch = r.json()["videoId"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&server, &bob, &stitch, LIMIT)["status"], "ready");
    let v = video(&server, &bob, &stitch);
    assert_eq!(
        v["remix"],
        json!({"kind": "stitch", "originalId": original, "clipStart": 2.0, "clipEnd": 5.0})
    );
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (json!(640), json!(360))
    );
    let secs = v["durationSecs"].as_f64().unwrap();
    assert!((secs - 11.0).abs() < 0.25, "stitch lasts {secs} s");
    check_ladder(
        &ladder_of(&server, &stitch),
        &Expect {
            rungs: &[(640, 360)],
            fps: 30.0,
            audio: true,
        },
    );

    // The original lists both (newest first).
    let r = bob.get(&server.url(&format!("/api/v1/videos/{original}/remixes")));
    assert_eq!(r.status, 200, "{}", r.text());
    let ids: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [stitch.clone(), duet.clone()]);

    // Speed: 2x halves the recording's 8 s, sound kept; other speeds refused.
    let fast = upload_small(
        &server,
        &bob,
        &shared_media(PROG),
        &json!({"title": "Fast", "speed": 2}),
    );
    assert_eq!(wait_final(&server, &bob, &fast, LIMIT)["status"], "ready");
    let v = video(&server, &bob, &fast);
    assert_eq!(v["speed"], 2.0);
    let secs = v["durationSecs"].as_f64().unwrap();
    assert!((secs - 4.0).abs() < 0.2, "2x lasts {secs} s");
    check_ladder(
        &ladder_of(&server, &fast),
        &Expect {
            rungs: &[(640, 360)],
            fps: 30.0,
            audio: true,
        },
    );
    let audio = ffprobe_json(
        &ladder_of(&server, &fast).join("audio/index.m3u8"),
        &["-show_entries", "format=duration"],
    );
    let audio_secs: f64 = audio["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (audio_secs - 4.0).abs() < 0.25,
        "2x sound lasts {audio_secs} s"
    );
    for bad in [json!(1.5), json!(0), json!(-2), json!(4)] {
        let take = staged_upload(&server, &bob, &shared_media(PROG));
        let r = bob.post_json(
            &server.url(&format!("/api/v1/uploads/{take}/complete")),
            &json!({"title": "x", "speed": bad}),
        );
        assert_eq!(
            (r.status, field(&r)),
            (400, "speed".to_owned()),
            "{bad}: {}",
            r.text()
        );
    }
    let r = bob.post_json(
        &server.url(&format!(
            "/api/v1/uploads/{}/complete",
            staged_upload(&server, &bob, &shared_media(PROG))
        )),
        &json!({"title": "x", "speed": "fast"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
}
