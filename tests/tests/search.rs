//! Search over users, sounds and hashtags against a real server: prefix
//! search ranked by followers, case-insensitive; paging by cursor without
//! repeats; a new user and a new follow searchable within seconds (the
//! background sweep, no restart); hashtags counted from published videos
//! (two tiny generated clips); and every bad parameter a 400 naming it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use e2e::server::{publish, register, tiny_clip, upload_small, wait_final, Client, Resp, Server};

fn search(server: &Server, kind: &str, query: &str) -> Resp {
    Client::new().get(&server.url(&format!("/api/v1/search/{kind}?{query}")))
}

/// Polls `kind`'s search for `query` until `done` holds of the page's
/// items (within 15 s; the sweep runs every second); the last items.
fn until(server: &Server, kind: &str, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = search(server, kind, query);
        assert_eq!(r.status, 200, "{}", r.text());
        let items = r.json()["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        if Instant::now() > deadline {
            panic!(
                "search/{kind}?{query} never got there; last: {items:?}\nserver log:\n{}",
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn names(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

fn follow(server: &Server, fan: &Client, user: &str) {
    let r = fan.post_json(
        &server.url(&format!("/api/v1/users/{user}/follow")),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn search_finds_users_and_hashtags_ranked_paged_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let clip = tiny_clip(dir.path());

    // Videos first (they take the longest): two public ones with tags.
    let (creator, _) = register(&server, "clipmaker", "creator");
    let v1 = upload_small(
        &server,
        &creator,
        &clip,
        &json!({"title": "one", "description": "", "hashtags": ["SrchCats", "srchcatnip"], "visibility": "public"}),
    );
    let v2 = publish(&server, &creator, &clip, "two", &["srchcats"], "");
    assert_eq!(
        wait_final(&server, &creator, &v1, Duration::from_secs(120))["status"],
        "ready"
    );
    let _ = v2;

    // Users, with followers 3, 2, 1, 0, 0 by name.
    let mut ids = Vec::new();
    for name in ["Srch_Ann", "srch_bo", "srch_cy", "srch_di", "srch_ed"] {
        ids.push(register(&server, name, "viewer").1);
    }
    let fans: Vec<Client> = (0..3)
        .map(|i| register(&server, &format!("fan{i}"), "viewer").0)
        .collect();
    for (user, n) in [(&ids[1], 3), (&ids[2], 2), (&ids[0], 1)] {
        for fan in &fans[..n] {
            follow(&server, fan, user);
        }
    }
    let want = ["srch_bo", "srch_cy", "Srch_Ann", "srch_di", "srch_ed"];
    let items = until(&server, "users", "q=srch&limit=50", |items| {
        names(items, "username") == want
    });
    assert_eq!(items[0]["followers"], 3);
    assert_eq!(items[0]["id"], ids[1].as_str());
    assert_eq!(items[4]["followers"], 0);
    // Case-insensitive, and a longer prefix narrows.
    let r = search(&server, "users", "q=SRCH_B");
    assert_eq!(
        names(r.json()["items"].as_array().unwrap(), "username"),
        ["srch_bo"]
    );
    assert!(search(&server, "users", "q=nobodyhere").json()["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Pages of 2 follow the cursor: the same five, in order, none twice.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut q = "q=srch&limit=2".to_owned();
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let v = search(&server, "users", &q).json();
        paged.extend(names(v["items"].as_array().unwrap(), "username"));
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, want);
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 5);

    // A new user, and a new follow, show up within seconds.
    let (_, new_id) = register(&server, "srch_fresh", "viewer");
    follow(&server, &fans[0], &new_id);
    follow(&server, &fans[1], &new_id);
    let items = until(&server, "users", "q=srch_f", |items| {
        items.len() == 1 && items[0]["followers"] == 2
    });
    assert_eq!(items[0]["id"], new_id.as_str());

    // Hashtags: counted from the published videos, by prefix, `#` and
    // case ignored; the most used first (nothing trends on a fresh box).
    let items = until(&server, "hashtags", "q=%23SrchCat", |items| {
        items.len() == 2 && items[0]["videoCount"] == 2
    });
    assert_eq!(names(&items, "tag"), ["srchcats", "srchcatnip"]);
    assert_eq!(items[1]["videoCount"], 1);
    assert!(items[0]["trendingScore"].is_number());

    // Sounds answer the same shape (their titles are the sounds
    // library's business).
    let v = search(&server, "sounds", "q=zzqqxx").json();
    assert!(v["items"].as_array().unwrap().is_empty());
    assert!(v["nextCursor"].is_null());

    // Bad parameters: a 400 naming each.
    for (kind, query, field) in [
        ("users", "", "q"),
        ("users", "q=%20%20", "q"),
        ("sounds", "q=", "q"),
        ("hashtags", "q=a&limit=0", "limit"),
        ("users", "q=a&limit=51", "limit"),
        ("users", "q=a&cursor=nonsense", "cursor"),
        ("users", "q=a&bogus=1", "bogus"),
    ] {
        let r = search(&server, kind, query);
        assert_eq!(r.status, 400, "{kind}?{query}: {}", r.text());
        assert_eq!(r.error_code(), "VALIDATION_ERROR");
        assert_eq!(
            r.json()["error"]["details"]["field"],
            field,
            "{kind}?{query}: {}",
            r.text()
        );
    }
    // A cursor is for the kind that made it.
    let c = search(&server, "users", "q=srch&limit=1").json()["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = search(&server, "hashtags", &format!("q=srch&cursor={c}"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["details"]["field"], "cursor");
}
