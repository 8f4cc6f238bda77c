//! Signed playback of private videos, end to end: the box issues playback
//! tokens (JWT) to a video's owner, its origin serves the private video to
//! them, directly and through the nginx CDN config (`tests/nginx/cdn.conf`),
//! hls.js plays it in headless Chromium, and every token that is expired,
//! tampered with, signed by another key, named by an unknown kid or made
//! for another video gets a 403 at every URL. The keys are made here by
//! `openssl genpkey`; some tokens are made here too, by openssl signing a
//! JWT by hand, so the box is shown to accept a standard EdDSA JWT from an
//! implementation that is not its own, and to refuse the forged ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::nginx::Nginx;
use e2e::server::{admin, have, register, upload_small, wait_final, Client, Resp, Server};
use e2e::{now_secs, shared_media};
use serde_json::{json, Value};

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

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `keys/<name>.pem` and `keys/<name>.pub.pem` under `dir`: a fresh
/// Ed25519 pair, never committed.
fn key_pair(dir: &Path, name: &str) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let private = keys.join(format!("{name}.pem"));
    let p = private.to_str().unwrap();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]);
    let public = keys.join(format!("{name}.pub.pem"));
    openssl(&[
        "pkey",
        "-in",
        p,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    private
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT signed by openssl (`pkeyutl -rawin`, pure Ed25519), not the box.
fn forge(key: &Path, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let dir = tempfile::tempdir().unwrap();
    let (msg, sig) = (dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&msg, &input).unwrap();
    openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        key.to_str().unwrap(),
        "-in",
        msg.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
    ]);
    format!("{input}.{}", b64(&std::fs::read(&sig).unwrap()))
}

/// `token` with one character of its `part` (1 = payload, 2 = signature)
/// changed.
fn tamper(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut b = parts[part].clone().into_bytes();
    let at = b.len() / 2;
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    parts[part] = String::from_utf8(b).unwrap();
    parts.join(".")
}

fn ask_token(server: &Server, who: &Client, video: &str, body: &Value) -> Resp {
    who.post_json(
        &server.url(&format!("/api/v1/videos/{video}/playback-token")),
        body,
    )
}

fn token_for(server: &Server, who: &Client, video: &str, body: &Value) -> String {
    let r = ask_token(server, who, video, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

fn with_token(path: &str, token: &str) -> String {
    format!("{path}?token={token}")
}

/// The URLs of a private ladder a player fetches: master, a media
/// playlist, its init segment and first segment, and the poster.
fn ladder_paths(video: &str) -> Vec<String> {
    [
        "/hls/{v}/master.m3u8",
        "/hls/{v}/360p/index.m3u8",
        "/hls/{v}/360p/init.mp4",
        "/hls/{v}/360p/0.m4s",
        "/thumbs/{v}/poster.jpg",
    ]
    .iter()
    .map(|p| p.replace("{v}", video))
    .collect()
}

fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.error_code(), "FORBIDDEN", "{what}");
    assert_eq!(
        r.header("cache-control"),
        Some("private, no-store"),
        "{what}"
    );
    assert_ne!(r.header("x-cache-status"), Some("HIT"), "{what}");
}

const CONFIG: &str = r#"
[playback]
kid = "k1"
private_key = "keys/k1.pem"
public_key = "keys/k1.pub.pem"
default_ttl_secs = 600
cdn_keys_by_token = __BY_TOKEN__
trust_forwarded_for = true

[playback.accepted]
k0 = "keys/k0.pub.pem"
"#;

/// A server whose config names keys made in `dir` (relative paths, so
/// anchored at the config's folder), `k1` signing and `k0` rotated out.
fn start(dir: &Path, by_token: bool) -> Server {
    key_pair(dir, "k1");
    key_pair(dir, "k0");
    Server::start(dir, &CONFIG.replace("__BY_TOKEN__", &by_token.to_string()))
}

