//! Playback tokens: issued and checked with real keys, made for each test
//! by `openssl genpkey` (never committed).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .status()
        .expect("openssl is installed (Debian's)");
    assert!(status.success(), "openssl {args:?}");
}

/// A fresh key pair (`ed25519` or `rsa`) as PEM files in `dir`.
fn key_pair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let out = private.to_str().unwrap();
    match kind {
        "rsa" | "rsa1024" => {
            let bits = if kind == "rsa" { "2048" } else { "1024" };
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                out,
            ])
        }
        _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", out]),
    }
    openssl(&[
        "pkey",
        "-in",
        out,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}

fn config(kid: &str, pair: &(PathBuf, PathBuf), accepted: &[(&str, &Path)]) -> settings::Playback {
    settings::Playback {
        kid: kid.into(),
        private_key: Some(pair.0.clone()),
        public_key: Some(pair.1.clone()),
        accepted: accepted
            .iter()
            .map(|(k, p)| (k.to_string(), p.to_path_buf()))
            .collect(),
        ..Default::default()
    }
}

fn tokens(c: &settings::Playback) -> Tokens {
    let t = Tokens::from_config(c);
    t.usable().unwrap();
    t
}

fn now() -> u64 {
    unix_secs(SystemTime::now())
}

fn issue(t: &Tokens, video: &str, req: PlaybackTokenRequest) -> String {
    t.issue_at(video, req, now()).unwrap().0
}

fn from(peer: &str) -> PlaybackClient {
    PlaybackClient {
        peer: Some(peer.parse().unwrap()),
        ..Default::default()
    }
}

fn refused(t: &Tokens, token: &str, video: &str, client: &PlaybackClient) -> Refusal {
    t.verify(token, video, client).unwrap_err()
}

#[test]
fn a_token_round_trips_with_an_ed25519_or_an_rsa_key() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, alg) in [("ed25519", "EdDSA"), ("rsa", "RS256")] {
        let t = tokens(&config("k1", &key_pair(dir.path(), kind, kind), &[]));
        let before = now();
        let (token, exp) = t
            .issue_at(
                "vid-1",
                PlaybackTokenRequest {
                    ttl_secs: Some(120),
                    ..Default::default()
                },
                before,
            )
            .unwrap();
        assert_eq!(exp, before + 120);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(format!("{:?}", header.alg), alg);
        let grant = t
            .verify(&token, "vid-1", &PlaybackClient::default())
            .unwrap();
        assert_eq!(grant.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        assert!(
            !grant.shareable,
            "private, no-store unless the CDN keys by token"
        );
        assert_eq!(
            refused(&t, &token, "vid-2", &PlaybackClient::default()),
            Refusal::OtherVideo
        );
    }
}

