//! Engagement and analytics through the real server, in both profiles:
//! embedded (SQLite analytics, in-process hot state) and production (a real
//! `clickhouse-server` and `redis-server` started here on loopback).
//! Counts are checked against a brute-force recount of what was sent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::server::{publish, register, tiny_clip, Client, Server};
use e2e::services::{ClickHouse, Redis};
use serde_json::{json, Value};

const EMBEDDED: &str = "
[hot]
flush_secs = 1
[analytics]
trending_secs = 1
reconcile_secs = 2
retry_max_ms = 1000
";

/// The hot store on `redis`, failing over after 300 ms, flushing every second.
fn on_redis(redis: &Redis) -> String {
    format!(
        "\n[hot]\nkind = \"redis\"\nredis_url = \"{}\"\ntimeout_ms = 300\nflush_secs = 1\n",
        redis.url()
    )
}

fn production(ch: &ClickHouse, redis: &Redis) -> String {
    format!(
        "{}
[analytics]
kind = \"clickhouse\"
url = \"{}\"
database = \"appliance_test\"
timeout_secs = 5
trending_secs = 1
reconcile_secs = 2
retry_max_ms = 1000
",
        on_redis(redis),
        ch.url()
    )
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One watch event as a client sends it.
#[derive(Clone)]
struct Sent {
    user: String,
    id: String,
    video: String,
    watch_ms: u64,
    completed: bool,
    source: &'static str,
    ts: String,
}

impl Sent {
    fn json(&self) -> Value {
        json!({
            "eventId": self.id, "videoId": self.video, "watchMs": self.watch_ms,
            "durationMs": 1500, "completed": self.completed, "source": self.source,
            "liked": false, "shared": false, "timestamp": self.ts,
        })
    }
}

/// What the analytics must say per video: views, unique viewers, watch ms,
/// completions — from the distinct (user, eventId) pairs.
fn recount(sent: &[Sent]) -> HashMap<String, (u64, u64, u64, u64)> {
    let mut seen = HashSet::new();
    let mut viewers: HashMap<String, HashSet<String>> = HashMap::new();
    let mut out: HashMap<String, (u64, u64, u64, u64)> = HashMap::new();
    for s in sent {
        if !seen.insert((s.user.clone(), s.id.clone())) {
            continue;
        }
        viewers
            .entry(s.video.clone())
            .or_default()
            .insert(s.user.clone());
        let e = out.entry(s.video.clone()).or_default();
        e.0 += 1;
        e.2 += s.watch_ms;
        e.3 += u64::from(s.completed);
    }
    for (v, e) in out.iter_mut() {
        e.1 = viewers[v].len() as u64;
    }
    out
}

fn analytics_of(server: &Server, owner: &Client, video: &str) -> (u64, u64, u64, u64) {
    let r = owner.get(&server.url(&format!("/api/v1/analytics/videos/{video}?period=30d")));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let n = |k: &str| v[k].as_u64().unwrap();
    (n("views"), n("uniqueViewers"), n("totalWatchMs"), {
        let hourly = v["hourly"].as_array().unwrap();
        hourly
            .iter()
            .map(|h| h["completions"].as_u64().unwrap())
            .sum()
    })
}

/// Waits until every video's analytics equal the recount.
fn assert_analytics_match(server: &Server, owner: &Client, videos: &[String], sent: &[Sent]) {
    let want = recount(sent);
    let start = Instant::now();
    let last = loop {
        let last = videos
            .iter()
            .map(|v| (v.clone(), analytics_of(server, owner, v)))
            .collect::<HashMap<_, _>>();
        if videos
            .iter()
            .all(|v| last[v] == want.get(v).copied().unwrap_or_default())
        {
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            break last;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for v in videos {
        assert_eq!(
            last[v],
            want.get(v).copied().unwrap_or_default(),
            "video {v}: (views, viewers, watch ms, completions)"
        );
    }
}

/// Sends `events` in batches, retrying a batch until the server accepts it
/// (a retried batch may have been accepted before: repeats are harmless).
fn send_all(server: &Mutex<String>, client: &Client, events: &[Sent], batch: usize) {
    for chunk in events.chunks(batch) {
        let body = json!({"events": chunk.iter().map(Sent::json).collect::<Vec<_>>()});
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let base = server.lock().unwrap().clone();
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                client.post_json(&format!("{base}/api/v1/engagement/watch-batch"), &body)
            }));
            match ok {
                Ok(r) if r.status == 202 => break,
                Ok(r) if r.status < 500 && r.status != 0 => {
                    panic!("refused: {} {}", r.status, r.text())
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "a batch was never accepted");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `per_client` events per user over `videos`, `dup_pct` % of them repeats
/// of an earlier id of the same user.
fn workload(
    users: &[String],
    videos: &[String],
    per_client: usize,
    dup_pct: usize,
) -> Vec<Vec<Sent>> {
    let sources = ["fyp", "following", "search", "hashtag", "profile", "sound"];
    let now = e2e::now_secs();
    users
        .iter()
        .enumerate()
        .map(|(u, user)| {
            let mut out: Vec<Sent> = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let k = u * 7919 + i * 104_729;
                if i > 0 && k % 100 < dup_pct {
                    let again = out[k % out.len()].clone();
                    out.push(again);
                    continue;
                }
                out.push(Sent {
                    user: user.clone(),
                    id: format!("ev-{u}-{i}"),
                    video: videos[k % videos.len()].clone(),
                    watch_ms: (k % 3000) as u64,
                    completed: k % 3 == 0,
                    source: sources[k % sources.len()],
                    ts: e2e::rfc3339(now - (k % 7200) as i64),
                });
            }
            out
        })
        .collect()
}

/// A creator with `n` published videos, and `viewers` registered viewers.
fn setup(
    server: &Server,
    dir: &Path,
    n: usize,
    viewers: usize,
) -> (Client, Vec<String>, Vec<(Client, String)>) {
    let (creator, _) = register(server, "creator", "creator");
    let clip = tiny_clip(dir);
    let videos = (0..n)
        .map(|i| {
            publish(
                server,
                &creator,
                &clip,
                &format!("clip {i}"),
                &["dance", "music"],
                "",
            )
        })
        .collect();
    let users = (0..viewers)
        .map(|i| register(server, &format!("viewer{i}"), "viewer"))
        .collect();
    (creator, videos, users)
}

fn concurrent_ingest(
    server: &Server,
    users: &[(Client, String)],
    videos: &[String],
    per_client: usize,
) -> Vec<Sent> {
    let ids: Vec<String> = users.iter().map(|(_, id)| id.clone()).collect();
    let work = workload(&ids, videos, per_client, 5);
    let base = Arc::new(Mutex::new(server.url("")));
    std::thread::scope(|s| {
        for ((client, _), events) in users.iter().zip(&work) {
            let base = base.clone();
            s.spawn(move || send_all(&base, client, events, 100));
        }
    });
    work.into_iter().flatten().collect()
}

fn ingest_matches_recount(extra: &str, dir: &Path) {
    let server = Server::start(dir, extra);
    let (creator, videos, users) = setup(&server, dir, 4, 32);
    let sent = concurrent_ingest(&server, &users, &videos, 1000);
    assert_analytics_match(&server, &creator, &videos, &sent);
    // Views on the video itself: hot counters plus flushed ones.
    let want = recount(&sent);
    for v in &videos {
        let r = creator.get(&server.url(&format!("/api/v1/videos/{v}")));
        assert_eq!(
            r.json()["stats"]["views"].as_u64(),
            Some(want[v].0),
            "views of {v}"
        );
    }
    // Someone else's analytics are not theirs to read.
    let (other, _) = &users[0];
    assert_eq!(
        other
            .get(&server.url(&format!("/api/v1/analytics/videos/{}", videos[0])))
            .status,
        403
    );
    let overview = creator.get(&server.url(&format!(
        "/api/v1/analytics/creators/{}/overview?period=7d",
        creator_id(&server, &creator)
    )));
    assert_eq!(overview.status, 200, "{}", overview.text());
    let total: u64 = want.values().map(|w| w.0).sum();
    assert_eq!(overview.json()["views"].as_u64(), Some(total));
    // Trending is recomputed from the rollups every second here.
    wait_until("trending hashtags", Duration::from_secs(30), || {
        let r = Client::new().get(&server.url("/api/v1/hashtags/trending"));
        let page = r.json();
        // A bounded top list: one page, no cursor.
        r.status == 200
            && page["nextCursor"].is_null()
            && page["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t["tag"] == "dance"))
    });
}

fn creator_id(server: &Server, c: &Client) -> String {
    // The creator's id, from one of their videos.
    let r = c.get(&server.url("/api/v1/feed/trending?limit=1"));
    let v = r.json();
    v["items"][0]["ownerId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn concurrent_clients_with_repeats_count_exactly_embedded() {
    let dir = tempfile::tempdir().unwrap();
    ingest_matches_recount(EMBEDDED, dir.path());
}

#[test]
fn concurrent_clients_with_repeats_count_exactly_on_clickhouse_and_redis() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(dir.path());
    let redis = Redis::start(dir.path());
    ingest_matches_recount(&production(&ch, &redis), dir.path());
}

#[test]
fn clickhouse_down_and_kill_9_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ch = ClickHouse::start(dir.path());
    let redis = Redis::start(dir.path());
    let mut server = Server::start(dir.path(), &production(&ch, &redis));
    let (creator, videos, users) = setup(&server, dir.path(), 3, 8);
    let ids: Vec<String> = users.iter().map(|(_, id)| id.clone()).collect();
    let work = workload(&ids, &videos, 1500, 5);
    let base = Arc::new(Mutex::new(server.url("")));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for ((client, _), events) in users.iter().zip(&work) {
            let base = base.clone();
            let done = &done;
            s.spawn(move || {
                for part in events.chunks(50) {
                    send_all(&base, client, part, 50);
                    if !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1200));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        ch.stop();
        std::thread::sleep(Duration::from_secs(30));
        let depth = metric(&base.lock().unwrap(), "appliance_event_spool_depth");
        assert!(
            depth > 0.0,
            "events should be waiting in the spool while ClickHouse is down"
        );
        ch.resume();
        std::thread::sleep(Duration::from_secs(1));
        server.kill9();
        server = Server::start_with(
            &dir.path().join("appliance.toml"),
            &dir.path().join("data"),
            dir.path().join("server2.log"),
        );
        *base.lock().unwrap() = server.url("");
        done.store(true, Ordering::Relaxed);
    });
    let sent: Vec<Sent> = work.into_iter().flatten().collect();
    assert_analytics_match(&server, &creator, &videos, &sent);
    let distinct: HashSet<(String, String)> = sent
        .iter()
        .map(|s| (s.user.clone(), s.id.clone()))
        .collect();
    let raw = ch.query("SELECT count(), uniqExact(event_id) FROM appliance_test.events WHERE kind = 'watch' FORMAT TSV");
    assert_eq!(
        raw.trim(),
        format!("{}\t{}", distinct.len(), distinct.len()),
        "raw events: none lost, none twice"
    );
}

fn metric(base: &str, name: &str) -> f64 {
    let text = Client::new().get(&format!("{base}/metrics")).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn redis_down_degrades_and_counters_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let extra = format!(
        "{}[analytics]\nreconcile_secs = 2\ntrending_secs = 1\n",
        on_redis(&redis)
    );
    let server = Server::start(dir.path(), &extra);
    let (creator, videos, users) = setup(&server, dir.path(), 2, 4);
    let ids: Vec<String> = users.iter().map(|(_, id)| id.clone()).collect();
    let work = workload(&ids, &videos, 40, 5);
    let base = Mutex::new(server.url(""));
    // Before, during and after the outage.
    for (i, ((client, _), events)) in users.iter().zip(&work).enumerate() {
        let (a, b) = events.split_at(events.len() / 2);
        send_all(&base, client, a, 20);
        if i == 0 {
            assert_eq!(
                client
                    .post_json(
                        &server.url(&format!("/api/v1/videos/{}/like", videos[0])),
                        &json!({})
                    )
                    .status,
                200
            );
        }
        if i == 1 {
            redis.kill();
        }
        send_all(&base, client, b, 20);
    }
    // Degraded, still answering.
    let (viewer, _) = &users[2];
    let feed = viewer.get(&server.url("/api/v1/feed/for-you"));
    assert_eq!(feed.status, 200, "{}", feed.text());
    assert_eq!(
        viewer
            .post_json(
                &server.url(&format!("/api/v1/videos/{}/like", videos[0])),
                &json!({})
            )
            .status,
        200
    );
    assert_eq!(metric(&server.url(""), "appliance_hot_store_degraded"), 1.0);
    redis.restart();
    let sent: Vec<Sent> = work.into_iter().flatten().collect();
    let want = recount(&sent);
    wait_until(
        "counters reconciled after Redis returned",
        Duration::from_secs(60),
        || {
            videos.iter().all(|v| {
                let s = creator
                    .get(&server.url(&format!("/api/v1/videos/{v}")))
                    .json()["stats"]
                    .clone();
                let likes = if *v == videos[0] { 2 } else { 0 };
                s["views"].as_u64() == Some(want[v].0) && s["likes"].as_u64() == Some(likes)
            })
        },
    );
    assert_eq!(metric(&server.url(""), "appliance_hot_store_degraded"), 0.0);
}

fn engagement_is_idempotent(extra: &str, dir: &Path) {
    let server = Server::start(dir, extra);
    let (creator, videos, users) = setup(&server, dir, 1, 2);
    let v = &videos[0];
    let (fan, fan_id) = &users[0];
    let url = |p: &str| server.url(&format!("/api/v1{p}"));
    // Double like: one like, same answer.
    let first = fan.post_json(&url(&format!("/videos/{v}/like")), &json!({}));
    let second = fan.post_json(&url(&format!("/videos/{v}/like")), &json!({}));
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.json(), second.json());
    assert_eq!(first.json()["likes"], 1);
    let seen = fan.get(&url(&format!("/videos/{v}"))).json();
    assert_eq!(seen["viewer"]["liked"], true);
    assert_eq!(seen["stats"]["likes"], 1);
    // Saves likewise, and unsave undoes.
    fan.post_json(&url(&format!("/videos/{v}/save")), &json!({}));
    assert_eq!(
        fan.post_json(&url(&format!("/videos/{v}/save")), &json!({}))
            .json()["saves"],
        1
    );
    assert_eq!(
        fan.delete(&url(&format!("/videos/{v}/save"))).json()["saves"],
        0
    );
    // Double follow: one follower.
    let creator_id = seen["ownerId"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(
            fan.post_json(&url(&format!("/users/{creator_id}/follow")), &json!({}))
                .status,
            200
        );
    }
    let followers = Client::new()
        .get(&url(&format!("/users/{creator_id}/followers")))
        .json();
    assert_eq!(followers["items"].as_array().unwrap().len(), 1);
    assert_eq!(followers["items"][0]["userId"], fan_id.as_str());
    let following = Client::new()
        .get(&url(&format!("/users/{fan_id}/following")))
        .json();
    assert_eq!(following["items"][0]["userId"], creator_id.as_str());
    // A replayed idempotency key: counted once, same response.
    let share = |key: &str| {
        fan.request(
            "POST",
            &url(&format!("/videos/{v}/share")),
            &[
                ("content-type", "application/json"),
                ("x-idempotency-key", key),
            ],
            Some(br#"{"channel":"whatsapp"}"#),
        )
    };
    let a = share("share-1");
    let b = share("share-1");
    assert_eq!((a.status, b.status), (201, 201), "{}", b.text());
    assert_eq!(a.json(), b.json());
    assert_eq!(a.json()["byChannel"]["whatsapp"], 1);
    assert_eq!(share("share-2").json()["byChannel"]["whatsapp"], 2);
    assert_eq!(
        fan.post_json(
            &url(&format!("/videos/{v}/share")),
            &json!({"channel": "pigeon"})
        )
        .status,
        400
    );
    // Threaded comments, paged with cursors.
    let mut top = Vec::new();
    for i in 0..3 {
        let r = fan.post_json(
            &url(&format!("/videos/{v}/comments")),
            &json!({"body": format!("comment {i}")}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        top.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    for i in 0..3 {
        let r = creator.post_json(
            &url(&format!("/videos/{v}/comments")),
            &json!({"body": format!("reply {i}"), "parentId": top[0]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let page1 = Client::new()
        .get(&url(&format!("/videos/{v}/comments?limit=2")))
        .json();
    let items = page1["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["body"], "comment 2", "newest first");
    let cursor = page1["nextCursor"].as_str().expect("a second page");
    let page2 = Client::new()
        .get(&url(&format!(
            "/videos/{v}/comments?limit=2&cursor={cursor}"
        )))
        .json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["items"][0]["replyCount"], 3);
    assert!(
        page2["nextCursor"].is_null(),
        "the last page says so: {page2}"
    );
    let replies = Client::new()
        .get(&url(&format!("/comments/{}/replies?limit=2", top[0])))
        .json();
    assert_eq!(replies["items"][0]["body"], "reply 0", "oldest first");
    let more = replies["nextCursor"].as_str().unwrap();
    let rest = Client::new()
        .get(&url(&format!("/comments/{}/replies?cursor={more}", top[0])))
        .json();
    assert_eq!(rest["items"][0]["body"], "reply 2");
    let r = Client::new().get(&url(&format!("/videos/{v}/comments?cursor=junk")));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["details"]["field"],
        "cursor",
        "{}",
        r.text()
    );
    // A comment of the wrong type, or none, is refused naming the member.
    for (body, field) in [
        (json!({"body": 7}), "body"),
        (json!({"parentId": "x"}), "body"),
    ] {
        let r = creator.post_json(&url(&format!("/videos/{v}/comments")), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["details"]["field"], field, "{}", r.text());
    }
    // The counts on the video, once flushed and reconciled.
    wait_until("counts on the video", Duration::from_secs(20), || {
        let s = Client::new().get(&url(&format!("/videos/{v}"))).json()["stats"].clone();
        s["likes"] == 1 && s["comments"] == 6 && s["shares"] == 2 && s["saves"] == 0
    });
}

#[test]
fn likes_follows_and_idempotency_keys_count_once_embedded() {
    let dir = tempfile::tempdir().unwrap();
    engagement_is_idempotent(EMBEDDED, dir.path());
}

#[test]
fn likes_follows_and_idempotency_keys_count_once_on_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let extra = on_redis(&redis);
    engagement_is_idempotent(&extra, dir.path());
}

fn eleventh_upload_is_limited(extra: &str, dir: &Path) {
    let server = Server::start(dir, extra);
    let (creator, _) = register(&server, "busy", "creator");
    let init = || {
        creator.post_json(
            &server.url("/api/v1/uploads/init"),
            &json!({"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"}),
        )
    };
    let started = Instant::now();
    for i in 0..10 {
        let r = init();
        assert_eq!(r.status, 201, "upload {i}: {}", r.text());
    }
    let r = init();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "RATE_LIMITED");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    // The first of the ten leaves the hour window 3600 s after it was made.
    let elapsed = started.elapsed().as_secs();
    assert!(
        (3599 - elapsed..=3600).contains(&retry),
        "Retry-After {retry} after {elapsed} s"
    );
    // Someone else is not limited by it.
    let (other, _) = register(&server, "calm", "creator");
    assert_eq!(
        other
            .post_json(
                &server.url("/api/v1/uploads/init"),
                &json!({"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"})
            )
            .status,
        201
    );
}

#[test]
fn the_eleventh_upload_in_an_hour_is_refused_embedded() {
    let dir = tempfile::tempdir().unwrap();
    eleventh_upload_is_limited("", dir.path());
}

#[test]
fn the_eleventh_upload_in_an_hour_is_refused_on_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let extra = on_redis(&redis);
    eleventh_upload_is_limited(&extra, dir.path());
}

#[test]
fn status_events_are_published_to_redis_for_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let extra = on_redis(&redis);
    let server = Server::start(dir.path(), &extra);
    // A listener standing in for another server process.
    let log = dir.path().join("subscriber.log");
    let mut sub = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "SUBSCRIBE",
            "appliance:status",
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("redis-cli");
    std::thread::sleep(Duration::from_millis(300));
    let (creator, _) = register(&server, "maker", "creator");
    let clip = tiny_clip(dir.path());
    let id = publish(&server, &creator, &clip, "t", &[], "");
    wait_until(
        "the final status on the channel",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .any(|l| l.contains(&id) && l.contains("transcode.completed"))
        },
    );
    let _ = sub.kill();
    let _ = sub.wait();
}
