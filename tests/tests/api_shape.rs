//! One API shape, through the real server: every list under `/api/v1` is
//! `{items, nextCursor}` (feeds with their own members beside them), paged
//! by its cursor to the same items as one page, `nextCursor` `null` on the
//! last page; and every refused parameter, path segment or JSON member is
//! the spec's `VALIDATION_ERROR` naming it (`details.field`, and a message
//! that starts with it), never the framework's text.

use std::collections::HashSet;

use e2e::server::{admin, publish, register, tiny_clip, Client, Resp, Server};
use serde_json::{json, Value};

/// Every page of `path` (which has a query string), `limit` at a time:
/// each must be a list, and the last one says so.
fn pages(server: &Server, c: &Client, path: &str, limit: u32) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut url = format!("{path}&limit={limit}");
    for _ in 0..50 {
        let r = c.get(&server.url(&url));
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let page = r.json();
        let items = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{url} is not a list: {page}"));
        assert!(items.len() <= limit as usize, "{url}: {page}");
        out.extend(items.iter().cloned());
        if let Some(next) = page["nextCursor"].as_str() {
            url = format!("{path}&limit={limit}&cursor={next}");
        } else {
            assert!(
                page.get("nextCursor").is_some_and(Value::is_null),
                "{url}: nextCursor is a string, or null at the end: {page}"
            );
            return out;
        }
    }
    panic!("{path}: the pages never end")
}

/// `path` one item at a time gives what one page of 50 gives, in order,
/// with no repeats; returns the items.
fn same_paged(server: &Server, c: &Client, path: &str) -> Vec<Value> {
    let whole = pages(server, c, path, 50);
    let paged = pages(server, c, path, 1);
    assert_eq!(paged, whole, "{path}: paged one by one vs one page");
    whole
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|v| {
            v[key]
                .as_str()
                .map_or_else(|| v[key].to_string(), str::to_owned)
        })
        .collect()
}