#[test]
fn expired_tampered_and_foreign_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = config("k1", &key_pair(dir.path(), "a", "ed25519"), &[]);
    let t = tokens(&ours);
    let anyone = PlaybackClient::default();

    let (old, _) = t
        .issue_at("v", PlaybackTokenRequest::default(), now() - 7200)
        .unwrap();
    assert_eq!(refused(&t, &old, "v", &anyone), Refusal::Expired);

    let good = issue(&t, "v", PlaybackTokenRequest::default());
    let flip = |token: &str, at: usize| {
        let mut b = token.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let payload_at = good.find('.').unwrap() + 3;
    let signature_at = good.rfind('.').unwrap() + 3;
    for tampered in [flip(&good, payload_at), flip(&good, signature_at)] {
        let why = refused(&t, &tampered, "v", &anyone);
        assert!(
            matches!(why, Refusal::Signature | Refusal::Malformed),
            "{why:?}"
        );
    }
    assert_eq!(refused(&t, "not a token", "v", &anyone), Refusal::Malformed);

    // Another key pair under our kid: the signature fails; under a kid we
    // do not know: refused before any signature check.
    let other = key_pair(dir.path(), "b", "ed25519");
    let forged = tokens(&config("k1", &other, &[]));
    let token = issue(&forged, "v", PlaybackTokenRequest::default());
    assert_eq!(refused(&t, &token, "v", &anyone), Refusal::Signature);
    let stranger = tokens(&config("k9", &other, &[]));
    let token = issue(&stranger, "v", PlaybackTokenRequest::default());
    assert_eq!(refused(&t, &token, "v", &anyone), Refusal::UnknownKey);

    // An RSA key cannot pass for the Ed25519 one (no algorithm confusion).
    let rsa = tokens(&config("k1", &key_pair(dir.path(), "c", "rsa"), &[]));
    let token = issue(&rsa, "v", PlaybackTokenRequest::default());
    assert_eq!(refused(&t, &token, "v", &anyone), Refusal::Signature);

    let off = Tokens::from_config(&settings::Playback::default());
    assert_eq!(refused(&off, &good, "v", &anyone), Refusal::Off);
    let e = off
        .issue_at("v", PlaybackTokenRequest::default(), now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    let e = Refusal::Expired.into_error();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert_eq!(e.details.unwrap()["reason"], "expired");
}

#[test]
fn rotation_keeps_the_old_kid_valid_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let old_pair = key_pair(dir.path(), "old", "ed25519");
    let new_pair = key_pair(dir.path(), "new", "ed25519");
    let before = tokens(&config("2024", &old_pair, &[]));
    let old_token = issue(&before, "v", PlaybackTokenRequest::default());

    let rotated = tokens(&config("2025", &new_pair, &[("2024", &old_pair.1)]));
    let new_token = issue(&rotated, "v", PlaybackTokenRequest::default());
    let anyone = PlaybackClient::default();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("2025")
    );
    rotated.verify(&old_token, "v", &anyone).unwrap();
    rotated.verify(&new_token, "v", &anyone).unwrap();
    assert_eq!(
        refused(&before, &new_token, "v", &anyone),
        Refusal::UnknownKey
    );

    let retired = tokens(&config("2025", &new_pair, &[]));
    assert_eq!(
        refused(&retired, &old_token, "v", &anyone),
        Refusal::UnknownKey
    );
    retired.verify(&new_token, "v", &anyone).unwrap();
}

#[test]
fn an_ip_prefix_admits_its_network_only() {
    let dir = tempfile::tempdir().unwrap();
    let pair = key_pair(dir.path(), "a", "ed25519");
    let t = tokens(&config("k", &pair, &[]));
    let token = issue(
        &t,
        "v",
        PlaybackTokenRequest {
            ip_prefix: Some("10.1.2.3/16".into()),
            ..Default::default()
        },
    );
    t.verify(&token, "v", &from("10.1.200.7")).unwrap();
    // A dual-stack listener sees IPv4 clients as mapped IPv6 addresses.
    t.verify(&token, "v", &from("::ffff:10.1.0.1")).unwrap();
    assert_eq!(
        refused(&t, &token, "v", &from("10.2.0.1")),
        Refusal::Address
    );
    assert_eq!(
        refused(&t, &token, "v", &from("2001:db8::1")),
        Refusal::Address
    );
    assert_eq!(
        refused(&t, &token, "v", &PlaybackClient::default()),
        Refusal::Address,
        "no address, no admission"
    );
    // X-Forwarded-For is ignored unless trusted, and then its last entry
    // counts (earlier ones are the client's to invent).
    let forwarded = PlaybackClient {
        peer: Some("127.0.0.1".parse().unwrap()),
        forwarded_for: Some("10.1.9.9, 192.0.2.1, 10.1.5.5".into()),
        referer: None,
    };
    assert_eq!(refused(&t, &token, "v", &forwarded), Refusal::Address);
    let mut trusting = config("k", &pair, &[]);
    trusting.trust_forwarded_for = true;
    let trusting = tokens(&trusting);
    trusting.verify(&token, "v", &forwarded).unwrap();
    let spoofed = PlaybackClient {
        forwarded_for: Some("10.1.5.5, 192.0.2.1".into()),
        ..forwarded
    };
    assert_eq!(refused(&trusting, &token, "v", &spoofed), Refusal::Address);

    let one = issue(
        &t,
        "v",
        PlaybackTokenRequest {
            ip_prefix: Some("2001:db8::7".into()),
            ..Default::default()
        },
    );
    t.verify(&one, "v", &from("2001:db8::7")).unwrap();
    assert_eq!(
        refused(&t, &one, "v", &from("2001:db8::8")),
        Refusal::Address
    );
}

