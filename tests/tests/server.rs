//! `appliance serve` end to end: resumable uploads, jobs, SSE, the HLS
//! origin's HTTP semantics, errors, auth, idempotency (crash recovery,
//! shutdown and expiry are in `lifecycle.rs`).

use std::time::Duration;

use e2e::server::{assert_decodes, register, upload_small, wait_event, wait_final, Client, Server};
use e2e::{run, shared_media};
use serde_json::json;
use sha2::{Digest, Sha256};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The main scenario: chunks out of order, one twice, one corrupt,
/// an interruption and a resume from `GET /uploads/{id}`, completion with
/// an idempotency key, SSE to `completed`, then the ladder over HTTP.
#[test]
fn resumable_upload_to_playable_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (creator, _) = register(&server, "ann", "creator");
    let file = shared_media("bbb_320x240_h264_aac_10s.mp4");
    let bytes = std::fs::read(&file).unwrap();

    let init = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "bbb.mp4", "fileSize": bytes.len(), "mimeType": "video/mp4"}),
    );
    assert_eq!(init.status, 201, "{}", init.text());
    let init = init.json();
    let upload = init["uploadId"].as_str().unwrap().to_owned();
    let chunk_size = init["chunkSize"].as_u64().unwrap() as usize;
    let total = init["totalChunks"].as_u64().unwrap() as u32;
    assert!(
        total >= 5,
        "the clip should span several chunks, got {total}"
    );
    let chunk =
        |n: u32| &bytes[n as usize * chunk_size..((n as usize + 1) * chunk_size).min(bytes.len())];
    let put = |n: u32, body: &[u8], digest: Option<&str>| {
        let url = server.url(&format!("/api/v1/uploads/{upload}/chunks/{n}"));
        let mut headers = vec![("content-type", "application/octet-stream")];
        if let Some(d) = digest {
            headers.push(("x-chunk-sha256", d));
        }
        creator.request("PUT", &url, &headers, Some(body))
    };

    // Out of order, the last chunk first; chunks 1 and 2 are "lost".
    let mut order: Vec<u32> = (0..total).rev().filter(|n| *n != 1 && *n != 2).collect();
    order.push(total - 1); // sent twice: harmless
    for n in &order {
        let digest = sha256_hex(chunk(*n));
        let r = put(*n, chunk(*n), Some(&digest));
        assert_eq!(r.status, 200, "chunk {n}: {}", r.text());
        assert_eq!(r.json()["sha256"], digest);
    }
    let again = put(total - 1, chunk(total - 1), None);
    assert_eq!(
        again.json()["created"],
        false,
        "a repeated chunk is not stored twice"
    );
    // Corrupted in transit: refused, nothing stored.
    let mut corrupt = chunk(1).to_vec();
    corrupt[10] ^= 0xff;
    let r = put(1, &corrupt, Some(&sha256_hex(chunk(1))));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "VALIDATION_ERROR")
    );
    // Wrong size and out-of-range chunk numbers.
    assert_eq!(put(1, &chunk(1)[..100], None).status, 400);
    assert_eq!(put(total, chunk(0), None).status, 400);

    // Completing now is refused, and says what is missing.
    let complete_url = server.url(&format!("/api/v1/uploads/{upload}/complete"));
    let r = creator.post_json(&complete_url, &json!({"title": "Big Buck Bunny"}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "UPLOAD_INCOMPLETE")
    );
    assert_eq!(r.json()["error"]["details"]["missingChunks"], json!([1, 2]));

    // "Reconnect": ask the server what it has, send only what is missing.
    let state = creator
        .get(&server.url(&format!("/api/v1/uploads/{upload}")))
        .json();
    assert_eq!(state["missingChunks"], json!([1, 2]));
    assert_eq!(
        state["receivedChunks"].as_array().unwrap().len() as u32,
        total - 2
    );
    for n in state["missingChunks"].as_array().unwrap() {
        let n = n.as_u64().unwrap() as u32;
        assert_eq!(put(n, chunk(n), None).status, 200);
    }
    let state = creator
        .get(&server.url(&format!("/api/v1/uploads/{upload}")))
        .json();
    assert_eq!(
        state["bytesReceived"].as_u64().unwrap() as usize,
        bytes.len()
    );

    let meta = json!({"title": "Big Buck Bunny", "hashtags": ["#Bunny", "open_movie"], "visibility": "public"});
    let key_headers = [
        ("content-type", "application/json"),
        ("x-idempotency-key", "complete-1"),
    ];
    let body = serde_json::to_vec(&meta).unwrap();
    let first = creator.request("POST", &complete_url, &key_headers, Some(&body));
    assert_eq!(first.status, 202, "{}", first.text());
    let video = first.json()["videoId"].as_str().unwrap().to_owned();
    assert_eq!(first.json()["status"], "processing");
    let replay = creator.request("POST", &complete_url, &key_headers, Some(&body));
    assert_eq!((replay.status, replay.json()), (202, first.json()));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let other = creator.request(
        "POST",
        &complete_url,
        &key_headers,
        Some(b"{\"title\":\"other\"}"),
    );
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (409, "CONFLICT")
    );

    // SSE: progress per rung, then completed; the stream then ends.
    let events = creator.sse(&server.url(&format!("/api/v1/videos/{video}/events")));
    let (done, seen) = wait_event(&events, "transcode.completed", Duration::from_secs(240));
    assert_eq!(done["status"], "ready");
    assert_eq!(done["percent"], 100.0);
    let progress: Vec<_> = seen
        .iter()
        .filter(|(e, _)| e == "transcode.progress")
        .collect();
    assert!(
        progress
            .iter()
            .any(|(_, v)| v["rungs"]["240p"].as_u64().is_some_and(|p| p > 0)),
        "per-rung progress expected, saw {seen:?}"
    );
    assert!(
        events.recv_timeout(Duration::from_secs(10)).is_err(),
        "stream ends after completion"
    );
    // A client that (re)connects after the end gets the final state at once.
    let late = creator.sse(&server.url(&format!("/api/v1/videos/{video}/events")));
    let (v, _) = wait_event(&late, "transcode.completed", Duration::from_secs(5));
    assert_eq!(v["status"], "ready");

    let v = Client::new()
        .get(&server.url(&format!("/api/v1/videos/{video}")))
        .json();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["hashtags"], json!(["bunny", "open_movie"]));
    assert_eq!(v["renditions"][0]["name"], "240p");
    let master = server.url(v["masterUrl"].as_str().unwrap());
    assert_decodes(&master);
    let poster = Client::new().get(&server.url(v["posterUrl"].as_str().unwrap()));
    assert_eq!(poster.header("content-type"), Some("image/jpeg"));
    assert_eq!(&poster.body[..2], &[0xff, 0xd8]);

    // The chunks are gone once the upload is complete; only the source
    // and the ladder remain.
    let objects = server.objects();
    assert!(
        objects
            .iter()
            .all(|o| o.starts_with(&format!("videos/{video}/"))),
        "{objects:?}"
    );
    assert!(objects.contains(&format!("videos/{video}/source")));
    assert!(objects.contains(&format!("videos/{video}/hls/master.m3u8")));

    origin_semantics(&server, &video);
}