fn ready(server: &Server, owner: &Client, file: &str, meta: Value) -> String {
    let id = upload_small(server, owner, &shared_media(file), &meta);
    assert_eq!(
        wait_final(server, owner, &id, Duration::from_secs(240))["status"],
        "ready"
    );
    id
}

#[test]
fn a_private_video_plays_through_the_cdn_with_its_token_and_no_other_key_reaches_it() {
    if !available("nginx", "the signed CDN test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true);
    let keys = dir.path().join("keys");
    let rogue = key_pair(&dir.path().join("elsewhere"), "rogue");
    let (ann, _) = register(&server, "ann", "creator");
    let (bob, _) = register(&server, "bob", "creator");
    let private = ready(
        &server,
        &ann,
        "prog_640x360_h264_aac_8s.mp4",
        json!({"title": "ann's secret", "visibility": "private"}),
    );
    let public = ready(
        &server,
        &bob,
        "h264_1080p50_1s.mp4",
        json!({"title": "bob's", "visibility": "public"}),
    );
    let anon = Client::new();

    // Only the owner (or an admin) gets a token; the request is checked.
    assert_eq!(ask_token(&server, &bob, &private, &json!({})).status, 404);
    assert_eq!(ask_token(&server, &anon, &private, &json!({})).status, 401);
    for (body, field) in [
        (json!({"ttlSecs": 0}), "ttlSecs"),
        (json!({"ttlSecs": 86401}), "ttlSecs"),
        (json!({"ipPrefix": "ten/8"}), "ipPrefix"),
        (json!({"referrer": "ftp://x"}), "referrer"),
    ] {
        let r = ask_token(&server, &ann, &private, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["details"]["field"], field, "{body}");
    }
    let issued = ask_token(&server, &ann, &private, &json!({"ttlSecs": 900}));
    assert_eq!(issued.status, 200, "{}", issued.text());
    let issued = issued.json();
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(
        issued["masterUrl"],
        with_token(&format!("/hls/{private}/master.m3u8"), &token)
    );
    assert_eq!(
        issued["playerUrl"],
        with_token(&format!("/play/{private}"), &token)
    );
    let expires = issued["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires > e2e::rfc3339(now_secs() + 800).as_str());
    let admins = token_for(&server, &admin(&server, "root"), &private, &json!({}));
    let other_video = token_for(&server, &bob, &public, &json!({}));

    // Straight from the origin: no token, no video (as before); with it,
    // every file, the playlists naming every file with the token.
    for path in ladder_paths(&private) {
        assert_eq!(anon.get(&server.url(&path)).status, 404, "{path}");
        let r = anon.get(&server.url(&with_token(&path, &token)));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let cache = r.header("cache-control").unwrap();
        assert!(cache.starts_with("public, max-age="), "{path}: {cache}");
        let by_header = anon.request(
            "GET",
            &server.url(&path),
            &[("x-playback-token", &token)],
            None,
        );
        assert_eq!(by_header.status, 200, "{path}");
        assert_eq!(by_header.header("cache-control"), Some("private, no-store"));
    }
    let master = anon
        .get(&server.url(&with_token(&format!("/hls/{private}/master.m3u8"), &token)))
        .text();
    let media = anon
        .get(&server.url(&with_token(
            &format!("/hls/{private}/360p/index.m3u8"),
            &token,
        )))
        .text();
    for text in [&master, &media] {
        let uris: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .chain(
                text.split("URI=\"")
                    .skip(1)
                    .filter_map(|s| s.split('"').next()),
            )
            .collect();
        assert!(!uris.is_empty(), "{text}");
        for uri in uris {
            assert!(
                uri.ends_with(&format!("?token={token}")),
                "{uri} in\n{text}"
            );
        }
    }
    assert!(
        media.contains(&format!("#EXT-X-MAP:URI=\"init.mp4?token={token}\"")),
        "{media}"
    );
    let vtt = anon.get(&server.url(&with_token(
        &format!("/hls/{private}/storyboard.vtt"),
        &token,
    )));
    assert_eq!(vtt.status, 200);
    assert!(
        vtt.text()
            .contains(&format!("storyboard.jpg?token={token}#xywh=")),
        "{}",
        vtt.text()
    );
    let download =
        anon.get(&server.url(&with_token(&format!("/hls/{private}/download.mp4"), &token)));
    assert_eq!(download.status, 200);

    // Tokens the box never issued: a standard EdDSA JWT signed by openssl
    // with the box's key is good; so is one under the rotated-out kid.
    let now = now_secs();
    let claims = |sub: &str, exp: i64| json!({"sub": sub, "iat": now - 5, "exp": exp});
    let k1 = keys.join("k1.pem");
    let by_openssl = forge(&k1, "k1", &claims(&private, now + 600));
    let rotated = forge(&keys.join("k0.pem"), "k0", &claims(&private, now + 600));
    for good in [&by_openssl, &rotated] {
        let r = anon.get(&server.url(&with_token(&format!("/hls/{private}/360p/0.m4s"), good)));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Through the CDN: hls.js plays it from the player page's link.
    let cdn = Nginx::start(
        &dir.path().join("cdn"),
        server.base.trim_start_matches("http://"),
    );
    let via = |path: &str| format!("{}{path}", cdn.base);
    if e2e::player::available("the signed playback test") {
        let shots = e2e::appliance_bin().parent().unwrap().join("e2e-artifacts");
        std::fs::create_dir_all(&shots).unwrap();
        let shot = shots.join("signed-playback.png");
        let (code, report) = e2e::player::play(
            "hlsjs",
            &via(issued["playerUrl"].as_str().unwrap()),
            2,
            &[],
            &shot,
        );
        assert_eq!(code, Some(0), "{report:#}");
        assert_eq!(report["engine"], "hls.js", "{report:#}");
        assert!(report["currentTime"].as_f64().unwrap() >= 2.0, "{report:#}");
        assert_eq!(report["title"], "ann's secret", "{report:#}");
    }

    // The segments are in the CDN under the token's key: the same URL
    // with the same token is a HIT; without it, or with any other token,
    // nginx never serves that entry.
    let segment = format!("/hls/{private}/360p/0.m4s");
    anon.get(&via(&with_token(&segment, &token)));
    let again = anon.get(&via(&with_token(&segment, &token)));
    assert_eq!(
        (again.status, again.header("x-cache-status")),
        (200, Some("HIT"))
    );
    let bare = anon.get(&via(&segment));
    assert_eq!(bare.status, 404);
    assert_ne!(bare.header("x-cache-status"), Some("HIT"));
    let others = anon.get(&via(&with_token(&segment, &admins)));
    assert_eq!(
        (others.status, others.header("x-cache-status")),
        (200, Some("MISS"))
    );
    assert_refused(
        &anon.get(&via(&with_token(&segment, &other_video))),
        "another video's token",
    );
    let by_header = anon.request("GET", &via(&segment), &[("x-playback-token", &token)], None);
    assert_eq!(
        (by_header.status, by_header.header("x-cache-status")),
        (200, Some("BYPASS"))
    );
    std::thread::sleep(Duration::from_millis(300));
    let keys_of_private: Vec<String> = cdn
        .cached_keys()
        .into_iter()
        .filter(|k| k.contains(&private))
        .collect();
    assert!(
        keys_of_private
            .iter()
            .any(|k| k.contains("/360p/") && k.ends_with(&token)),
        "{keys_of_private:#?}"
    );
    for key in &keys_of_private {
        assert!(
            key.contains("?token="),
            "a key another viewer can hit: {key}"
        );
    }

    // Every refused token, at every URL, directly and through the CDN.
    let refused = [
        ("expired", forge(&k1, "k1", &claims(&private, now - 60))),
        ("payload changed", tamper(&token, 1)),
        ("signature changed", tamper(&token, 2)),
        (
            "another key",
            forge(&rogue, "k1", &claims(&private, now + 600)),
        ),
        (
            "unknown kid",
            forge(&k1, "k9", &claims(&private, now + 600)),
        ),
        ("another video", other_video.clone()),
    ];
    for (what, bad) in &refused {
        for path in ladder_paths(&private) {
            let url = with_token(&path, bad);
            assert_refused(&anon.get(&server.url(&url)), &format!("{what} at {path}"));
            assert_refused(
                &anon.get(&via(&url)),
                &format!("{what} at {path} via the CDN"),
            );
            let header = anon.request("GET", &via(&path), &[("x-playback-token", bad)], None);
            assert_refused(&header, &format!("{what} in the header at {path}"));
        }
    }
    // A public video ignores tokens, good or bad, and caches as before.
    let public_master = format!("/hls/{public}/master.m3u8");
    let r = anon.get(&server.url(&with_token(&public_master, "garbage")));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=1, must-revalidate")
    );
    assert!(!r.text().contains("token="));

    // A short token: cached only while it lives, then refused, never a
    // stale 200 from the CDN.
    let brief = token_for(&server, &ann, &private, &json!({"ttlSecs": 3}));
    let url = via(&with_token(&segment, &brief));
    let first = anon.get(&url);
    assert_eq!(first.status, 200);
    // At most what the token has left (3 s at issue, less by now).
    let cache = first.header("cache-control").unwrap().to_owned();
    let age: u64 = cache
        .strip_prefix("public, max-age=")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cache}"));
    assert!((1..=3).contains(&age), "{cache}");
    std::thread::sleep(Duration::from_secs(5));
    assert_refused(&anon.get(&url), "an expired token once cached");

    // Restricted tokens are checked by the origin on every request, so no
    // shared cache may keep what they fetch.
    let here = token_for(&server, &ann, &private, &json!({"ipPrefix": "127.0.0.0/8"}));
    for _ in 0..2 {
        let r = anon.get(&via(&with_token(&segment, &here)));
        assert_eq!((r.status, r.header("x-cache-status")), (200, Some("MISS")));
        assert_eq!(r.header("cache-control"), Some("private, no-store"));
    }
    let there = token_for(&server, &ann, &private, &json!({"ipPrefix": "10.0.0.0/8"}));
    assert_refused(
        &anon.get(&via(&with_token(&segment, &there))),
        "another network",
    );
    let page = token_for(
        &server,
        &ann,
        &private,
        &json!({"referrer": "https://site.example"}),
    );
    let from = |referer: &str| {
        anon.request(
            "GET",
            &via(&with_token(&segment, &page)),
            &[("referer", referer)],
            None,
        )
    };
    assert_eq!(from("https://site.example/watch").status, 200);
    assert_refused(&from("https://elsewhere.example/"), "another page");

    // The player page with a bad token says so, as a page.
    let r = anon.get(&via(&with_token(
        &format!("/play/{private}"),
        &tamper(&token, 2),
    )));
    assert_eq!(r.status, 403);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(!r.text().contains("ann's secret"));
}

/// The default: the CDN is not known to key by the token, so nothing a
/// token fetches is ever stored by it.
#[test]
fn by_default_no_signed_response_is_cached_at_all() {
    if !available("nginx", "the signed CDN test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false);
    let (ann, _) = register(&server, "ann", "creator");
    let private = ready(
        &server,
        &ann,
        "h264_1080p50_1s.mp4",
        json!({"title": "private", "visibility": "private"}),
    );
    let token = token_for(&server, &ann, &private, &json!({}));
    let cdn = Nginx::start(
        &dir.path().join("cdn"),
        server.base.trim_start_matches("http://"),
    );
    let anon = Client::new();
    for path in ladder_paths(&private) {
        for _ in 0..2 {
            let r = anon.get(&format!("{}{}", cdn.base, with_token(&path, &token)));
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(
                r.header("cache-control"),
                Some("private, no-store"),
                "{path}"
            );
            assert_eq!(r.header("x-cache-status"), Some("MISS"), "{path}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let stored: Vec<String> = cdn
        .cached_keys()
        .into_iter()
        .filter(|k| k.contains(&private))
        .collect();
    assert!(stored.is_empty(), "the CDN stored {stored:?}");
}