/// The field a refusal names; it must be the spec's error.
fn field_of(what: &str, r: &Resp) -> String {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{what}: {e}");
    let field = e["error"]["details"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no field named: {e}"))
        .to_owned();
    // "field: what" (or, for older rules, a sentence naming it).
    let message = e["error"]["message"].as_str().unwrap();
    let leaf = field.rsplit('.').next().unwrap_or(&field).to_lowercase();
    assert!(
        message.starts_with(&format!("{field}: ")) || message.to_lowercase().contains(&leaf),
        "{what}: {e}"
    );
    assert!(!message.contains("Failed to"), "{what}: {e}");
    field
}

#[test]
fn every_list_is_items_and_next_cursor_and_every_refusal_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let clip = tiny_clip(dir.path());
    let (ann, ann_id) = register(&server, "ann", "creator");
    let (vic, vic_id) = register(&server, "vic", "viewer");
    let (zoe, _) = register(&server, "zoe", "viewer");
    let root = admin(&server, "root");
    let videos: Vec<String> = ["harbour at dawn", "harbour at dusk", "harbour at noon"]
        .into_iter()
        .map(|t| publish(&server, &ann, &clip, t, &["harbour"], ""))
        .collect();
    let v = &videos[0];
    for fan in [&vic, &zoe] {
        let r = fan.post_json(
            &server.url(&format!("/api/v1/users/{ann_id}/follow")),
            &json!({}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut comments = Vec::new();
    for i in 0..3 {
        let r = vic.post_json(
            &server.url(&format!("/api/v1/videos/{v}/comments")),
            &json!({"body": format!("comment {i}")}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        comments.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    for i in 0..3 {
        let r = ann.post_json(
            &server.url(&format!("/api/v1/videos/{v}/comments")),
            &json!({"body": format!("reply {i}"), "parentId": comments[0]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let anon = Client::new();
    // Search ranks by embeddings too: once all are indexed, its order
    // holds still between pages.
    let start = std::time::Instant::now();
    loop {
        let metrics = anon.get(&server.url("/metrics")).text();
        let indexed: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("appliance_feed_index_videos "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if indexed >= videos.len() as f64 {
            break;
        }
        assert!(start.elapsed().as_secs() < 90, "videos not indexed in 90 s");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    // Lists of known length, paged one by one to the same items.
    let mine = same_paged(&server, &anon, &format!("/api/v1/users/{ann_id}/videos?"));
    let mut want = videos.clone();
    want.reverse();
    assert_eq!(ids(&mine, "id"), want, "a creator's videos, newest first");
    let tagged = same_paged(&server, &anon, "/api/v1/hashtags/harbour/videos?");
    assert_eq!(tagged.len(), 3);
    let found = same_paged(&server, &anon, "/api/v1/search/videos?q=harbour");
    for id in &videos {
        assert!(ids(&found, "id").contains(id), "search missed {id}");
    }
    let top = same_paged(&server, &anon, &format!("/api/v1/videos/{v}/comments?"));
    assert_eq!(ids(&top, "id").len(), 3);
    let replies = same_paged(
        &server,
        &anon,
        &format!("/api/v1/comments/{}/replies?", comments[0]),
    );
    assert_eq!(replies.len(), 3);
    let fans = same_paged(
        &server,
        &anon,
        &format!("/api/v1/users/{ann_id}/followers?"),
    );
    assert_eq!(fans.len(), 2);
    let follows = same_paged(
        &server,
        &anon,
        &format!("/api/v1/users/{vic_id}/following?"),
    );
    assert_eq!(ids(&follows, "userId"), std::slice::from_ref(&ann_id));
    let jobs = same_paged(&server, &root, "/api/v1/ops/jobs?");
    assert!(jobs.len() >= 3, "a job per video: {jobs:?}");
    assert!(same_paged(&server, &ann, "/api/v1/live/channels?").is_empty());

    // Feeds: lists with `source` and `prefetchIds` beside them; paged from
    // a session, so each page is new to the viewer.
    for (who, path) in [
        (&vic, "/api/v1/feed/for-you?"),
        (&vic, "/api/v1/feed/following?"),
        (&anon, "/api/v1/feed/trending?"),
    ] {
        let page = who.get(&server.url(&format!("{path}limit=1"))).json();
        for member in ["items", "nextCursor", "source", "prefetchIds", "variant"] {
            assert!(page.get(member).is_some(), "{path}: no {member} in {page}");
        }
        assert!(page.get("videos").is_none(), "{path}: {page}");
        let shown = ids(&pages(&server, who, path, 1), "id");
        let distinct: HashSet<&String> = shown.iter().collect();
        assert_eq!(distinct.len(), shown.len(), "{path} repeated: {shown:?}");
    }
    let following = ids(&pages(&server, &vic, "/api/v1/feed/following?", 1), "id");
    assert_eq!(
        following, want,
        "the followed creator's videos, newest first"
    );

    // A bounded top list: one page, `nextCursor` null.
    let r = anon.get(&server.url("/api/v1/hashtags/trending?limit=5"));
    assert_eq!(r.status, 200, "{}", r.text());
    let tags = r.json();
    assert!(
        tags["items"].is_array() && tags["nextCursor"].is_null(),
        "{tags}"
    );

    // Refusals name what they refuse: query parameters (missing, unknown,
    // wrong type, out of range, a cursor never issued) ...
    for (who, path, field) in [
        (&anon, "/api/v1/search/videos", "q"),
        (&anon, "/api/v1/search/videos?q=%20", "q"),
        (&anon, "/api/v1/search/videos?q=a&limit=ten", "limit"),
        (&anon, "/api/v1/search/videos?q=a&limit=51", "limit"),
        (
            &anon,
            "/api/v1/search/videos?q=a&limit=99999999999",
            "limit",
        ),
        (&anon, "/api/v1/search/videos?q=a&cursor=o5000", "cursor"),
        (&anon, "/api/v1/search/videos?q=a&sort=new", "sort"),
        (&anon, "/api/v1/feed/trending?limit=0", "limit"),
        (&vic, "/api/v1/feed/for-you?cursor=nope", "cursor"),
        (&anon, "/api/v1/hashtags/trending?limit=101", "limit"),
        (&anon, "/api/v1/hashtags/harbour/videos?cursor=1", "cursor"),
        (&anon, "/api/v1/hashtags/no%20tag/videos", "tag"),
        (
            &anon,
            &format!("/api/v1/users/{ann_id}/videos?cursor=zz"),
            "cursor",
        ),
        (
            &anon,
            &format!("/api/v1/users/{ann_id}/followers?cursor=zz"),
            "cursor",
        ),
        (
            &anon,
            &format!("/api/v1/videos/{v}/comments?limit=-1"),
            "limit",
        ),
        (
            &anon,
            &format!("/api/v1/videos/{v}/comments?cursor="),
            "cursor",
        ),
        (&root, "/api/v1/ops/jobs?limit=1001", "limit"),
        (&root, "/api/v1/ops/jobs?cursor=x", "cursor"),
        (&ann, "/api/v1/live/channels?limit=0", "limit"),
        (
            &ann,
            &format!("/api/v1/analytics/videos/{v}?period=1y"),
            "period",
        ),
        // ... and path segments.
        (&anon, "/api/v1/videos/%FF", "id"),
    ] {
        assert_eq!(field_of(path, &who.get(&server.url(path))), field, "{path}");
    }
    let r = anon.get(&server.url("/api/v1/search/videos"));
    assert_eq!(r.json()["error"]["message"], "q: required");
    let r = ann.request(
        "PUT",
        &server.url("/api/v1/uploads/abc/chunks/first"),
        &[],
        Some(b"1"),
    );
    assert_eq!(field_of("chunk number", &r), "n");

    // JSON bodies: not JSON, a member missing, unknown or of the wrong
    // type, named by its path.
    let init = server.url("/api/v1/uploads/init");
    let batch = server.url("/api/v1/engagement/watch-batch");
    let ts = "2099-01-01T00:00:00Z";
    for (who, url, body, field) in [
        (
            &ann,
            &init,
            json!({"filename": "a.mp4", "fileSize": "big", "mimeType": "video/mp4"}),
            "fileSize",
        ),
        (
            &ann,
            &init,
            json!({"filename": "a.mp4", "fileSize": 10}),
            "mimeType",
        ),
        (
            &ann,
            &init,
            json!({"filename": "a.mp4", "fileSize": 10, "mimeType": "video/mp4", "x": 1}),
            "x",
        ),
        (&ann, &init, json!(["a.mp4"]), "body"),
        (&vic, &batch, json!({"events": []}), "events"),
        (
            &vic,
            &batch,
            json!({"events": [{"eventId": "e", "watchMs": 1, "durationMs": 1, "source": "fyp", "timestamp": ts}]}),
            "events[0].videoId",
        ),
        (
            &vic,
            &batch,
            json!({"events": [{"eventId": "e", "videoId": v, "watchMs": 1, "durationMs": 1, "source": "tv", "timestamp": ts}]}),
            "events[0].source",
        ),
        (
            &vic,
            &batch,
            json!({"events": [{"eventId": "e", "videoId": v, "watchMs": 1, "durationMs": 0, "source": "fyp", "timestamp": ts}]}),
            "events[0].durationMs",
        ),
        (
            &vic,
            &server.url("/api/v1/users/me/interests"),
            json!({"interests": ["a", "b"]}),
            "interests",
        ),
        (
            &vic,
            &server.url(&format!("/api/v1/videos/{v}/share")),
            json!({"channel": "pigeon"}),
            "channel",
        ),
        (
            &vic,
            &server.url(&format!("/api/v1/videos/{v}/comments")),
            json!({"body": 7}),
            "body",
        ),
        (
            &anon,
            &server.url("/api/v1/auth/register"),
            json!({"username": "eve", "password": "short"}),
            "password",
        ),
        (
            &anon,
            &server.url("/api/v1/auth/login"),
            json!({"username": 5, "password": "x"}),
            "username",
        ),
    ] {
        let what = format!("{url} {body}");
        assert_eq!(field_of(&what, &who.post_json(url, &body)), field, "{what}");
    }
    let r = ann.request(
        "POST",
        &init,
        &[("content-type", "application/json")],
        Some(b"{\"filename\": "),
    );
    assert_eq!(field_of("a cut-off body", &r), "body");
    let r = ann.post_json(&init, &json!({"filename": "a.mp4", "fileSize": 10}));
    assert_eq!(r.json()["error"]["message"], "mimeType: required");
    assert!(
        !server.log().contains("internal error"),
        "a 5xx:\n{}",
        server.log()
    );
}
