//! The sounds library and the copyright check, through the real server,
//! on audio made with the ffmpeg CLI: a "song" of chords that change every
//! quarter second (Chromaprint needs the chroma to move). An upload's own
//! audio becomes an original sound; the same song re-encoded at another
//! bit rate, 3 dB quieter and 2 s later is linked to it; a `block`
//! reference of a song fails an upload of it with the reason (and nothing
//! of it is ever served); a `flag` reference publishes it and lists the
//! match; unrelated audio matches nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::server::{admin, register, tiny_clip, upload_small, wait_final, Client, Resp, Server};
use serde_json::{json, Value};

/// The chord notes of song `seed` at time t: 12 semitones above A4,
/// stepped every 0.25 s by a seed-picked stride.
fn song_expr(seed: u32) -> String {
    // A pseudo-random note (0–11) per quarter second, its sequence
    // picked by the seed (no two seeds' melodies are shifts of each other).
    let note = format!(
        "mod(floor(abs(sin(floor(t*4)*{:.3}))*1000),12)",
        1.37 + 0.71 * f64::from(seed)
    );
    let f = |shift: u32| format!("440*pow(2,({note}+{shift})/12)");
    format!(
        "0.3*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})",
        f(0),
        f(4),
        f(7)
    )
}

/// A 20 s 192x108 video of song `seed`: `af` filters its sound (volume,
/// delay), AAC at `bitrate`; `gop` frames between key frames (30 at 15
/// fps: the box copies the source as its top rung and the AAC as is).
fn song_video(dir: &Path, name: &str, seed: u32, af: &str, bitrate: &str, gop: &str) -> PathBuf {
    let out = dir.join(name);
    e2e::lavfi(
        &out,
        &[
            "testsrc2=size=192x108:rate=15:duration=20",
            &format!("aevalsrc='{}':s=44100:d=20", song_expr(seed)),
        ],
        &[
            "-af",
            af,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            gop,
            "-c:a",
            "aac",
            "-b:a",
            bitrate,
            "-t",
            "20",
        ],
    );
    out
}

/// Song `seed` alone, as a WAV (a reference track).
fn song_wav(dir: &Path, name: &str, seed: u32) -> PathBuf {
    let out = dir.join(name);
    e2e::lavfi(
        &out,
        &[&format!("aevalsrc='{}':s=44100:d=20", song_expr(seed))],
        &[],
    );
    out
}

/// The same song, degraded: 3 dB quieter, 2 s later, AAC at 64 kb/s, and
/// every rung encoded (a key frame only every 250 frames).
fn degraded(dir: &Path, name: &str, seed: u32) -> PathBuf {
    song_video(
        dir,
        name,
        seed,
        "volume=-3dB,adelay=2000|2000",
        "64k",
        "250",
    )
}

fn upload(server: &Server, c: &Client, file: &Path, title: &str, sound: Option<&str>) -> String {
    let mut meta =
        json!({"title": title, "description": "", "hashtags": [], "visibility": "public"});
    if let Some(s) = sound {
        meta["soundId"] = json!(s);
    }
    upload_small(server, c, file, &meta)
}

fn ready(server: &Server, c: &Client, file: &Path, title: &str, sound: Option<&str>) -> Value {
    let id = upload(server, c, file, title, sound);
    let status = wait_final(server, c, &id, Duration::from_secs(120));
    assert_eq!(status["status"], "ready", "{status}\n{}", server.log());
    let v = c.get(&server.url(&format!("/api/v1/videos/{id}")));
    assert_eq!(v.status, 200, "{}", v.text());
    v.json()
}

fn multipart(server: &Server, c: &Client, meta: &Value, file: Option<&Path>) -> Resp {
    let boundary = "----sounds-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
    )
    .into_bytes();
    if let Some(f) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"track\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&std::fs::read(f).unwrap());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    c.request(
        "POST",
        &server.url("/api/v1/ops/reference-audio"),
        &[("content-type", &ct)],
        Some(&body),
    )
}

