//! Webhooks against a real `appliance serve`: a receiver that fails its
//! first deliveries still gets `video.ready` once, signed, with one event
//! id across every attempt and across a `kill -9` of the box mid-retry;
//! the delivery log shows every attempt; a redelivery repeats the id;
//! `video.deleted`, `upload.expired` and `live.*` arrive, each only at the
//! endpoints subscribed to it. Signatures are checked here with an HMAC
//! written from RFC 2104, not with the box's code.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::server::{admin, register, tiny_clip, upload_small, wait_final, Client, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Short retries: the first after 1–2 s, then at most 4 s apart.
const FAST: &str = "[webhooks]\nallow_private = true\nfirst_retry_secs = 2\nmax_retry_secs = 4\ntimeout_secs = 2\n";

/// One POST the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

impl Hit {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook endpoint on loopback that answers 500 to its first
/// `failures` requests and 200 after.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/in", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::<Hit>::new()));
        let shared = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let hits = shared.clone();
                std::thread::spawn(move || serve_one(stream, &hits, failures));
            }
        });
        Self { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the hits so far.
    fn wait(&self, what: &str, limit: Duration, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        loop {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {limit:?}; got {hits:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve_one(stream: std::net::TcpStream, hits: &Mutex<Vec<Hit>>, failures: usize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    assert!(line.starts_with("POST /hooks/in "), "{line}");
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let answered = {
        let mut hits = hits.lock().unwrap();
        let answered = if hits.len() < failures { 500 } else { 200 };
        hits.push(Hit {
            headers,
            body: String::from_utf8(body).unwrap(),
            answered,
        });
        answered
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// HMAC-SHA256 (RFC 2104), independent of the box's implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The Standard Webhooks check a receiver makes: the signature over
/// `id.timestamp.body` with the secret's bytes, and a fresh timestamp.
fn assert_signed(hit: &Hit, secret: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let ts = &hit.headers["webhook-timestamp"];
    let signed = format!("{}.{ts}.{}", hit.id(), hit.body);
    let expected = format!("v1,{}", b64.encode(hmac_sha256(&key, signed.as_bytes())));
    let sent = &hit.headers["webhook-signature"];
    assert!(
        sent.split(' ').any(|s| s == expected),
        "signature {sent} is not {expected} for {signed}"
    );
    let age = e2e::now_secs() - ts.parse::<i64>().unwrap();
    assert!((-5..300).contains(&age), "timestamp {ts} is {age} s old");
    assert_eq!(hit.headers["content-type"], "application/json");
}

fn register_hook(
    server: &Server,
    admin: &Client,
    url: &str,
    events: &[&str],
    secret: &str,
) -> String {
    let r = admin.post_json(
        &server.url("/api/v1/ops/webhooks"),
        &json!({"url": url, "events": events, "secret": secret}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let hook = r.json();
    assert_eq!(
        hook["secret"], secret,
        "the creating answer shows the secret"
    );
    hook["id"].as_str().unwrap().to_owned()
}

fn secret(fill: u8) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([fill; 32])
    )
}

#[test]
fn video_ready_survives_failures_and_a_kill_9_signed_once_per_event_id() {
    let hook = Receiver::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), FAST);
    let ops = admin(&server, "hookadmin");
    let key = secret(7);
    let hook_id = register_hook(
        &server,
        &ops,
        &hook.url,
        &["video.ready", "video.deleted"],
        &key,
    );
    let shown = ops
        .get(&server.url(&format!("/api/v1/ops/webhooks/{hook_id}")))
        .json();
    assert_eq!(shown["events"], json!(["video.ready", "video.deleted"]));
    assert!(shown.get("secret").is_none(), "never shown again: {shown}");
    let listed = ops.get(&server.url("/api/v1/ops/webhooks")).json();
    assert_eq!(listed["items"][0]["id"], hook_id.as_str(), "{listed}");
    assert!(listed["items"][0].get("secret").is_none(), "{listed}");
    assert!(listed["nextCursor"].is_null(), "{listed}");

    let (creator, _) = register(&server, "hookcreator", "creator");
    let clip = tiny_clip(dir.path());
    let meta =
        json!({"title": "hooked", "description": "", "hashtags": ["a"], "visibility": "public"});
    let video = upload_small(&server, &creator, &clip, &meta);

    // The first attempt fails; the box dies before its retry.
    hook.wait("a first attempt", Duration::from_secs(120), |h| {
        !h.is_empty()
    });
    server.kill9();
    let before = hook.hits().len();
    let server = Server::start_with(&server.config, &server.data, dir.path().join("server2.log"));
    let hits = hook.wait("a delivery answered 200", Duration::from_secs(90), |h| {
        h.iter().any(|hit| hit.answered == 200)
    });
    assert!(
        before < 4,
        "the kill came mid-retry ({before} attempts before it)"
    );
    assert_eq!(
        wait_final(&server, &creator, &video, Duration::from_secs(120))["status"],
        "ready"
    );
    // Nothing more comes for a delivered event.
    std::thread::sleep(Duration::from_secs(5));
    let hits_now = hook.hits();
    assert_eq!(
        hits_now.len(),
        hits.len(),
        "sent again after a 200: {hits_now:#?}"
    );
    assert!(
        hits.len() >= 4,
        "three failures, then the success: {hits:#?}"
    );
    let event_id = hits[0].id().to_owned();
    assert!(event_id.starts_with("evt_"), "{event_id}");
    for hit in &hits {
        assert_eq!(
            hit.id(),
            event_id,
            "one event id across attempts and the restart"
        );
        assert_signed(hit, &key);
        let body = hit.json();
        assert_eq!(body["type"], "video.ready", "{body}");
        assert_eq!(body["id"], event_id.as_str());
        assert_eq!(body["data"]["videoId"], video.as_str(), "{body}");
        assert_eq!(body["data"]["title"], "hooked");
    }
    assert_eq!(hits.iter().filter(|h| h.answered == 200).count(), 1);

    // The log has every attempt, oldest first, the last the success.
    let log_url = server.url(&format!("/api/v1/ops/webhooks/{hook_id}/deliveries"));
    let log = ops.get(&log_url).json();
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    let delivery = &items[0];
    assert_eq!(delivery["eventId"], event_id.as_str(), "{delivery}");
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len() as u64,
        delivery["attemptCount"].as_u64().unwrap()
    );
    // An attempt the kill cut short may have no outcome; every answer is in.
    let answered: Vec<u64> = attempts
        .iter()
        .filter_map(|a| a["status"].as_u64())
        .collect();
    assert!(
        answered.len() + 1 >= hits.len() && attempts.len() >= hits.len(),
        "{delivery}"
    );
    assert_eq!(answered.last(), Some(&200), "{delivery}");
    assert!(
        answered[..answered.len() - 1].iter().all(|s| *s == 500),
        "{delivery}"
    );
    for a in attempts {
        assert!(a["at"].is_string() && a["outcome"].is_string(), "{a}");
    }
    assert_eq!(attempts.last().unwrap()["outcome"], "delivered");

    // A manual redelivery: the same event id once more, logged as manual.
    let did = delivery["id"].as_i64().unwrap();
    let r = ops.post_json(
        &server.url(&format!(
            "/api/v1/ops/webhooks/{hook_id}/deliveries/{did}/redeliver"
        )),
        &json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let hits = hook.wait("the redelivery", Duration::from_secs(30), |h| {
        h.len() > hits_now.len()
    });
    let again = hits.last().unwrap();
    assert_eq!((again.id(), again.answered), (event_id.as_str(), 200));
    assert_signed(again, &key);
    let log = ops.get(&log_url).json();
    let last = log["items"][0]["attempts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["manual"].as_bool(), last["status"].as_u64()),
        (Some(true), Some(200)),
        "{log}"
    );
    let missing = ops.post_json(
        &server.url(&format!(
            "/api/v1/ops/webhooks/{hook_id}/deliveries/{}/redeliver",
            did + 1000
        )),
        &json!({}),
    );
    assert_eq!(missing.status, 404);

    // Deleting the video is one more event, with its own id.
    assert_eq!(
        creator
            .delete(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        204
    );
    let hits = hook.wait("video.deleted", Duration::from_secs(30), |h| {
        h.iter().any(|hit| hit.json()["type"] == "video.deleted")
    });
    let deleted = hits
        .iter()
        .find(|h| h.json()["type"] == "video.deleted")
        .unwrap();
    assert_ne!(deleted.id(), event_id);
    assert_eq!(deleted.json()["data"]["videoId"], video.as_str());
    assert_signed(deleted, &key);

    // The log pages newest first.
    let page = ops.get(&format!("{log_url}?limit=1")).json();
    assert_eq!(page["items"][0]["event"], "video.deleted", "{page}");
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let rest = ops
        .get(&format!("{log_url}?limit=1&cursor={cursor}"))
        .json();
    assert_eq!(rest["items"][0]["eventId"], event_id.as_str(), "{rest}");
    assert!(rest["nextCursor"].is_null(), "{rest}");

    // A deleted endpoint is gone, and so is its log.
    let gone = format!("/api/v1/ops/webhooks/{hook_id}");
    assert_eq!(ops.delete(&server.url(&gone)).status, 204);
    assert_eq!(ops.get(&server.url(&gone)).status, 404);
    assert_eq!(ops.get(&log_url).status, 404);
}

#[test]
fn expiry_and_live_events_reach_only_their_subscribers() {
    let expiries = Receiver::start(0);
    let live = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        dir.path(),
        FAST,
        &[("APPLIANCE_UPLOADS__SESSION_TTL_SECS", "1")],
    );
    let ops = admin(&server, "hookadmin2");
    let (k1, k2) = (secret(1), secret(2));
    register_hook(
        &server,
        &ops,
        &expiries.url,
        &["upload.expired", "video.ready"],
        &k1,
    );
    register_hook(
        &server,
        &ops,
        &live.url,
        &["live.started", "live.stopped"],
        &k2,
    );
    // Refused targets and secrets, each naming its field.
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/", "events": ["video.ready"]}),
            "url",
        ),
        (json!({"url": expiries.url, "events": []}), "events"),
        (
            json!({"url": expiries.url, "events": ["video.ready"], "secret": "whsec_c2hvcnQ="}),
            "secret",
        ),
        (
            json!({"url": expiries.url, "events": ["video.exploded"]}),
            "events[0]",
        ),
    ] {
        let r = ops.post_json(&server.url("/api/v1/ops/webhooks"), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["details"]["field"], field, "{}", r.text());
    }
    // An idempotent retry of a creation is the same endpoint; only the
    // first answer carries the secret (replays are kept outside the catalog).
    let body =
        serde_json::to_vec(&json!({"url": expiries.url, "events": ["video.failed"]})).unwrap();
    let create = || {
        ops.request(
            "POST",
            &server.url("/api/v1/ops/webhooks"),
            &[
                ("content-type", "application/json"),
                ("x-idempotency-key", "hook-1"),
            ],
            Some(&body),
        )
    };
    let (first, replay) = (create(), create());
    assert_eq!(
        (first.status, replay.status),
        (201, 201),
        "{}",
        replay.text()
    );
    assert_eq!(first.json()["id"], replay.json()["id"]);
    assert!(first.json()["secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    assert!(replay.json().get("secret").is_none(), "{}", replay.text());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let (creator, creator_id) = register(&server, "hookcreator2", "creator");
    let anon = creator.get(&server.url("/api/v1/ops/webhooks"));
    assert_eq!(anon.status, 403, "admins only");

    let init = creator.post_json(
        &server.url("/api/v1/uploads/init"),
        &json!({"filename": "late.mp4", "fileSize": 1000, "mimeType": "video/mp4"}),
    );
    assert_eq!(init.status, 201, "{}", init.text());
    let upload = init.json()["uploadId"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1500));
    let late = creator.request(
        "PUT",
        &server.url(&format!("/api/v1/uploads/{upload}/chunks/0")),
        &[("content-type", "application/octet-stream")],
        Some(&[0u8; 1000]),
    );
    assert_eq!(late.status, 410, "{}", late.text());

    let r = creator.post_json(
        &server.url("/api/v1/live/channels"),
        &json!({"name": "back door", "url": "rtsp://127.0.0.1:9/cam", "rungs": [360]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let channel = r.json()["id"].as_str().unwrap().to_owned();
    let stop = creator.delete(&server.url(&format!("/api/v1/live/channels/{channel}")));
    assert_eq!(stop.status, 200, "{}", stop.text());

    let got = expiries.wait("upload.expired", Duration::from_secs(30), |h| !h.is_empty());
    let body = got[0].json();
    assert_eq!(body["type"], "upload.expired", "{body}");
    assert_eq!(body["data"]["uploadId"], upload.as_str());
    assert_eq!(body["data"]["ownerId"], creator_id.as_str());
    assert_signed(&got[0], &k1);
    let got = live.wait(
        "live.started and live.stopped",
        Duration::from_secs(30),
        |h| h.len() >= 2,
    );
    let mut kinds: Vec<String> = got
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["live.started", "live.stopped"]);
    for hit in &got {
        assert_eq!(hit.json()["data"]["channelId"], channel.as_str());
        assert_signed(hit, &k2);
    }
    assert_ne!(got[0].id(), got[1].id());
    // Nothing else arrives at either endpoint.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((expiries.hits().len(), live.hits().len()), (1, 2));
}
