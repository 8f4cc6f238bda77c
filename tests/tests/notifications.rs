//! Notifications for users through the real server: each kind arrives on
//! the recipient's event stream within a second of what caused it (the
//! measured latencies are printed), nobody hears of their own actions, a
//! like milestone comes once however often a like is taken back, the
//! unread count is the same after a `kill -9` and restart, a reconnect
//! with `Last-Event-ID` replays what was missed, a deleted video's
//! notifications stay without their link — and a notification made
//! through one process reaches a stream held by another sharing the Redis.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::server::{register, tiny_clip, upload_small, wait_final, Client, Server};
use e2e::services::Redis;
use serde_json::{json, Value};

/// What the spec asks of every kind: on the stream within a second.
const WITHIN: Duration = Duration::from_secs(1);

/// One server-sent event, stamped when it arrived.
#[derive(Debug, Clone)]
struct Ev {
    at: Instant,
    wall_ms: i64,
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open event stream; events come in on a channel from a reader thread.
struct Events(mpsc::Receiver<Ev>);

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Opens `url` as an event stream with `token`, sending `Last-Event-ID`
/// when given. `Client::sse` keeps no ids and sends no such header.
fn events(url: &str, token: &str, last_id: Option<&str>) -> Events {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut req = agent
        .get(url)
        .header("accept", "text/event-stream")
        .header("authorization", &format!("Bearer {token}"));
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "SSE {url}");
    let reader = BufReader::new(resp.into_body().into_reader());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !data.is_empty() {
                    let ev = Ev {
                        at: Instant::now(),
                        wall_ms: wall_ms(),
                        event: std::mem::take(&mut event),
                        id: id.take(),
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    };
                    data.clear();
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
    });
    Events(rx)
}

impl Events {
    fn next(&self, limit: Duration) -> Ev {
        self.0
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no event within {limit:?}"))
    }

    /// The next `notification` event (an `unread` one on the way fails).
    fn notification(&self, limit: Duration) -> Ev {
        let ev = self.next(limit);
        assert_eq!(ev.event, "notification", "{ev:?}");
        ev
    }

    fn unread(&self, limit: Duration) -> u64 {
        let ev = self.next(limit);
        assert_eq!(ev.event, "unread", "{ev:?}");
        ev.data["unreadCount"].as_u64().unwrap()
    }

    /// Nothing arrives for `d`.
    fn quiet(&self, d: Duration) {
        if let Ok(ev) = self.0.recv_timeout(d) {
            panic!("expected nothing, got {ev:?}");
        }
    }
}

fn stream(server: &Server, c: &Client, last_id: Option<&str>) -> Events {
    events(
        &server.url("/api/v1/notifications/events"),
        c.token.as_deref().unwrap(),
        last_id,
    )
}