fn field_of(r: &Resp) -> String {
    r.json()["error"]["details"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn sounds_are_made_reused_matched_and_copyright_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut server = Server::start(d, "");
    let (ann, ann_id) = register(&server, "ann", "creator");
    let (bob, _) = register(&server, "bob", "creator");
    let root = admin(&server, "root");
    let anon = Client::new();

    // 1. Ann's song becomes an original sound (her video is remuxed: the
    //    copied audio is fingerprinted before it is first served).
    let original = song_video(d, "song1.mp4", 1, "anull", "192k", "30");
    let a = ready(&server, &ann, &original, "my song", None);
    let sound = a["soundId"].as_str().expect("a sound").to_owned();
    let s = anon.get(&server.url(&format!("/api/v1/sounds/{sound}")));
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    assert_eq!(s["title"], "original sound - ann", "{s}");
    assert_eq!(s["ownerId"], ann_id.as_str());
    assert_eq!(s["originalVideoId"], a["id"]);
    assert_eq!(s["usageCount"], 1);
    let secs = s["durationSecs"].as_f64().unwrap();
    assert!((18.0..=21.0).contains(&secs), "{s}");

    // 2. The same song, re-encoded at 64 kb/s, 3 dB quieter, 2 s later:
    //    linked to Ann's sound.
    let b = ready(
        &server,
        &bob,
        &degraded(d, "song1-degraded.mp4", 1),
        "cover",
        None,
    );
    assert_eq!(b["soundId"].as_str(), Some(sound.as_str()), "{b}");

    // 3. An unrelated song is its own sound; a steady tone has none.
    let other = ready(
        &server,
        &bob,
        &song_video(d, "song7.mp4", 7, "anull", "128k", "30"),
        "other",
        None,
    );
    let other_sound = other["soundId"].as_str().expect("a sound").to_owned();
    assert_ne!(other_sound, sound);
    let tone = tiny_clip(d);
    let t = ready(&server, &bob, &tone, "tone", None);
    assert!(t["soundId"].is_null(), "{t}");

    // 4. Reuse by soundId; an unknown one is refused naming the field.
    let reused = ready(&server, &bob, &tone, "reuse", Some(&sound));
    assert_eq!(reused["soundId"].as_str(), Some(sound.as_str()));
    let meta = json!({"title": "x", "description": "", "hashtags": [], "soundId": "no-such-sound", "visibility": "public"});
    let bytes = std::fs::read(&tone).unwrap();
    let boundary = "----b";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.mp4\"\r\n\r\n").into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = bob.request(
        "POST",
        &server.url("/api/v1/videos"),
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        Some(&body),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "VALIDATION_ERROR");
    assert_eq!(field_of(&r), "soundId", "{}", r.text());

    // 5. The sound's videos, newest first, a page at a time; trending.
    let page = anon.get(&server.url(&format!("/api/v1/sounds/{sound}/videos?limit=2")));
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [reused["id"].as_str().unwrap(), b["id"].as_str().unwrap()]
    );
    let next = page["nextCursor"].as_str().expect("a second page");
    let rest = anon
        .get(&server.url(&format!(
            "/api/v1/sounds/{sound}/videos?limit=2&cursor={next}"
        )))
        .json();
    assert_eq!(rest["items"][0]["id"], a["id"]);
    assert!(rest["nextCursor"].is_null());
    assert_eq!(
        anon.get(&server.url(&format!("/api/v1/sounds/{sound}")))
            .json()["usageCount"],
        3
    );
    let trending = anon.get(&server.url("/api/v1/sounds/trending")).json();
    assert_eq!(trending["items"][0]["id"], sound.as_str(), "{trending}");
    assert_eq!(trending["items"][0]["recentUsage"], 3);
    assert_eq!(trending["items"][1]["id"], other_sound.as_str());
    assert_eq!(anon.get(&server.url("/api/v1/sounds/nope")).status, 404);
    assert_eq!(
        anon.get(&server.url("/api/v1/sounds/trending?limit=0"))
            .status,
        400
    );

    // 6. The reference library is for admins; bad input names its field.
    let harbour = song_wav(d, "song3.wav", 3);
    let block = json!({"title": "Harbour Lights", "policy": "block"});
    // (A small file: a refusal answers before the body is read.)
    let silent = d.join("silent.mp4");
    e2e::lavfi(
        &silent,
        &["testsrc2=size=64x64:rate=10:duration=1"],
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    assert_eq!(multipart(&server, &bob, &block, Some(&silent)).status, 403);
    assert_eq!(multipart(&server, &anon, &block, Some(&silent)).status, 401);
    let r = multipart(&server, &root, &block, Some(&silent));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(field_of(&r), "file", "{}", r.text());
    let r = multipart(&server, &root, &block, None);
    assert_eq!(
        (r.status, field_of(&r)),
        (400, "file".to_owned()),
        "{}",
        r.text()
    );
    let r = multipart(
        &server,
        &root,
        &json!({"title": "x", "policy": "maybe"}),
        Some(&harbour),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "VALIDATION_ERROR");
    let r = multipart(&server, &root, &block, Some(&harbour));
    assert_eq!(r.status, 201, "{}", r.text());
    let blocked_ref = r.json();
    assert_eq!(blocked_ref["policy"], "block");
    let pier = song_wav(d, "song5.wav", 5);
    let r = multipart(
        &server,
        &root,
        &json!({"title": "Pier Song", "policy": "flag"}),
        Some(&pier),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let flag_ref = r.json();

    // 7. Block: the upload fails with the reason and is never served.
    let id = upload(
        &server,
        &bob,
        &degraded(d, "song3-degraded.mp4", 3),
        "harbour",
        None,
    );
    let status = wait_final(&server, &bob, &id, Duration::from_secs(120));
    assert_eq!(status["status"], "failed", "{status}");
    let reason = status["error"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("Harbour Lights"), "{reason}");
    assert!(reason.contains("COPYRIGHT_BLOCKED"), "{reason}");
    let v = bob.get(&server.url(&format!("/api/v1/videos/{id}"))).json();
    assert_eq!(v["failureReason"].as_str(), Some(reason.as_str()));
    assert!(v["masterUrl"].is_null(), "{v}");
    assert_eq!(
        anon.get(&server.url(&format!("/hls/{id}/master.m3u8")))
            .status,
        404
    );
    assert!(
        !server
            .objects()
            .iter()
            .any(|o| o.contains(&id) && o.contains("hls")),
        "nothing of a blocked video is stored for serving: {:?}",
        server.objects()
    );

    // 8. Flag: published, and the match listed for review.
    let flagged = ready(
        &server,
        &bob,
        &degraded(d, "song5-degraded.mp4", 5),
        "pier",
        None,
    );
    let flags = root.get(&server.url("/api/v1/ops/flags"));
    assert_eq!(flags.status, 200, "{}", flags.text());
    let flags = flags.json();
    let items = flags["items"].as_array().unwrap();
    let of = |video: &str| items.iter().find(|f| f["videoId"] == video).cloned();
    let f = of(flagged["id"].as_str().unwrap()).expect("the flagged upload is listed");
    assert_eq!(f["referenceId"], flag_ref["id"]);
    assert_eq!(f["referenceTitle"], "Pier Song");
    assert_eq!(f["policy"], "flag");
    let offset = f["offsetSecs"].as_f64().unwrap();
    assert!((1.5..=2.5).contains(&offset), "{f}");
    assert!(f["confidence"].as_f64().unwrap() >= 0.5, "{f}");
    let blocked = of(&id).expect("the blocked upload is listed");
    assert_eq!(blocked["policy"], "block");
    assert_eq!(blocked["referenceId"], blocked_ref["id"]);
    // Unrelated audio matched nothing.
    for v in [&a, &b, &other, &t, &reused] {
        assert!(of(v["id"].as_str().unwrap()).is_none(), "{v}");
    }
    assert_eq!(items.len(), 2, "{flags}");
    assert_eq!(bob.get(&server.url("/api/v1/ops/flags")).status, 403);

    // 9. The library, paged; a deleted reference is gone with its flags.
    let lib = root
        .get(&server.url("/api/v1/ops/reference-audio?limit=1"))
        .json();
    assert_eq!(lib["items"][0]["id"], flag_ref["id"]);
    assert!(lib["nextCursor"].is_string());
    let gone = format!(
        "/api/v1/ops/reference-audio/{}",
        flag_ref["id"].as_str().unwrap()
    );
    assert_eq!(bob.delete(&server.url(&gone)).status, 403);
    assert_eq!(root.delete(&server.url(&gone)).status, 204);
    assert_eq!(root.delete(&server.url(&gone)).status, 404);
    let flags = root.get(&server.url("/api/v1/ops/flags")).json();
    assert_eq!(flags["items"].as_array().unwrap().len(), 1, "{flags}");

    // 10. After a restart the indexes are rebuilt from the catalog: the
    //     song still links to Ann's sound, the block still holds.
    server.terminate();
    let server = Server::start(d, "");
    let again = ready(
        &server,
        &bob,
        &degraded(d, "song1-again.mp4", 1),
        "again",
        None,
    );
    assert_eq!(again["soundId"].as_str(), Some(sound.as_str()));
    let id = upload(&server, &bob, &harbour_video(d), "harbour again", None);
    let status = wait_final(&server, &bob, &id, Duration::from_secs(120));
    assert_eq!(status["status"], "failed", "{status}");
}

/// Song 3 as uploaded by someone else: its own encode, not shifted.
fn harbour_video(d: &Path) -> PathBuf {
    song_video(d, "song3-again.mp4", 3, "volume=-1dB", "96k", "250")
}