/// The spec's origin rules, on a published ladder.
fn origin_semantics(server: &Server, video: &str) {
    let anon = Client::new();
    let url = |p: &str| server.url(&format!("/hls/{video}/{p}"));
    let master = anon.get(&url("master.m3u8"));
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(
        master.header("cache-control"),
        Some("public, max-age=1, must-revalidate")
    );
    assert_eq!(master.header("access-control-allow-origin"), Some("*"));
    assert!(master.header("set-cookie").is_none());
    assert!(master.header("vary").is_none(), "no per-request variation");
    let init = anon.get(&url("240p/init.mp4"));
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    let seg_url = url("240p/0.m4s");
    let seg = anon.get(&seg_url);
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("content-type"), Some("video/iso.segment"));
    assert_eq!(
        seg.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = seg.header("etag").unwrap().to_owned();
    let modified = seg.header("last-modified").unwrap().to_owned();
    assert_eq!(
        anon.request("GET", &seg_url, &[("if-none-match", &etag)], None)
            .status,
        304
    );
    assert_eq!(
        anon.request("GET", &seg_url, &[("if-modified-since", &modified)], None)
            .status,
        304
    );
    let other_tag = anon.request("GET", &seg_url, &[("if-none-match", "\"nope\"")], None);
    assert_eq!(other_tag.status, 200);
    let part = anon.request("GET", &seg_url, &[("range", "bytes=100-199")], None);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, seg.body[100..200]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{}", seg.body.len()).as_str())
    );
    let tail = anon.request("GET", &seg_url, &[("range", "bytes=-50")], None);
    assert_eq!(tail.body, seg.body[seg.body.len() - 50..]);
    // RFC 9110 §14.1.3: a suffix longer than the file is the whole file.
    let long_tail = format!("bytes=-{}", seg.body.len() * 2);
    let all = anon.request("GET", &seg_url, &[("range", &long_tail)], None);
    assert_eq!(all.status, 206);
    assert_eq!(all.body, seg.body);
    assert_eq!(
        all.header("content-range"),
        Some(format!("bytes 0-{}/{}", seg.body.len() - 1, seg.body.len()).as_str())
    );
    // RFC 9110 §13.1.1/§13.1.4: If-Match and If-Unmodified-Since → 412
    // when they do not hold, before any 304 or range is considered.
    for (header, value, want) in [
        ("if-match", etag.as_str(), 200),
        ("if-match", "*", 200),
        ("if-match", "\"nope\"", 412),
        ("if-unmodified-since", modified.as_str(), 200),
        ("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT", 412),
    ] {
        let r = anon.request("GET", &seg_url, &[(header, value)], None);
        assert_eq!(r.status, want, "{header}: {value}");
        if want == 412 {
            assert_eq!(r.error_code(), "PRECONDITION_FAILED");
        }
    }
    let both = anon.request(
        "GET",
        &seg_url,
        &[("if-match", "\"nope\""), ("if-none-match", &etag)],
        None,
    );
    assert_eq!(both.status, 412, "If-Match is evaluated first");
    let past = anon.request(
        "GET",
        &seg_url,
        &[("range", &format!("bytes={}-", seg.body.len()))],
        None,
    );
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{}", seg.body.len()).as_str())
    );
    let head = anon.request("HEAD", &seg_url, &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(seg.body.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    let pre = anon.request(
        "OPTIONS",
        &seg_url,
        &[
            ("origin", "https://player.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "range"),
        ],
        None,
    );
    assert!(pre.status == 204 || pre.status == 200, "{pre:?}");
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase()
        .contains("range"));

    for bad in [
        "../source",
        "..%2fsource",
        "240p/../../source",
        "240p/%2e%2e/master.m3u8",
        "source",
        "240p/0.m4s.tmp",
        "240p//0.m4s",
        "240p/99.m4s",
    ] {
        let r = anon.get(&url(bad));
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
        assert_eq!(r.error_code(), "NOT_FOUND");
        assert!(
            !r.body.windows(4).any(|w| w == b"ftyp"),
            "{bad} leaked a file"
        );
    }
    let missing = anon.get(&server.url("/hls/nosuchvideo/master.m3u8"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), Some("public, max-age=5"));
}

#[test]
fn private_videos_are_not_served_and_others_cannot_touch_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, ann_id) = register(&server, "ann", "creator");
    let (bob, _) = register(&server, "bob", "creator");
    let file = shared_media("prog_640x360_h264_aac_8s.mp4");
    let video = upload_small(
        &server,
        &ann,
        &file,
        &json!({"title": "mine", "visibility": "private"}),
    );
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(180))["status"],
        "ready"
    );

    let r = Client::new().get(&server.url(&format!("/hls/{video}/master.m3u8")));
    assert_eq!(r.status, 404);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    // The owner sees it through the API; nobody else does.
    assert_eq!(
        ann.get(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        200
    );
    assert_eq!(
        bob.get(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        404
    );
    assert_eq!(
        Client::new()
            .get(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        404
    );
    assert_eq!(
        bob.delete(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        404
    );
    let mine = ann
        .get(&server.url(&format!("/api/v1/users/{ann_id}/videos")))
        .json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let theirs = bob
        .get(&server.url(&format!("/api/v1/users/{ann_id}/videos")))
        .json();
    assert!(theirs["items"].as_array().unwrap().is_empty());

    assert_eq!(
        ann.delete(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        204
    );
    assert_eq!(
        ann.get(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        404
    );
    assert!(server.objects().is_empty(), "{:?}", server.objects());
}

#[test]
fn errors_auth_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let anon = Client::new();
    let (creator, _) = register(&server, "carol", "creator");
    let (viewer, _) = register(&server, "vic", "viewer");

    let r = anon.get(&server.url("/api/v1/nope"));
    assert_eq!((r.status, r.error_code().as_str()), (404, "NOT_FOUND"));
    let r = anon.request("PATCH", &server.url("/api/v1/uploads/init"), &[], None);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "METHOD_NOT_ALLOWED")
    );
    let r = anon.post_json(&server.url("/api/v1/uploads/init"), &json!({}));
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    // RFC 9110 §11.6.1: a 401 says which scheme to use.
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"appliance\"")
    );
    let r = Client::with_token("forged").get(&server.url("/api/v1/videos/x"));
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    // RFC 9112 §3.2: no Host, two Hosts or a malformed one is a 400, on
    // the API and the origin alike; HTTP/1.0 may leave it out.
    let addr = server.base.trim_start_matches("http://").to_owned();
    for (request, want) in [
        ("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        (
            "GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            "400",
        ),
        (
            "GET /hls/x/master.m3u8 HTTP/1.1\r\nHost: user@a.example\r\nConnection: close\r\n\r\n",
            "400",
        ),
        ("GET /healthz HTTP/1.0\r\n\r\n", "200"),
        (
            "GET /healthz HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\n",
            "200",
        ),
    ] {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        let status = answer.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(status, want, "{request:?} → {answer}");
    }
    let init = json!({"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"});
    let r = viewer.post_json(&server.url("/api/v1/uploads/init"), &init);
    assert_eq!((r.status, r.error_code().as_str()), (403, "FORBIDDEN"));
    let r = creator.request(
        "POST",
        &server.url("/api/v1/uploads/init"),
        &[("content-type", "application/json")],
        Some(b"{not json"),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "VALIDATION_ERROR")
    );
    let r = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4", "extra": 1}),
    );
    assert_eq!(r.status, 400, "unknown fields are refused");
    let r = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "a.txt", "fileSize": 10, "mimeType": "text/plain"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "UNSUPPORTED_FORMAT")
    );
    let r = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "a.mp4", "fileSize": 6_000_000_000u64, "mimeType": "video/mp4"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    let big = vec![b' '; 100 << 10];
    let r = creator.request(
        "POST",
        &server.url("/api/v1/uploads/init"),
        &[("content-type", "application/json")],
        Some(&big),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "PAYLOAD_TOO_LARGE")
    );

    // A chunk bigger than the session's chunk size never reaches the handler.
    let s = creator
        .post_json(
            &server.url("/api/v1/uploads/init"),
            &json!({"filename": "a.mp4", "fileSize": 300_000, "mimeType": "video/mp4"}),
        )
        .json();
    let id = s["uploadId"].as_str().unwrap();
    let r = creator.request(
        "PUT",
        &server.url(&format!("/api/v1/uploads/{id}/chunks/0")),
        &[],
        Some(&vec![0u8; 200_000]),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    let r = creator.request(
        "PUT",
        &server.url(&format!("/api/v1/uploads/{id}/chunks/x")),
        &[],
        Some(b"1"),
    );
    assert_eq!(r.status, 400);
    // Someone else's upload does not exist for you.
    let (other, _) = register(&server, "dave", "creator");
    assert_eq!(
        other
            .get(&server.url(&format!("/api/v1/uploads/{id}")))
            .status,
        404
    );
    assert_eq!(
        creator
            .delete(&server.url(&format!("/api/v1/uploads/{id}")))
            .status,
        204
    );
    assert_eq!(
        creator
            .get(&server.url(&format!("/api/v1/uploads/{id}")))
            .json()["status"],
        "cancelled"
    );

    // Content the engine refuses is refused at completion, with its reason.
    let trunc = std::fs::read(shared_media("truncated_100b.mp4")).unwrap();
    let s = creator
        .post_json(
            &server.url("/api/v1/uploads/init"),
            &json!({"filename": "t.mp4", "fileSize": trunc.len(), "mimeType": "video/mp4"}),
        )
        .json();
    let id = s["uploadId"].as_str().unwrap();
    assert_eq!(
        creator
            .request(
                "PUT",
                &server.url(&format!("/api/v1/uploads/{id}/chunks/0")),
                &[],
                Some(&trunc)
            )
            .status,
        200
    );
    let r = creator.post_json(
        &server.url(&format!("/api/v1/uploads/{id}/complete")),
        &json!({"title": "t"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "UNSUPPORTED_FORMAT")
    );
    assert_eq!(r.json()["error"]["details"]["reason"], "CORRUPT_MEDIA");
    let r = creator.post_json(
        &server.url(&format!("/api/v1/uploads/{id}/complete")),
        &json!({}),
    );
    assert_eq!(r.status, 400, "title is required: {}", r.text());

    // Accounts.
    let r = anon.post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"username": "carol", "password": "another password"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (409, "CONFLICT"));
    let r = anon.post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"username": "eve", "password": "short"}),
    );
    assert_eq!(r.status, 400);
    let r = anon.post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"username": "mallory", "password": "0123456789ab", "role": "admin"}),
    );
    assert_eq!(r.status, 403);
    let r = anon.post_json(
        &server.url("/api/v1/auth/login"),
        &json!({"username": "carol", "password": "wrong password"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    let r = anon.post_json(
        &server.url("/api/v1/auth/login"),
        &json!({"username": "carol", "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        Client::with_token(&token)
            .get(&server.url("/api/v1/ops/jobs"))
            .status,
        403
    );

    // An admin made by the operator sees the jobs.
    let out = run(
        std::process::Command::new("sh").arg("-c").arg(format!(
            "echo 'operator password' | '{}' user add root --role admin --config '{}'",
            e2e::appliance_bin().display(),
            server.config.display()
        )),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let admin = anon
        .post_json(
            &server.url("/api/v1/auth/login"),
            &json!({"username": "root", "password": "operator password"}),
        )
        .json();
    let admin = Client::with_token(admin["token"].as_str().unwrap());
    assert_eq!(admin.get(&server.url("/api/v1/ops/jobs")).status, 200);
    let inv = admin.get(&server.url("/api/v1/ops/inventory")).json();
    assert!(
        inv["hardware"]["cpu"]["logical_cores"].as_u64().unwrap() >= 1,
        "{inv}"
    );
    assert_eq!(inv["stages"].as_array().unwrap().len(), 3, "{inv}");
    assert_eq!(
        inv["hardware"]["libraries"].as_array().unwrap().len(),
        5,
        "{inv}"
    );

    // Health, metrics and the API description.
    assert_eq!(anon.get(&server.url("/healthz")).status, 200);
    // Ready: nothing `down` (this machine's disk may make it `degraded`;
    // tests/tests/status.rs checks the states one by one).
    let ready = anon.get(&server.url("/readyz"));
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_ne!(ready.json()["status"], "down", "{}", ready.text());
    assert!(anon
        .get(&server.url("/metrics"))
        .text()
        .contains("appliance_jobs{state=\"queued\"}"));
    let doc = anon.get(&server.url("/openapi.json")).json();
    for path in [
        "/api/v1/uploads/init",
        "/api/v1/uploads/{id}/chunks/{n}",
        "/api/v1/videos/{id}/events",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["UploadSession"].is_object());
}

/// Started from `/` on a config in a folder of its own whose paths are all
/// relative: the data directory, the model and hls.js are the config
/// folder's, not the working directory's.
#[test]
fn relative_paths_in_the_config_are_the_config_folders() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("etc");
    std::fs::create_dir_all(folder.join("assets")).unwrap();
    let hls = e2e::manifest_dir().join("../player/node_modules/hls.js/dist/hls.min.js");
    let model = e2e::manifest_dir().join("../models/all-MiniLM-L6-v2");
    if !hls.is_file() || !model.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "scripts/setup installs hls.js and the model"
        );
        eprintln!("SKIPPED: hls.js or the model missing; run scripts/setup");
        return;
    }
    std::fs::copy(&hls, folder.join("assets/hls.min.js")).unwrap();
    std::os::unix::fs::symlink(model.canonicalize().unwrap(), folder.join("model")).unwrap();
    let text = e2e::server::test_config(std::path::Path::new("data"), "")
        .replace(&hls.display().to_string(), "assets/hls.min.js")
        .replace(&model.display().to_string(), "model");
    assert!(!text.contains(dir.path().to_str().unwrap()), "{text}");
    let config = folder.join("appliance.toml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start_with(&config, &folder.join("data"), dir.path().join("server.log"));
    assert!(
        folder.join("data").is_dir(),
        "the data directory is beside the config"
    );

    let js = Client::new().get(&server.url("/assets/hls.min.js"));
    assert_eq!(js.status, 200, "hls.js from beside the config");
    let (ann, _) = register(&server, "ann", "creator");
    let clip = e2e::server::tiny_clip(dir.path());
    let video = upload_small(
        &server,
        &ann,
        &clip,
        &json!({"title": "found from anywhere"}),
    );
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(120))["status"],
        "ready"
    );
    // The model beside the config embedded it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = Client::new().get(&server.url("/metrics")).text();
        let embedded = metrics
            .lines()
            .find(|l| l.starts_with("appliance_videos_embedded_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if embedded >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not embedded; server log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Written to a file, the log has no terminal colour codes.
    assert!(!server.log().contains('\x1b'), "ANSI codes in a log file");
}

/// `--log-format json`: one JSON object per line, and a job's life told at
/// `info` (what a log shipper indexes).
#[test]
fn json_logs_are_one_object_per_line_and_tell_the_jobs_life() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_args(dir.path(), &["--log-format", "json"]);
    let (ann, _) = register(&server, "ann", "creator");
    let clip = e2e::server::tiny_clip(dir.path());
    let video = upload_small(&server, &ann, &clip, &json!({"title": "logged"}));
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(120))["status"],
        "ready"
    );
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string(),
            "{l}"
        );
    }
    let said = |message: &str| {
        lines
            .iter()
            .any(|l| l["fields"]["message"] == message && l["fields"]["video"] == video.as_str())
    };
    assert!(said("transcode starting"), "{log}");
    assert!(said("playable"), "{log}");
    assert!(said("published"), "{log}");
}
