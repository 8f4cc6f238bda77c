//! tus 1.0 uploads (`/api/v1/uploads/tus`) against a real `appliance
//! serve`. The real clients upload a shared clip that then plays:
//! tus-py-client is killed part-way and a new process resumes from the URL
//! it stored; tus-js-client is aborted in the middle of a PATCH body and a
//! new `Upload` resumes with `findPreviousUploads`/`resumeFromPreviousUpload`.
//! The protocol's edge cases are checked over raw HTTP: offsets, checksums,
//! versions, limits, termination, expiry, a body that breaks off, a crash.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::server::{admin, have, register, wait_final, Client, Resp, Server};
use e2e::{manifest_dir, run, shared_media};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// 416 KB: seven of the test config's 64 KiB chunks.
const CLIP: &str = "bbb_320x240_h264_aac_10s.mp4";
const TUS: &str = "/api/v1/uploads/tus";
const VERSION: (&str, &str) = ("tus-resumable", "1.0.0");
const BYTES: (&str, &str) = ("content-type", "application/offset+octet-stream");

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", b64(v)))
        .collect::<Vec<_>>()
        .join(",")
}

fn checksum(body: &[u8]) -> String {
    format!("sha256 {}", b64(Sha256::digest(body)))
}

fn offset(r: &Resp) -> u64 {
    r.header("upload-offset")
        .unwrap_or_else(|| panic!("no Upload-Offset ({}): {:?}", r.status, r.headers))
        .parse()
        .unwrap()
}

/// `POST /uploads/tus` for `length` bytes, `body` (if any) as the first.
fn create(
    server: &Server,
    client: &Client,
    length: u64,
    meta: &str,
    body: Option<&[u8]>,
    extra: &[(&str, &str)],
) -> Resp {
    let length = length.to_string();
    let mut h = vec![
        VERSION,
        ("upload-length", length.as_str()),
        ("upload-metadata", meta),
    ];
    if body.is_some() {
        h.push(BYTES);
    }
    h.extend_from_slice(extra);
    client.request("POST", &server.url(TUS), &h, body)
}

fn head(server: &Server, client: &Client, location: &str) -> Resp {
    client.request("HEAD", &server.url(location), &[VERSION], None)
}

