//! A/B of rankers through the real server, in both analytics profiles:
//! `appliance train-ranker` trains the control model on a simulated log,
//! the candidate is the formula; simulated viewers sign up, page through
//! their feeds, watch and like some of what they were shown (and some of
//! what they were not, or before they were shown it), all over HTTP. The
//! report of `GET /api/v1/ops/experiments` must equal the test's own
//! recount from what it received and sent (for-you pages only: following
//! pages are recorded but ranked by no ranker and in no experiment); the
//! impressions must be in the store (each at its position in the viewer's
//! session, with its ranker), count as no view, and reach `train-ranker`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::server::{admin, publish, register, test_config, tiny_clip, Client, Server};
use e2e::services::ClickHouse;
use e2e::{appliance, run};
use serde_json::{json, Value};

const EXPERIMENT: &str = "ab-e2e";
const SHARE: f32 = 0.5;
const VIEWERS: usize = 32;

fn experiment_toml() -> String {
    format!(
        "
[feed.experiment]
name = \"{EXPERIMENT}\"
candidate_ranker = \"formula\"
share = {SHARE}

[hot]
flush_secs = 1
"
    )
}

/// The documented split: FNV-1a of name, NUL, viewer, then MurmurHash3's
/// 64-bit finaliser; the top 24 bits as a fraction below `share` is the
/// candidate.
fn assign(name: &str, user: &str, share: f32) -> &'static str {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0u8]).chain(user.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    if ((h >> 40) as f32 / (1u64 << 24) as f32) < share {
        "candidate"
    } else {
        "control"
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = Client::new().get(&server.url("/metrics")).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The control ranker: trained by `appliance train-ranker` on a simulated
/// log, written where `feed.ranker` points (under the data directory).
fn train_control(dir: &Path) {
    let sim = dir.join("sim");
    let out = appliance(
        &[
            "simulate",
            "--out",
            sim.to_str().unwrap(),
            "--users",
            "40",
            "--videos",
            "60",
            "--seed",
            "7",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, test_config(&dir.join("data"), "")).unwrap();
    let videos = sim.join("videos.jsonl");
    let log = sim.join("events.jsonl");
    let out = appliance(
        &[
            "train-ranker",
            "--config",
            cfg.to_str().unwrap(),
            "--videos",
            videos.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--quiet",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(dir.join("data/models/ranker.safetensors").is_file());
}

/// A deterministic coin per (viewer, video, purpose).
fn coin(seed: &str, n: u64) -> bool {
    let mut h: u64 = 1469598103934665603;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    h.is_multiple_of(n)
}

/// One video shown to a viewer, as the test saw it arrive.
struct ShownTo {
    video: String,
    /// On a for-you page (the experiment's), not a following one.
    for_you: bool,
}

struct WatchSent {
    video: String,
    completed: bool,
    /// Sent (and received) a second or more before the viewer's first
    /// page; every other watch is sent after the viewer's last page. The
    /// box orders a watch and a showing by its own receive time, whatever
    /// the watch's timestamp says.
    before_pages: bool,
}

#[derive(Default)]
struct Viewer {
    id: String,
    variant: String,
    shown: Vec<ShownTo>,
    watches: Vec<WatchSent>,
    /// Likes sent (after every page was shown).
    liked: HashSet<String>,
    /// A page came from the trending fallback (a new session, positions
    /// from 0 again).
    fell_back: bool,
}

/// Pages through `path` with cursors (at most `pages`), checking the
/// variant on every page; returns the videos shown, in order.
fn page_through(server: &Server, c: &Client, path: &str, pages: usize, v: &mut Viewer) {
    let for_you = path.contains("/for-you");
    let mut cursor: Option<String> = None;
    for _ in 0..pages {
        let url = match &cursor {
            Some(cur) => format!("{path}&cursor={cur}"),
            None => path.to_owned(),
        };
        let r = c.get(&server.url(&url));
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let page = r.json();
        assert_eq!(page["variant"], v.variant.as_str(), "{url}: {page}");
        v.fell_back |= page["source"] == "trending_fallback";
        for item in page["items"].as_array().unwrap() {
            v.shown.push(ShownTo {
                video: item["id"].as_str().unwrap().to_owned(),
                for_you,
            });
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
}

/// Per variant: viewers, impressions, watched and liked impressions,
/// watches after a showing and the completed ones — of for-you pages only.
type Recount = HashMap<String, [u64; 6]>;

fn recount(viewers: &[Viewer]) -> Recount {
    let mut out: Recount = HashMap::new();
    for v in viewers {
        let shown: Vec<&ShownTo> = v.shown.iter().filter(|s| s.for_you).collect();
        if shown.is_empty() {
            continue;
        }
        let e = out.entry(v.variant.clone()).or_default();
        e[0] += 1;
        // Every watch but those sent before the pages follows every
        // showing of its video (whatever its timestamp); likes are sent
        // after the pages.
        for s in &shown {
            e[1] += 1;
            e[2] += u64::from(
                v.watches
                    .iter()
                    .any(|w| w.video == s.video && !w.before_pages),
            );
            e[3] += u64::from(v.liked.contains(&s.video));
        }
        for w in v.watches.iter().filter(|w| !w.before_pages) {
            if shown.iter().any(|s| s.video == w.video) {
                e[4] += 1;
                e[5] += u64::from(w.completed);
            }
        }
    }
    out
}

fn reported(report: &Value) -> Recount {
    report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["impressions"].as_u64().unwrap() > 0)
        .map(|v| {
            let n = |k: &str| v[k].as_u64().unwrap();
            (
                v["variant"].as_str().unwrap().to_owned(),
                [
                    n("viewers"),
                    n("impressions"),
                    n("watchedImpressions"),
                    n("likedImpressions"),
                    n("watches"),
                    n("completedWatches"),
                ],
            )
        })
        .collect()
}

fn check_rate(rate: &Value, k: u64, n: u64) {
    let (value, low, high) = (
        rate["value"].as_f64().unwrap(),
        rate["low"].as_f64().unwrap(),
        rate["high"].as_f64().unwrap(),
    );
    let want = if n == 0 { 0.0 } else { k as f64 / n as f64 };
    assert!((value - want).abs() < 1e-9, "{rate} for {k}/{n}");
    assert!(
        (0.0..=value).contains(&low) && (value..=1.0).contains(&high),
        "{rate}"
    );
    if n > 0 && k > 0 && k < n {
        assert!(low > 0.0 && high < 1.0, "{rate} for {k}/{n}");
    }
}

/// What the test expects of the store's impressions: as many as the
/// viewers were shown, and each session's positions 0, 1, 2, … (a viewer
/// whose pages fell back to trending, under load, started a new session).
fn check_positions(rows: &[(String, String, u32)], viewers: &[Viewer]) {
    let skip: HashSet<&str> = viewers
        .iter()
        .filter(|v| v.fell_back)
        .map(|v| v.id.as_str())
        .collect();
    let mut per: HashMap<(&str, bool), Vec<u32>> = HashMap::new();
    for (user, source, position) in rows.iter().filter(|r| !skip.contains(r.0.as_str())) {
        per.entry((user, source == "following"))
            .or_default()
            .push(*position);
    }
    let total: usize = viewers.iter().map(|v| v.shown.len()).sum();
    assert_eq!(rows.len(), total, "impressions stored");
    for (key, mut positions) in per {
        positions.sort_unstable();
        let want: Vec<u32> = (0..positions.len() as u32).collect();
        assert_eq!(positions, want, "{key:?}: a session's positions");
    }
}

/// The whole A/B: returns the server (still running) for profile checks.
fn ab_through_the_server(dir: &Path, extra: &str) -> (Server, Vec<Viewer>, Value) {
    train_control(dir);
    let server = Server::start(dir, &format!("{}{extra}", experiment_toml()));
    let (chef, chef_id) = register(&server, "abchef", "creator");
    let (guide, _) = register(&server, "abguide", "creator");
    let clip = tiny_clip(dir);
    let mut videos = Vec::new();
    for (c, title, tags) in [
        (&chef, "Creamy pasta carbonara", ["cooking", "recipe"]),
        (&chef, "Ramen from scratch", ["cooking", "food"]),
        (&chef, "Sourdough at home", ["baking", "food"]),
        (&chef, "Street tacos night", ["cooking", "street"]),
        (&guide, "Tokyo at night", ["travel", "city"]),
        (&guide, "Iceland waterfalls", ["travel", "nature"]),
        (&guide, "Derby free kick", ["football", "goals"]),
        (&guide, "Jazz on the harbour", ["music", "live"]),
    ] {
        videos.push(publish(&server, c, &clip, title, &tags, ""));
    }
    wait_until("every video indexed", Duration::from_secs(90), || {
        metric(&server, "appliance_feed_index_videos") >= videos.len() as f64
    });
    let admin = admin(&server, "abadmin");

    // Sign-ups first; some viewers watch a video before any page (it
    // then follows no showing of it, in the box's receive order).
    let mut viewers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..VIEWERS {
        let (c, id) = register(&server, &format!("abviewer{i}"), "viewer");
        let mut v = Viewer {
            variant: assign(EXPERIMENT, &id, SHARE).to_owned(),
            id,
            ..Viewer::default()
        };
        if i % 3 == 0 {
            let r = c.post_json(
                &server.url("/api/v1/users/me/interests"),
                &json!({"interests": ["cooking", "food", "recipe"]}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        if i % 5 == 2 {
            let video = &videos[i % videos.len()];
            let r = c.post_json(
                &server.url("/api/v1/engagement/watch-batch"),
                &json!({"events": [{
                    "eventId": format!("ab-{i}-early"), "videoId": video, "watchMs": 1500,
                    "durationMs": 1500, "completed": true, "source": "fyp",
                    "liked": false, "shared": false, "timestamp": e2e::rfc3339(e2e::now_secs()),
                }]}),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            v.watches.push(WatchSent {
                video: video.clone(),
                completed: true,
                before_pages: true,
            });
        }
        viewers.push(v);
        clients.push(c);
    }
    // The box compares whole seconds: the early watches are a second older
    // than any showing.
    std::thread::sleep(Duration::from_millis(1100));

    for (i, (v, c)) in viewers.iter_mut().zip(&clients).enumerate() {
        page_through(&server, c, "/api/v1/feed/for-you?limit=3", 3, v);
        if i % 4 == 1 {
            let r = c.post_json(
                &server.url(&format!("/api/v1/users/{chef_id}/follow")),
                &json!({}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            page_through(&server, c, "/api/v1/feed/following?limit=2", 1, v);
        }
        // Anonymous trending pages record nothing and are on no side.
        let r = Client::new().get(&server.url("/api/v1/feed/trending"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["variant"], "control");

        // What the viewer does next: watch some of what was shown (some to
        // the end), like some, and now and then watch something never
        // shown, or send a watch stamped an hour before the showing (a
        // client clock behind: it still follows the showing, which the box
        // orders by when it received the watch).
        let now = e2e::now_secs();
        let shown: Vec<String> = v.shown.iter().map(|s| s.video.clone()).collect();
        let mut events = Vec::new();
        let mut n = 0;
        let mut watch = |v: &mut Viewer, video: &str, ts: i64, completed: bool| {
            n += 1;
            events.push(json!({
                "eventId": format!("ab-{i}-{n}"), "videoId": video, "watchMs": if completed { 1500 } else { 400 },
                "durationMs": 1500, "completed": completed, "source": "fyp",
                "liked": false, "shared": false, "timestamp": e2e::rfc3339(ts),
            }));
            v.watches.push(WatchSent {
                video: video.to_owned(),
                completed,
                before_pages: false,
            });
        };
        for video in &shown {
            let seed = format!("{}:{video}", v.id);
            if coin(&format!("{seed}:watch"), 2) {
                watch(v, video, now, !coin(&format!("{seed}:complete"), 3));
            }
            if coin(&format!("{seed}:like"), 4) && !v.liked.contains(video) {
                let r = c.post_json(
                    &server.url(&format!("/api/v1/videos/{video}/like")),
                    &json!({}),
                );
                assert_eq!(r.status, 200, "{}", r.text());
                v.liked.insert(video.clone());
            }
        }
        if i % 5 == 0 && !shown.is_empty() {
            watch(v, &shown[0], now - 3600, true);
        }
        if i % 7 == 0 {
            if let Some(other) = videos.iter().find(|x| !shown.contains(x)) {
                watch(v, other, now, true);
            }
        }
        if !events.is_empty() {
            let r = c.post_json(
                &server.url("/api/v1/engagement/watch-batch"),
                &json!({"events": events}),
            );
            assert_eq!(r.status, 202, "{}", r.text());
        }
    }
    let sides: HashSet<&str> = viewers.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(sides.len(), 2, "both variants have viewers");

    // Only admins see the report.
    let url = server.url("/api/v1/ops/experiments");
    assert_eq!(Client::new().get(&url).status, 401);
    let (viewer, _) = register(&server, "abnosy", "viewer");
    assert_eq!(viewer.get(&url).status, 403);

    let want = recount(&viewers);
    let mut report = Value::Null;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let r = admin.get(&url);
        assert_eq!(r.status, 200, "{}", r.text());
        report = r.json();
        if report["pendingEvents"] == 0 && reported(&report) == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        reported(&report),
        want,
        "the report against the recount: {report:#}"
    );
    assert_eq!(report["experiment"]["name"], EXPERIMENT, "{report}");
    assert_eq!(report["experiment"]["state"], "running", "{report}");
    assert_eq!(
        report["experiment"]["share"].as_f64(),
        Some(f64::from(SHARE))
    );
    assert_eq!(report["experiment"]["candidateRanker"], "formula");
    assert!(report["asOf"].as_str().unwrap().ends_with('Z'), "{report}");
    for v in report["variants"].as_array().unwrap() {
        let n = |k: &str| v[k].as_u64().unwrap();
        check_rate(
            &v["watchThrough"],
            n("watchedImpressions"),
            n("impressions"),
        );
        check_rate(&v["completionRate"], n("completedWatches"), n("watches"));
        check_rate(
            &v["likesPerImpression"],
            n("likedImpressions"),
            n("impressions"),
        );
    }

    // An impression is not a view: each video's views are the watches sent.
    let mut sent: HashMap<&str, u64> = HashMap::new();
    for w in viewers.iter().flat_map(|v| &v.watches) {
        *sent.entry(w.video.as_str()).or_default() += 1;
    }
    let owner = |video: &str| {
        if videos[..4].iter().any(|x| x == video) {
            &chef
        } else {
            &guide
        }
    };
    wait_until(
        "views equal the watches sent",
        Duration::from_secs(30),
        || {
            videos.iter().all(|video| {
                let want = sent.get(video.as_str()).copied().unwrap_or(0);
                let a = owner(video)
                    .get(&server.url(&format!("/api/v1/analytics/videos/{video}?period=30d")));
                let s = Client::new().get(&server.url(&format!("/api/v1/videos/{video}")));
                a.json()["views"].as_u64() == Some(want)
                    && s.json()["stats"]["views"].as_u64() == Some(want)
            })
        },
    );
    let total: usize = viewers.iter().map(|v| v.shown.len()).sum();
    assert_eq!(metric(&server, "appliance_impressions_total"), total as f64);
    assert_eq!(metric(&server, "appliance_impressions_lost_total"), 0.0);

    // `train-ranker` on the box's own store sees every impression.
    let out = appliance(
        &[
            "train-ranker",
            "--config",
            server.config.to_str().unwrap(),
            "--out",
            dir.join("retrained.safetensors").to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(" and {total} impressions")),
        "{}",
        out.stderr
    );
    assert!(!server.log().contains(" ERROR "), "{}", server.log());
    (server, viewers, report)
}

/// Per distinct (source, variant, ranker, experiment) of the stored
/// impressions: control for-you pages are ranked by the trained model,
/// candidate ones by the formula, both in the experiment; fallbacks are
/// ranked by none (in the experiment when a for-you request fell back);
/// following pages are ranked by none and in no experiment.
fn labels_ok(rows: &[Vec<String>]) {
    assert!(
        rows.iter().any(|r| r[0] == "following"),
        "following pages are recorded: {rows:?}"
    );
    for r in rows {
        let (source, variant, ranker, experiment) = (&r[0], &r[1], &r[2], &r[3]);
        let want: (&str, &str) = match source.as_str() {
            "personalized" | "cold_start" if variant == "candidate" => ("formula", EXPERIMENT),
            "personalized" | "cold_start" => ("model", EXPERIMENT),
            "trending_fallback" => ("none", EXPERIMENT),
            "following" | "following_fallback" => ("none", ""),
            other => panic!("impressions of a {other} page: {rows:?}"),
        };
        assert_eq!(
            (ranker.as_str(), experiment.as_str()),
            want,
            "{source} page of a {variant} viewer"
        );
    }
}

const LABELS: &str = "SELECT DISTINCT source, variant, ranker, experiment FROM impressions";

#[test]
fn ab_report_equals_a_recount_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let (server, viewers, _) = ab_through_the_server(dir.path(), "");
    let db = server.data.join("analytics.db");
    let sql = |q: &str| {
        let out = run(
            Command::new("sqlite3")
                .args(["-readonly", "-separator", "|"])
                .arg(&db)
                .arg(q),
            Duration::from_secs(30),
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.stdout
    };
    let rows: Vec<(String, String, u32)> = sql("SELECT user_id, source, position FROM impressions")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    check_positions(&rows, &viewers);
    let labels: Vec<Vec<String>> = sql(LABELS)
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect();
    labels_ok(&labels);
    assert_eq!(
        sql("SELECT COUNT(*) FROM events WHERE kind = 'impression'").trim(),
        "0"
    );
}

/// The schema of the release before impressions: the server must upgrade
/// it in place, keeping what it holds.
const OLD_SCHEMA: &[&str] = &[
    "CREATE TABLE ab.events (
        event_id String, kind String, ts DateTime, video_id String, creator_id String,
        user_id String, watch_ms UInt32, duration_ms UInt32, completed UInt8, liked UInt8,
        shared UInt8, source String, channel String
    ) ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (creator_id, video_id, ts)",
    "CREATE TABLE ab.event_ids (event_id String, ts DateTime)
        ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY event_id",
    "CREATE MATERIALIZED VIEW ab.event_ids_mv TO ab.event_ids AS SELECT event_id, ts FROM ab.events",
    "INSERT INTO ab.events VALUES ('old-1', 'watch', now() - 86400, 'oldvideo', 'oldcreator',
        'olduser', 1000, 2000, 1, 0, 0, 'fyp', '')",
];

#[test]
fn ab_report_equals_a_recount_on_clickhouse() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start(dir.path());
    ch.query("CREATE DATABASE ab");
    for sql in OLD_SCHEMA {
        ch.query(sql);
    }
    let extra = format!(
        "
[analytics]
kind = \"clickhouse\"
url = \"{}\"
database = \"ab\"
timeout_secs = 5
retry_max_ms = 1000
",
        ch.url()
    );
    let (_server, viewers, _) = ab_through_the_server(dir.path(), &extra);
    let rows: Vec<(String, String, u32)> = ch
        .query("SELECT user_id, source, position FROM ab.impressions FORMAT TSV")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    check_positions(&rows, &viewers);
    let labels: Vec<Vec<String>> = ch
        .query(&format!(
            "{} FORMAT TSV",
            LABELS.replace("FROM impressions", "FROM ab.impressions")
        ))
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    labels_ok(&labels);
    // The old store was upgraded in place: its event is still there, and
    // impression ids joined the shipper's lookup.
    assert_eq!(
        ch.query("SELECT count() FROM ab.events WHERE event_id = 'old-1'")
            .trim(),
        "1"
    );
    let total: usize = viewers.iter().map(|v| v.shown.len()).sum();
    assert_eq!(
        ch.query("SELECT count() FROM ab.event_ids WHERE startsWith(event_id, 'impression:')")
            .trim(),
        total.to_string()
    );
}
