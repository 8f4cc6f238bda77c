//! The feed through the real server: videos become ready, get embedded and
//! indexed; interests, watches, follows and new videos shape what a viewer
//! sees; failures degrade to trending with a 200; state survives a restart.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::server::{publish, register, tiny_clip as clip, Client, Server};
use serde_json::{json, Value};

fn feed(server: &Server, c: &Client, path: &str) -> Value {
    let r = c.get(&server.url(path));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// Video ids of a list page (`items`; feeds are lists too).
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {page}"))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    start.elapsed()
}

#[test]
fn feed_learns_from_interests_watches_follows_and_new_videos() {
    let dir = tempfile::tempdir().unwrap();
    let file = clip(dir.path());
    let mut server = Server::start(dir.path(), "");
    let (creator, creator_id) = register(&server, "chef", "creator");
    let cooking = [
        publish(
            &server,
            &creator,
            &file,
            "Creamy pasta carbonara recipe",
            &["cooking", "recipe"],
            "",
        ),
        publish(
            &server,
            &creator,
            &file,
            "Homemade ramen noodles from scratch",
            &["cooking", "foodie"],
            "",
        ),
    ];
    let football = [
        publish(
            &server,
            &creator,
            &file,
            "Last minute free kick goal",
            &["football", "goals"],
            "",
        ),
        publish(
            &server,
            &creator,
            &file,
            "Penalty shootout in the derby",
            &["football", "soccer"],
            "",
        ),
    ];
    let travel = [
        publish(
            &server,
            &creator,
            &file,
            "Walking the streets of Tokyo at night",
            &["travel", "wanderlust"],
            "",
        ),
        publish(
            &server,
            &creator,
            &file,
            "Waterfalls of Iceland road trip",
            &["travel", "backpacking"],
            "",
        ),
    ];
    let anon = Client::new();
    // Embedding follows publication: semantic search finds a video by
    // meaning, not by its words.
    wait_until("videos embedded", Duration::from_secs(60), || {
        let r = anon.get(&server.url("/api/v1/search/videos?q=italian%20dinner"));
        r.status == 200 && ids(&r.json()).first() == Some(&cooking[0])
    });
    let r = anon.get(&server.url("/api/v1/search/videos?q=soccer%20goal&limit=2"));
    let hits = ids(&r.json());
    assert!(hits.iter().all(|h| football.contains(h)), "{hits:?}");
    // Search results page with a cursor like every list: page by page,
    // the same results as in one page.
    let everything = "/api/v1/search/videos?q=road%20trip%20goal&limit=50";
    wait_until("every video searchable", Duration::from_secs(60), || {
        let all = ids(&feed(&server, &anon, everything));
        travel.iter().chain(&football).all(|v| all.contains(v))
    });
    let whole = feed(&server, &anon, everything);
    assert!(whole["nextCursor"].is_null(), "{whole}");
    let mut found: Vec<String> = Vec::new();
    let mut path = "/api/v1/search/videos?q=road%20trip%20goal&limit=1".to_owned();
    loop {
        let page = feed(&server, &anon, &path);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
        found.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(c) => {
                path = format!("/api/v1/search/videos?q=road%20trip%20goal&limit=1&cursor={c}")
            }
            None => {
                assert!(
                    page["nextCursor"].is_null(),
                    "the last page says so: {page}"
                );
                break;
            }
        }
        assert!(found.len() < 20, "search pages never end: {found:?}");
    }
    assert_eq!(found, ids(&whole), "paged search differs from one page");
    // Every refused parameter is the spec's error, naming it.
    for (path, field) in [
        ("/api/v1/search/videos", "q"),
        ("/api/v1/search/videos?q=", "q"),
        ("/api/v1/search/videos?q=goal&limit=many", "limit"),
        ("/api/v1/search/videos?q=goal&limit=51", "limit"),
        ("/api/v1/search/videos?q=goal&cursor=zz", "cursor"),
        ("/api/v1/search/videos?q=goal&order=new", "order"),
        ("/api/v1/hashtags/travel/videos?cursor=garbage", "cursor"),
        ("/api/v1/hashtags/trending?limit=0", "limit"),
    ] {
        let r = anon.get(&server.url(path));
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{path}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{path}: {e}");
        assert!(!message.contains("Failed to deserialize"), "{path}: {e}");
    }
    let r = anon.get(&server.url("/api/v1/search/videos"));
    assert_eq!(r.json()["error"]["message"], "q: required");
    let tagged = feed(&server, &anon, "/api/v1/hashtags/%23Travel/videos?limit=1");
    assert_eq!(tagged["items"].as_array().unwrap().len(), 1);
    let next = tagged["nextCursor"].as_str().unwrap();
    let rest = feed(
        &server,
        &anon,
        &format!("/api/v1/hashtags/travel/videos?cursor={next}"),
    );
    let mut both: Vec<String> = tagged["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    both.sort();
    let mut want = travel.to_vec();
    want.sort();
    assert_eq!(both, want);

    // A new viewer with interests starts on topic.
    let (viewer, _) = register(&server, "viewer", "viewer");
    let r = viewer.post_json(
        &server.url("/api/v1/users/me/interests"),
        &json!({"interests": ["cooking", "recipe"]}),
    );
    assert_eq!(r.status, 400, "fewer than three interests");
    let r = viewer.post_json(
        &server.url("/api/v1/users/me/interests"),
        &json!({"interests": ["#Cooking", "recipe", "foodie"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let page = feed(&server, &viewer, "/api/v1/feed/for-you?limit=3");
    assert_eq!(page["source"], "personalized");
    // A feed page is a list with the feed's members beside it.
    for member in ["items", "nextCursor", "source", "prefetchIds", "variant"] {
        assert!(page.get(member).is_some(), "no {member} in {page}");
    }
    assert!(page.get("videos").is_none(), "{page}");
    let first = ids(&page);
    assert!(
        cooking.contains(&first[0]) && cooking.contains(&first[1]),
        "{page}"
    );
    assert_eq!(page["items"][0]["reason"], "cold_start");
    assert!(page["prefetchIds"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));

    // Paging with the cursor never repeats a video.
    let mut seen: HashSet<String> = first.iter().cloned().collect();
    let mut cursor = page["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let p = feed(
            &server,
            &viewer,
            &format!("/api/v1/feed/for-you?limit=3&cursor={c}"),
        );
        for id in ids(&p) {
            assert!(seen.insert(id.clone()), "{id} repeated");
        }
        cursor = p["nextCursor"].as_str().map(str::to_owned);
        if seen.len() == 6 {
            break;
        }
    }
    assert_eq!(seen.len(), 6);
    let r = viewer.get(&server.url("/api/v1/feed/for-you?cursor=not-a-cursor"));
    assert_eq!((r.status, r.error_code()), (400, "VALIDATION_ERROR".into()));
    assert_eq!(
        r.json()["error"]["details"]["field"],
        "cursor",
        "{}",
        r.text()
    );
    let r = viewer.get(&server.url("/api/v1/feed/for-you?limit=0"));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["details"]["field"],
        "limit",
        "{}",
        r.text()
    );
    assert_eq!(anon.get(&server.url("/api/v1/feed/for-you")).status, 401);
    assert_eq!(
        feed(&server, &anon, "/api/v1/feed/trending")["source"],
        "trending"
    );

    // Watching football to the end moves the viewer's taste at once.
    // Ahead of any clock this runs on: the server clamps it to now, so the
    // test never ages past the 30-day limit on event timestamps.
    let ts = "2099-01-01T00:00:00Z";
    let batch = json!({"events": [
        {"eventId": "e1", "videoId": football[0], "watchMs": 1500, "durationMs": 1500, "completed": true, "source": "fyp", "liked": true, "timestamp": ts},
        {"eventId": "e2", "videoId": cooking[1], "watchMs": 100, "durationMs": 1500, "completed": false, "source": "fyp", "timestamp": ts},
    ]});
    let r = viewer.post_json(&server.url("/api/v1/engagement/watch-batch"), &batch);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"accepted": 2, "duplicates": 0, "unknownVideos": 0})
    );
    let r = viewer.post_json(&server.url("/api/v1/engagement/watch-batch"), &batch);
    assert_eq!(
        r.json(),
        json!({"accepted": 2, "duplicates": 2, "unknownVideos": 0})
    );
    let bad = json!({"events": [{"eventId": "e3", "videoId": football[1], "watchMs": 1, "durationMs": 0, "source": "fyp", "timestamp": ts}]});
    let r = viewer.post_json(&server.url("/api/v1/engagement/watch-batch"), &bad);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["details"]["field"],
        "events[0].durationMs",
        "{}",
        r.text()
    );
    // A member of the wrong type is named by its path too.
    let wrong = json!({"events": [{"eventId": "e4", "videoId": football[1], "watchMs": "long", "durationMs": 10, "source": "fyp", "timestamp": ts}]});
    let r = viewer.post_json(&server.url("/api/v1/engagement/watch-batch"), &wrong);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["details"]["field"],
        "events[0].watchMs",
        "{}",
        r.text()
    );
    let page = feed(&server, &viewer, "/api/v1/feed/for-you?limit=10");
    let now = ids(&page);
    assert!(
        !now.contains(&football[0]) && !now.contains(&cooking[1]),
        "watched videos are not shown again"
    );
    assert_eq!(
        now[0], football[1],
        "the other football video leads: {page}"
    );
    assert_eq!(page["items"][0]["reason"], "similar_to_watched");

    // Following.
    let r = viewer.post_json(
        &server.url(&format!("/api/v1/users/{creator_id}/follow")),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let f = feed(&server, &viewer, "/api/v1/feed/following?limit=50");
    assert_eq!(f["source"], "following");
    assert_eq!(f["items"][0]["id"], travel[1].as_str(), "newest first");
    assert!(f["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["reason"] == "following"));
    let r = viewer.request(
        "DELETE",
        &server.url(&format!("/api/v1/users/{creator_id}/follow")),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(feed(&server, &viewer, "/api/v1/feed/following")["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // A new video near the viewer's taste reaches their exploration pool.
    let fresh = publish(
        &server,
        &creator,
        &file,
        "Bicycle kick goal of the season",
        &["football", "goals"],
        "",
    );
    let mut last = Value::Null;
    let start = Instant::now();
    while !last["items"].as_array().is_some_and(|vs| {
        vs.iter()
            .any(|v| v["id"] == fresh.as_str() && v["reason"] == "exploration")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "new video {fresh} not in the viewer's exploration pool within 60 s; last page {last}\nlog:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
        last = feed(&server, &viewer, "/api/v1/feed/for-you?limit=10");
    }
    let took = start.elapsed();
    eprintln!("new video reached the viewer's pool {took:?} after becoming ready");

    // Pages name videos from a metadata cache; a deleted one leaves every
    // page at once (the cache is invalidated with the catalog).
    assert!(
        feed(&server, &anon, "/api/v1/feed/trending?limit=50")["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == fresh.as_str()),
        "the new video is trending before its deletion (and so cached)"
    );
    let r = creator.delete(&server.url(&format!("/api/v1/videos/{fresh}")));
    assert_eq!(r.status, 204, "{}", r.text());
    for path in [
        "/api/v1/feed/trending?limit=50",
        "/api/v1/feed/for-you?limit=50",
    ] {
        let page = feed(&server, &viewer, path);
        assert!(
            !ids(&page).contains(&fresh),
            "{path} still names deleted {fresh}: {page}"
        );
    }

    // A corrupt ranking model: trending, with a 200 and the reason.
    let ranker = server.data.join("models/ranker.safetensors");
    std::fs::create_dir_all(ranker.parent().unwrap()).unwrap();
    std::fs::write(&ranker, b"definitely not safetensors").unwrap();
    wait_until("fallback to trending", Duration::from_secs(10), || {
        let p = feed(&server, &viewer, "/api/v1/feed/for-you");
        p["source"] == "trending_fallback"
            && p["degraded"]
                .as_str()
                .is_some_and(|d| d.contains("ranking model"))
    });
    std::fs::remove_file(&ranker).unwrap();
    wait_until("personalisation back", Duration::from_secs(10), || {
        feed(&server, &viewer, "/api/v1/feed/for-you")["source"] == "personalized"
    });
    let metrics = anon.get(&server.url("/metrics")).text();
    assert!(
        metrics.contains("appliance_feed_fallbacks_total"),
        "{metrics}"
    );
    // Every answer is counted under its route template and status.
    for series in [
        r#"appliance_http_requests_total{route="/api/v1/feed/for-you",code="200"}"#,
        r#"appliance_http_requests_total{route="/api/v1/feed/for-you",code="400"}"#,
        r#"appliance_http_requests_total{route="/api/v1/feed/for-you",code="401"}"#,
        r#"appliance_http_requests_total{route="/api/v1/videos/{id}",code="204"}"#,
        r#"appliance_http_request_duration_seconds_count{route="/api/v1/feed/trending",code="200"}"#,
    ] {
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"));
        assert!(n >= 1.0, "{series} {n}");
    }

    // Everything the feed learned is rebuilt after a restart.
    assert_eq!(server.terminate(), Some(0));
    let (config, data, log) = (
        server.config.clone(),
        server.data.clone(),
        dir.path().join("server2.log"),
    );
    let server = Server::start_with(&config, &data, log);
    let page = feed(&server, &viewer, "/api/v1/feed/for-you?limit=10");
    assert_eq!(page["source"], "personalized");
    let after = ids(&page);
    assert!(
        !after.contains(&football[0]),
        "watch history survives a restart"
    );
    assert_eq!(after[0], football[1], "{page}");
    assert!(server.log().contains("feed engine ready"));
}