fn list(server: &Server, c: &Client) -> Value {
    let r = c.get(&server.url("/api/v1/notifications?limit=100"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn mark_read(server: &Server, c: &Client, body: Value) -> u64 {
    let r = c.post_json(&server.url("/api/v1/notifications/read"), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["unreadCount"].as_u64().unwrap()
}

/// Runs `act`, then waits for the notification it causes; returns it and
/// how long it took from the start of the action.
fn timed(what: &str, s: &Events, act: impl FnOnce()) -> (Ev, Duration) {
    let start = Instant::now();
    act();
    let ev = s.notification(Duration::from_secs(5));
    let took = ev.at - start;
    eprintln!("notification latency, {what}: {took:?}");
    assert!(took < WITHIN, "{what}: {took:?}");
    (ev, took)
}

fn ok(r: e2e::server::Resp) -> Value {
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text());
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the server
/// writes it (`2024-05-01T12:34:56.789Z`).
fn epoch_ms(t: &str) -> i64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms
}

#[test]
fn rfc3339_times_read_back_as_epoch_milliseconds() {
    assert_eq!(epoch_ms("1970-01-01T00:00:01.5Z"), 1500);
    assert_eq!(epoch_ms("2000-03-01T00:00:00Z"), 951_868_800_000);
}

#[test]
fn every_kind_arrives_within_a_second_and_the_unread_count_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "");
    let (creator, creator_id) = register(&server, "maker", "creator");
    let (fan, fan_id) = register(&server, "fan", "viewer");
    let mine = stream(&server, &creator, None);
    assert_eq!(mine.unread(Duration::from_secs(5)), 0);

    // A new follower.
    let (ev, _) = timed("follower", &mine, || {
        ok(fan.post_json(
            &server.url(&format!("/api/v1/users/{creator_id}/follow")),
            &json!({}),
        ));
    });
    assert_eq!(ev.data["kind"], "follower", "{ev:?}");
    assert_eq!(ev.data["actor"], json!({"id": fan_id, "username": "fan"}));
    assert_eq!(ev.id.as_deref(), ev.data["id"].as_str());
    let follower_id = ev.data["id"].as_str().unwrap().to_owned();
    // Unfollowing and following again is not news.
    let follow = server.url(&format!("/api/v1/users/{creator_id}/follow"));
    ok(fan.delete(&follow));
    ok(fan.post_json(&follow, &json!({})));

    // The upload is ready: measured from the publish that made it ready.
    let clip = tiny_clip(dir.path());
    let video = upload_small(
        &server,
        &creator,
        &clip,
        &json!({"title": "first light", "visibility": "public"}),
    );
    let ready = mine.notification(Duration::from_secs(120));
    let status = wait_final(&server, &creator, &video, Duration::from_secs(60));
    assert_eq!(status["status"], "ready", "{status}");
    let took = ready.wall_ms - epoch_ms(status["updatedAt"].as_str().unwrap());
    eprintln!("notification latency, upload ready: {took} ms after the publish");
    assert!(took < 1000, "{took} ms");
    assert_eq!(ready.data["kind"], "video_ready", "{ready:?}");
    assert_eq!(
        ready.data["video"],
        json!({"id": video, "title": "first light"})
    );

    // A reply to the creator's comment; the creator's own reply is not news.
    let comments = server.url(&format!("/api/v1/videos/{video}/comments"));
    let top = ok(creator.post_json(&comments, &json!({"body": "what do you think?"})));
    let top_id = top["id"].as_str().unwrap();
    let (ev, _) = timed("reply", &mine, || {
        ok(fan.post_json(&comments, &json!({"body": "lovely", "parentId": top_id})));
    });
    assert_eq!(ev.data["kind"], "reply");
    assert_eq!(ev.data["comment"]["excerpt"], "lovely");
    assert_eq!(ev.data["actor"]["username"], "fan");
    let reply_id = ev.data["id"].as_str().unwrap().to_owned();
    ok(creator.post_json(&comments, &json!({"body": "thanks!", "parentId": top_id})));

    // Likes: the creator's own like tells nobody; the first like from
    // someone else is milestone 1, and taking it back and liking again is
    // not a second one.
    let like = server.url(&format!("/api/v1/videos/{video}/like"));
    ok(creator.post_json(&like, &json!({})));
    mine.quiet(Duration::from_millis(500));
    ok(creator.delete(&like));
    let (ev, _) = timed("like milestone 1", &mine, || {
        ok(fan.post_json(&like, &json!({})));
    });
    assert_eq!(
        (ev.data["kind"].as_str(), ev.data["milestone"].as_u64()),
        (Some("likes"), Some(1))
    );
    ok(fan.delete(&like));
    ok(fan.post_json(&like, &json!({})));
    mine.quiet(Duration::from_millis(500));

    // The tenth like crosses milestone 10, once.
    let likers: Vec<Client> = (2..=10)
        .map(|i| register(&server, &format!("fan{i}"), "viewer").0)
        .collect();
    for c in &likers[..8] {
        ok(c.post_json(&like, &json!({})));
    }
    let (ev, _) = timed("like milestone 10", &mine, || {
        ok(likers[8].post_json(&like, &json!({})));
    });
    assert_eq!(ev.data["milestone"], 10, "{ev:?}");
    let milestone_id = ev.data["id"].as_str().unwrap().to_owned();
    ok(likers[8].delete(&like));
    ok(likers[8].post_json(&like, &json!({})));
    mine.quiet(Duration::from_millis(500));

    // The list: newest first, nothing about the creator's own doings.
    let l = list(&server, &creator);
    let kinds: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["likes", "likes", "reply", "video_ready", "follower"]
    );
    assert_eq!(l["unreadCount"], 5);
    assert!(l["nextCursor"].is_null());
    assert!(l["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["actor"]["id"] != creator_id.as_str()));
    assert!(list(&server, &fan)["items"].as_array().unwrap().is_empty());

    // One read; the stream hears the new count.
    assert_eq!(
        mark_read(&server, &creator, json!({"ids": [follower_id]})),
        4
    );
    assert_eq!(mine.unread(Duration::from_secs(2)), 4);

    // kill -9 and restart: the same count, the same read flag.
    let restart = |server: &mut Server| {
        server.kill9();
        Server::start_with(&server.config, &server.data, dir.path().join("server.log"))
    };
    server = restart(&mut server);
    let l = list(&server, &creator);
    assert_eq!(l["unreadCount"], 4, "{l}");
    assert_eq!(l["items"][4]["read"], true);
    assert_eq!(mark_read(&server, &creator, json!({"upTo": reply_id})), 2);
    server = restart(&mut server);
    assert_eq!(list(&server, &creator)["unreadCount"], 2);

    // A reconnect with Last-Event-ID gets what came after it, in order,
    // then goes on live.
    let again = stream(&server, &creator, Some(&reply_id));
    assert_eq!(again.unread(Duration::from_secs(5)), 2);
    let n = |id: &str| id.parse::<i64>().unwrap();
    let replayed: Vec<i64> = (0..2)
        .map(|_| n(&again.notification(Duration::from_secs(5)).id.unwrap()))
        .collect();
    assert!(
        n(&reply_id) < replayed[0] && replayed[0] < replayed[1],
        "{replayed:?}"
    );
    assert_eq!(replayed[1], n(&milestone_id));
    let (stranger, stranger_id) = register(&server, "stranger", "viewer");
    let (ev, _) = timed("follower after a restart", &again, || {
        ok(stranger.post_json(
            &server.url(&format!("/api/v1/users/{creator_id}/follow")),
            &json!({}),
        ));
    });
    assert_eq!(ev.data["actor"]["id"], stranger_id.as_str());
    // Up to date: nothing to replay.
    let current = stream(&server, &creator, ev.id.as_deref());
    assert_eq!(current.unread(Duration::from_secs(5)), 3);
    current.quiet(Duration::from_millis(500));
    assert_eq!(mark_read(&server, &creator, json!({})), 0);
    assert_eq!(current.unread(Duration::from_secs(2)), 0);

    // A deleted video's notifications still list, without their link.
    ok(creator.delete(&server.url(&format!("/api/v1/videos/{video}"))));
    let l = list(&server, &creator);
    let about: Vec<&Value> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !n["video"].is_null())
        .collect();
    assert_eq!(about.len(), 4, "{l}");
    for n in about {
        assert_eq!(n["video"], json!({"title": "first light"}), "{n}");
        assert!(n["comment"].get("id").is_none(), "{n}");
    }

    // The stream is the caller's own, and its header is checked.
    let anon = Client::new().get(&server.url("/api/v1/notifications/events"));
    assert_eq!(anon.status, 401);
    let bad = creator.request(
        "GET",
        &server.url("/api/v1/notifications/events"),
        &[("last-event-id", "yesterday")],
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
}

/// A second process on the same catalog and objects, sharing the Redis:
/// the catalog file is linked into its own data directory (the lock, the
/// spool and the analytics store stay per process).
fn second_process(dir: &Path, first: &Server, redis: &str) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(first.data.join("catalog.db"), data.join("catalog.db")).unwrap();
    let objects = first.data.join("objects");
    Server::start(
        dir,
        &format!("{redis}\n[objects]\npath = \"{}\"\n", objects.display()),
    )
}

#[test]
fn a_notification_made_through_one_process_reaches_a_stream_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let on_redis = format!(
        "\n[hot]\nkind = \"redis\"\nredis_url = \"{}\"\ntimeout_ms = 300\nflush_secs = 1\n",
        redis.url()
    );
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = Server::start(&a_dir, &on_redis);
    let b = second_process(&b_dir, &a, &on_redis);
    let (creator, creator_id) = register(&a, "maker", "creator");
    let (fan, _) = register(&a, "fan", "viewer");

    let on_b = stream(&b, &creator, None);
    let on_a = stream(&a, &creator, None);
    assert_eq!(on_b.unread(Duration::from_secs(5)), 0);
    assert_eq!(on_a.unread(Duration::from_secs(5)), 0);
    let (ev, _) = timed("follower, made on A, heard on B", &on_b, || {
        ok(fan.post_json(
            &a.url(&format!("/api/v1/users/{creator_id}/follow")),
            &json!({}),
        ));
    });
    assert_eq!(ev.data["kind"], "follower");
    // A's own stream hears it once, from A, not again through Redis.
    let local = on_a.notification(Duration::from_secs(2));
    assert_eq!(local.id, ev.id);
    on_a.quiet(Duration::from_millis(500));

    // Marked read through B: A's stream hears the new count too.
    assert_eq!(mark_read(&b, &creator, json!({})), 0);
    assert_eq!(on_a.unread(Duration::from_secs(2)), 0);
    assert_eq!(on_b.unread(Duration::from_secs(2)), 0);
    assert_eq!(list(&a, &creator)["unreadCount"], 0);
}