#[test]
fn a_referrer_admits_its_pages_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(&config("k", &key_pair(dir.path(), "a", "ed25519"), &[]));
    let token = issue(
        &t,
        "v",
        PlaybackTokenRequest {
            referrer: Some("https://site.example".into()),
            ..Default::default()
        },
    );
    let with = |r: Option<&str>| PlaybackClient {
        referer: r.map(str::to_owned),
        ..Default::default()
    };
    for ok in [
        "https://site.example",
        "https://site.example/",
        "https://site.example/watch?v=1",
    ] {
        t.verify(&token, "v", &with(Some(ok))).unwrap();
    }
    for bad in [
        Some("https://site.example.evil.net/"),
        Some("http://site.example/"),
        Some("https://other.example/?https://site.example"),
        None,
    ] {
        assert_eq!(
            refused(&t, &token, "v", &with(bad)),
            Refusal::Referrer,
            "{bad:?}"
        );
    }
    assert!(referrer_allows(
        "https://a.example/videos/",
        "https://a.example/videos/x"
    ));
    assert!(!referrer_allows(
        "https://a.example/videos",
        "https://a.example/videosx"
    ));
}

#[test]
fn requests_are_held_to_the_configured_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("k", &key_pair(dir.path(), "a", "ed25519"), &[]);
    c.max_ttl_secs = 600;
    c.default_ttl_secs = 60;
    let t = tokens(&c);
    let at = now();
    assert_eq!(
        t.issue_at("v", PlaybackTokenRequest::default(), at)
            .unwrap()
            .1,
        at + 60
    );
    let field = |req: PlaybackTokenRequest| {
        t.issue_at("v", req, at)
            .unwrap_err()
            .field()
            .map(str::to_owned)
    };
    for ttl in [0, 601] {
        let req = PlaybackTokenRequest {
            ttl_secs: Some(ttl),
            ..Default::default()
        };
        assert_eq!(field(req).as_deref(), Some("ttlSecs"), "{ttl}");
    }
    for referrer in ["ftp://x", "https://", "https://a b", "site.example"] {
        let req = PlaybackTokenRequest {
            referrer: Some(referrer.into()),
            ..Default::default()
        };
        assert_eq!(field(req).as_deref(), Some("referrer"), "{referrer}");
    }
    for prefix in ["300.1.1.1/8", "10.0.0.0/33", "any"] {
        let req = PlaybackTokenRequest {
            ip_prefix: Some(prefix.into()),
            ..Default::default()
        };
        assert_eq!(field(req).as_deref(), Some("ipPrefix"), "{prefix}");
    }
    assert_eq!(
        checked_prefix("10.1.2.3/16").unwrap().to_string(),
        "10.1.0.0/16"
    );
    assert_eq!(
        checked_prefix("10.1.2.3").unwrap().to_string(),
        "10.1.2.3/32"
    );
}

#[test]
fn only_unrestricted_tokens_are_shareable_and_only_when_the_cdn_keys_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("k", &key_pair(dir.path(), "a", "ed25519"), &[]);
    c.cdn_keys_by_token = true;
    let t = tokens(&c);
    let plain = issue(&t, "v", PlaybackTokenRequest::default());
    assert!(t.verify(&plain, "v", &from("10.0.0.1")).unwrap().shareable);
    let restricted = issue(
        &t,
        "v",
        PlaybackTokenRequest {
            ip_prefix: Some("10.0.0.0/8".into()),
            ..Default::default()
        },
    );
    assert!(
        !t.verify(&restricted, "v", &from("10.0.0.1"))
            .unwrap()
            .shareable
    );
}

#[test]
fn unusable_keys_stop_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_pair(dir.path(), "a", "ed25519");
    let b = key_pair(dir.path(), "b", "ed25519");
    let mismatched = config("k", &(a.0.clone(), b.1.clone()), &[]);
    let missing = config("k", &(dir.path().join("none.pem"), a.1.clone()), &[]);
    let swapped = config("k", &(a.1.clone(), a.0.clone()), &[]);
    let bad_accepted = config("k", &a, &[("old", &a.0)]);
    let short = config("k", &key_pair(dir.path(), "short", "rsa1024"), &[]);
    for (what, c) in [
        ("not one key pair", mismatched),
        ("none.pem", missing),
        ("not a PEM", swapped),
        ("accepted.old", bad_accepted),
        ("at least 2048 bits", short),
    ] {
        let e = Tokens::from_config(&c).usable().unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
    Tokens::from_config(&settings::Playback::default())
        .usable()
        .unwrap();
}