fn patch(
    server: &Server,
    client: &Client,
    location: &str,
    at: u64,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Resp {
    let at = at.to_string();
    let mut h = vec![VERSION, BYTES, ("upload-offset", at.as_str())];
    h.extend_from_slice(extra);
    client.request("PATCH", &server.url(location), &h, Some(body))
}

/// The video an upload became, once complete (the chunked API's session
/// view serves tus uploads too).
fn video_of(server: &Server, client: &Client, location: &str) -> String {
    let id = location.rsplit('/').next().unwrap();
    let s = client.get(&server.url(&format!("/api/v1/uploads/{id}")));
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    assert_eq!(s["status"], "completed", "{s}");
    s["videoId"].as_str().unwrap().to_owned()
}

/// The clip's bytes are the video's source, exactly, and it plays.
fn assert_ready(server: &Server, client: &Client, video: &str, clip: &[u8]) -> Value {
    let source = server.data.join(format!("objects/videos/{video}/source"));
    let stored = std::fs::read(&source).unwrap();
    assert!(stored == clip, "the assembled source differs from the clip");
    let status = wait_final(server, client, video, Duration::from_secs(240));
    assert_eq!(status["status"], "ready", "{status}");
    client
        .get(&server.url(&format!("/api/v1/videos/{video}")))
        .json()
}

#[test]
fn tus_py_client_killed_part_way_resumes_from_its_stored_url_and_the_video_plays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (creator, _) = register(&server, "tuspy", "creator");
    let token = creator.token.clone().unwrap();
    let clip_path = shared_media(CLIP);
    let clip = std::fs::read(&clip_path).unwrap();
    let store = dir.path().join("tus-urls.json");
    let meta = json!({"filename": CLIP, "filetype": "video/mp4", "title": "Bunny over tus",
        "hashtags": "bunny, tus", "visibility": "unlisted"})
    .to_string();
    let endpoint = server.url(TUS);
    // 50 000-byte PATCHes (not the server's 64 KiB chunks, so partial
    // chunks are rewritten), each checksummed, a third of a second apart.
    let client_run = |pause: &str| {
        let mut c = Command::new("python3");
        c.arg(manifest_dir().join("clients/tus_upload.py"))
            .args([&endpoint, &token])
            .arg(&clip_path)
            .arg(&store)
            .args([meta.as_str(), "50000", pause]);
        c
    };
    let mut first = client_run("0.3")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = line_channel(first.stdout.take().unwrap());
    let mut url = String::new();
    let mut acknowledged = 0;
    while acknowledged < 150_000 {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("tuspy stopped before uploading 150 000 bytes");
        if let Some(u) = line.strip_prefix("url ") {
            url = u.to_owned();
        }
        if let Some(o) = line.strip_prefix("offset ") {
            acknowledged = o.parse().unwrap();
        }
        assert_ne!(line, "done", "tuspy finished before it was killed");
    }
    // SIGKILL: no clean-up of any kind in the client.
    first.kill().unwrap();
    first.wait().unwrap();
    let location = url
        .strip_prefix(&server.base)
        .expect("the upload URL is on the server")
        .to_owned();
    let after_kill = settled_offset(&server, &creator, &location);
    assert!(
        after_kill >= acknowledged && after_kill < clip.len() as u64,
        "{after_kill} after {acknowledged} acknowledged"
    );

    let second = run(&mut client_run("0"), Duration::from_secs(120));
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let mut out = second.stdout.lines();
    assert_eq!(
        out.next(),
        Some(format!("start {after_kill} {url}").as_str()),
        "the new process resumes the stored upload at the server's offset:\n{}",
        second.stdout
    );
    assert_eq!(second.stdout.lines().last(), Some("done"));
    let h = head(&server, &creator, &location);
    assert_eq!(offset(&h), clip.len() as u64);
    assert_eq!(
        h.header("upload-expires"),
        None,
        "a complete upload does not expire"
    );

    let video = video_of(&server, &creator, &location);
    assert_eq!(h.header("video-id"), Some(video.as_str()));
    let v = assert_ready(&server, &creator, &video, &clip);
    assert_eq!(v["title"], "Bunny over tus", "{v}");
    assert_eq!(v["hashtags"], json!(["bunny", "tus"]), "{v}");
    assert_eq!(v["visibility"], "unlisted", "{v}");
}

/// The offset once it stops moving (a PATCH the kill cut off may still be
/// being stored).
fn settled_offset(server: &Server, client: &Client, location: &str) -> u64 {
    let mut last = offset(&head(server, client, location));
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = offset(&head(server, client, location));
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Lines of a child's stdout as they come.
fn line_channel(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn tus_js_client_aborted_mid_patch_resumes_from_the_offset_the_server_kept() {
    assert!(have("node"), "Node.js is installed by scripts/setup");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (creator, _) = register(&server, "tusjs", "creator");
    let clip_path = shared_media(CLIP);
    let clip = std::fs::read(&clip_path).unwrap();
    let meta = json!({"filename": CLIP, "filetype": "video/mp4", "title": "Bunny from Node",
        "hashtags": "[\"node\"]", "visibility": "public"})
    .to_string();
    // 40 000-byte PATCHes; the one at 160 000 sends 20 000 bytes, stalls,
    // and is aborted.
    let out = run(
        Command::new("node")
            .arg(manifest_dir().join("clients/tus_upload.mjs"))
            .arg(server.url(TUS))
            .arg(creator.token.as_deref().unwrap())
            .arg(&clip_path)
            .arg(dir.path().join("tus-urls.json"))
            .args([meta.as_str(), "40000", "160000"]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |event: &str| {
        events
            .iter()
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {events:?}"))
    };
    assert_eq!(find("aborted")["offset"], 160_000, "{events:?}");
    assert_eq!(find("aborted")["sent"], 20_000, "{events:?}");
    let created = events
        .iter()
        .find(|e| e["method"] == "POST")
        .expect("the first run created the upload");
    assert_eq!(created["status"], 201);
    let previous = find("previous");
    assert_eq!(previous["count"], 1, "{events:?}");
    let url = previous["url"].as_str().unwrap();
    assert_eq!(find("success")["url"], url);

    let resumed: Vec<&Value> = events.iter().filter(|e| e["phase"] == "resumed").collect();
    assert!(
        resumed.iter().all(|e| e["method"] != "POST"),
        "the resumed run created a new upload: {resumed:?}"
    );
    assert_eq!(resumed[0]["method"], "HEAD", "{resumed:?}");
    // The broken PATCH's 20 000 bytes were kept, so some HEAD (the first,
    // or one after a 409 while that PATCH was still being stored) says so.
    assert!(
        resumed
            .iter()
            .any(|e| e["method"] == "HEAD" && e["offset"] == "180000"),
        "{resumed:?}"
    );
    let last = resumed.last().unwrap();
    assert_eq!(
        (&last["method"], &last["status"], &last["offset"]),
        (&json!("PATCH"), &json!(204), &json!(clip.len().to_string()))
    );

    let location = url.strip_prefix(&server.base).unwrap();
    let video = video_of(&server, &creator, location);
    let v = assert_ready(&server, &creator, &video, &clip);
    assert_eq!(v["title"], "Bunny from Node", "{v}");
    assert_eq!(v["hashtags"], json!(["node"]), "{v}");
}

#[test]
fn offsets_checksums_a_broken_body_a_crash_and_the_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "");
    let (creator, _) = register(&server, "tusraw", "creator");
    let clip = std::fs::read(shared_media(CLIP)).unwrap();
    let size = clip.len() as u64;
    let meta = metadata(&[("filename", "raw.mp4"), ("title", "Raw tus")]);

    // creation-with-upload, checksummed.
    let first = &clip[..100_000];
    let c = create(
        &server,
        &creator,
        size,
        &meta,
        Some(first),
        &[("upload-checksum", &checksum(first))],
    );
    assert_eq!(c.status, 201, "{}", c.text());
    assert_eq!(offset(&c), 100_000);
    assert_eq!(c.header("tus-resumable"), Some("1.0.0"));
    let location = c.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("{TUS}/")), "{location}");
    assert_eq!(
        c.json()["uploadId"].as_str(),
        location.rsplit('/').next(),
        "{}",
        c.text()
    );
    let expires = c.header("upload-expires").expect("Upload-Expires");
    assert!(expires.ends_with(" GMT"), "an HTTP date: {expires}");

    let h = head(&server, &creator, &location);
    assert_eq!((h.status, offset(&h)), (200, 100_000));
    assert_eq!(h.header("upload-length"), Some(size.to_string().as_str()));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    assert_eq!(h.header("upload-metadata"), Some(meta.as_str()));
    assert_eq!(h.header("upload-expires"), Some(expires));
    assert_eq!(h.header("tus-resumable"), Some("1.0.0"));

    // A wrong offset: 409, nothing changes.
    let r = patch(&server, &creator, &location, 50, &clip[50..60], &[]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["details"]["offset"], 100_000);
    // Not tus's media type: 415.
    let r = creator.request(
        "PATCH",
        &server.url(&location),
        &[
            VERSION,
            ("upload-offset", "100000"),
            ("content-type", "application/octet-stream"),
        ],
        Some(&clip[100_000..100_010]),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // A checksum that does not match (the body crosses a chunk boundary,
    // 131 072): 460, and none of it is kept.
    let next = &clip[100_000..160_000];
    let r = patch(
        &server,
        &creator,
        &location,
        100_000,
        next,
        &[("upload-checksum", &checksum(&clip[..10]))],
    );
    assert_eq!(r.status, 460, "{}", r.text());
    assert_eq!(r.error_code(), "CHECKSUM_MISMATCH");
    assert_eq!(offset(&head(&server, &creator, &location)), 100_000);
    let r = patch(
        &server,
        &creator,
        &location,
        100_000,
        next,
        &[("upload-checksum", "md5 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")],
    );
    assert_eq!(r.status, 400, "only sha1 and sha256: {}", r.text());
    // sha1, which tus requires every server to take: a wrong digest is 460.
    let r = patch(
        &server,
        &creator,
        &location,
        100_000,
        next,
        &[("upload-checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")],
    );
    assert_eq!(r.status, 460, "{}", r.text());
    assert_eq!(offset(&head(&server, &creator, &location)), 100_000);
    let r = patch(
        &server,
        &creator,
        &location,
        100_000,
        next,
        &[("upload-checksum", &checksum(next))],
    );
    assert_eq!((r.status, offset(&r)), (204, 160_000), "{}", r.text());
    // A body that breaks off: what arrived is kept.
    broken_patch(
        &server,
        &creator,
        &location,
        160_000,
        &clip[160_000..260_000],
        30_000,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while offset(&head(&server, &creator, &location)) != 190_000 {
        assert!(
            Instant::now() < deadline,
            "the 30 000 bytes that arrived were not kept"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A crash (kill -9) loses nothing that was acknowledged.
    server.kill9();
    let server = Server::start_with(
        &dir.path().join("appliance.toml"),
        &dir.path().join("data"),
        dir.path().join("server.log"),
    );
    assert_eq!(offset(&head(&server, &creator, &location)), 190_000);

    // The last byte queues the transcode, once.
    let r = patch(&server, &creator, &location, 190_000, &clip[190_000..], &[]);
    assert_eq!((r.status, offset(&r)), (204, size), "{}", r.text());
    assert_eq!(r.header("upload-expires"), None);
    let video = video_of(&server, &creator, &location);
    assert_eq!(r.header("video-id"), Some(video.as_str()));
    // A client that missed that answer sends the last PATCH again (or an
    // empty one at the end): the same answer, nothing queued twice.
    let again = patch(&server, &creator, &location, size, &[], &[]);
    assert_eq!(
        (again.status, offset(&again)),
        (204, size),
        "{}",
        again.text()
    );
    let stale = patch(&server, &creator, &location, 190_000, &clip[190_000..], &[]);
    assert_eq!(stale.status, 409, "{}", stale.text());
    let v = assert_ready(&server, &creator, &video, &clip);
    assert_eq!(v["title"], "Raw tus");
    let jobs = admin(&server, "tusadmin").get(&server.url("/api/v1/ops/jobs?limit=1000"));
    assert_eq!(jobs.status, 200, "{}", jobs.text());
    let for_video = jobs.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["videoId"] == video.as_str())
        .count();
    assert_eq!(for_video, 1, "{}", jobs.text());
}

/// Sends a PATCH that announces `body.len()` bytes, sends `sent` of them
/// and closes the connection, as a client that loses its network does.
fn broken_patch(
    server: &Server,
    client: &Client,
    location: &str,
    at: u64,
    body: &[u8],
    sent: usize,
) {
    let host = server.base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {at}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        client.token.as_deref().unwrap(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..sent]).unwrap();
    s.flush().unwrap();
    // Let the bytes reach the server before the connection goes.
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
}

#[test]
fn versions_capabilities_limits_termination_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        dir.path(),
        "",
        &[
            ("APPLIANCE_UPLOADS__MAX_FILE_SIZE", "1000000"),
            ("APPLIANCE_UPLOADS__SESSION_TTL_SECS", "3"),
        ],
    );
    let (creator, _) = register(&server, "tuslimits", "creator");
    let (viewer, _) = register(&server, "tusviewer", "viewer");
    let meta = metadata(&[("filename", "a.mp4")]);

    // Capabilities, without a token (a browser's preflight has none).
    let o = Client::new().request("OPTIONS", &server.url(TUS), &[], None);
    assert_eq!(o.status, 204);
    assert_eq!(o.header("tus-version"), Some("1.0.0"));
    assert_eq!(o.header("tus-max-size"), Some("1000000"));
    assert_eq!(o.header("tus-checksum-algorithm"), Some("sha1,sha256"));
    let extensions = o.header("tus-extension").unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "expiration",
        "termination",
        "checksum",
    ] {
        assert!(extensions.split(',').any(|x| x == e), "{e} in {extensions}");
    }
    assert_eq!(o.header("access-control-allow-origin"), Some("*"));
    let exposed = o.header("access-control-expose-headers").unwrap();
    for h in [
        "Upload-Offset",
        "Location",
        "Tus-Resumable",
        "Upload-Expires",
        "Upload-Metadata",
    ] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    assert!(o
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Upload-Offset"));

    // Versions: 412 with Tus-Version, for an old one and for none.
    let r = creator.request(
        "POST",
        &server.url(TUS),
        &[("tus-resumable", "0.2.0"), ("upload-length", "10")],
        None,
    );
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    let r = creator.request("POST", &server.url(TUS), &[("upload-length", "10")], None);
    assert_eq!(r.status, 412, "{}", r.text());
    // A token like every upload route; creators only.
    let r = create(&server, &Client::new(), 10, &meta, None, &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(create(&server, &viewer, 10, &meta, None, &[]).status, 403);
    // Limits and metadata, refused at creation.
    let r = create(&server, &creator, 1_000_001, &meta, None, &[]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        create(&server, &creator, 1_000_000, &meta, None, &[]).status,
        201
    );
    for bad in [
        "filename !!".to_owned(),
        metadata(&[("visibility", "secret")]),
        metadata(&[("title", &"x".repeat(151))]),
        metadata(&[("hashtags", "no-dashes")]),
    ] {
        let r = create(&server, &creator, 10, &bad, None, &[]);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = create(
        &server,
        &creator,
        10,
        &metadata(&[("filetype", "text/plain")]),
        None,
        &[],
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let r = creator.request(
        "POST",
        &server.url(TUS),
        &[VERSION, ("upload-defer-length", "1")],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // An idempotency key names one upload.
    let key = [("x-idempotency-key", "tus-create-1")];
    let a = create(&server, &creator, 10, &meta, None, &key);
    let b = create(&server, &creator, 10, &meta, None, &key);
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(a.header("location"), b.header("location"));

    // A body past Upload-Length: 413 before anything is read.
    let small = create(&server, &creator, 10, &meta, None, &[]);
    let location = small.header("location").unwrap().to_owned();
    let r = patch(&server, &creator, &location, 0, b"0123456789x", &[]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(offset(&head(&server, &creator, &location)), 0);

    // Termination: 204, then the URL is gone.
    let t = create(&server, &creator, 10, &meta, Some(b"12345"), &[]);
    assert_eq!((t.status, offset(&t)), (201, 5), "{}", t.text());
    let location = t.header("location").unwrap().to_owned();
    let other = register(&server, "tusother", "creator").0;
    assert_eq!(
        head(&server, &other, &location).status,
        404,
        "not someone else's"
    );
    let d = creator.request("DELETE", &server.url(&location), &[VERSION], None);
    assert_eq!(d.status, 204, "{}", d.text());
    assert_eq!(head(&server, &creator, &location).status, 404);
    assert_eq!(
        patch(&server, &creator, &location, 5, b"67890", &[]).status,
        404
    );
    // A session of the chunked API has no tus URL.
    let chunked = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "c.mp4", "fileSize": 10, "mimeType": "video/mp4"}),
    );
    let id = chunked.json()["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(head(&server, &creator, &format!("{TUS}/{id}")).status, 404);

    // Expiry (3 s here): 410 for HEAD and PATCH.
    let e = create(&server, &creator, 10, &meta, None, &[]);
    let location = e.header("location").unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(head(&server, &creator, &location).status, 410);
    let r = patch(&server, &creator, &location, 0, b"0123456789", &[]);
    assert_eq!(r.status, 410, "{}", r.text());
}
