//! Hostile clients against the real server: idle-connection floods from two
//! client processes (more connections than the server has file
//! descriptors) and 200 slowloris connections from `slowhttptest` (Debian's
//! slow-HTTP DoS tester), all at once. The box must keep answering, close
//! the slow and idle connections within its timeouts, keep taking events,
//! and give the memory back.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::server::{have, publish, register, tiny_clip, Client, Server};
use serde_json::{json, Value};

const NOFILE: u64 = 512;
const HEADER_TIMEOUT: u64 = 2;
const IDLE_TIMEOUT: u64 = 3;
const FLOOD_PER_CLIENT: u64 = 400;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn watch_event(video: &str, n: usize) -> Value {
    json!({"events": [{
        "eventId": format!("flood-{n}"), "videoId": video, "watchMs": 1000,
        "durationMs": 1500, "completed": false, "source": "fyp",
        "liked": false, "shared": false,
        // Ahead of any clock: the server clamps it to now (as feed.rs does).
        "timestamp": "2099-01-01T00:00:00Z",
    }]})
}

#[test]
fn idle_floods_and_slowloris_do_not_starve_the_box() {
    assert!(
        have("slowhttptest") && have("prlimit"),
        "slowhttptest and prlimit are installed by scripts/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_nofile(
        dir.path(),
        &format!(
            "[server]\nheader_timeout_secs = {HEADER_TIMEOUT}\nidle_timeout_secs = {IDLE_TIMEOUT}\n"
        ),
        NOFILE,
    );
    let (creator, _) = register(&server, "floodcreator", "creator");
    let video = publish(
        &server,
        &creator,
        &tiny_clip(dir.path()),
        "flood target",
        &["flood"],
        "",
    );
    let (viewer, _) = register(&server, "floodviewer", "viewer");
    let baseline = rss_kib(server.pid());
    let (host, port) = server
        .base
        .trim_start_matches("http://")
        .split_once(':')
        .unwrap();
    let port = port.to_owned();

    let slow_prefix = dir.path().join("slowloris");
    let slowloris = Command::new("slowhttptest")
        .args(["-H", "-c", "200", "-i", "1", "-r", "200", "-l", "20"])
        .args(["-x", "10", "-p", "3", "-g", "-o"])
        .arg(&slow_prefix)
        .args(["-u", &server.url("/healthz")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let script = e2e::manifest_dir().join("clients/idle_flood.py");
    let floods: Vec<_> = (0..2)
        .map(|_| {
            Command::new("python3")
                .arg(&script)
                .args([host, &port, &FLOOD_PER_CLIENT.to_string(), "10"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    // Throughout: /healthz on a fresh connection every 100 ms, and a watch
    // event into the spool every 500 ms.
    let probe = Client::new();
    let mut latencies = Vec::new();
    let mut sent = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let t = Instant::now();
        let r = probe.get(&server.url("/healthz"));
        latencies.push(t.elapsed());
        assert_eq!(r.status, 200, "/healthz during the flood: {}", r.text());
        if latencies.len() % 5 == 0 {
            let r = viewer.post_json(
                &server.url("/api/v1/engagement/watch-batch"),
                &watch_event(&video, sent),
            );
            assert_eq!(r.status, 202, "the spool refused an event: {}", r.text());
            assert_eq!(r.json()["accepted"], 1);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    for f in floods {
        let out = f.wait_with_output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(
            v["opened"].as_u64().unwrap() + v["refused"].as_u64().unwrap(),
            FLOOD_PER_CLIENT,
            "{v}"
        );
        assert_eq!(
            v["still_open"], 0,
            "idle connections outlived the flood: {v}"
        );
        assert_eq!(v["closed_by_server"], v["opened"], "{v}");
        // The client's clock starts at connect, the server's at accept: a
        // connection can wait in the kernel's accept queue while 800 others
        // arrive, and the reaper looks every 0.5 s here. 3 s covers both.
        let longest = v["longest_life_secs"].as_f64().unwrap();
        assert!(
            longest <= (IDLE_TIMEOUT + 3) as f64,
            "an idle connection lived {longest} s with idle_timeout_secs = {IDLE_TIMEOUT}: {v}"
        );
    }
    let slow = slowloris.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&slow.stdout);
    assert!(
        report.contains("No open connections left"),
        "slowhttptest kept connections open:\n{report}"
    );
    let ended: u64 = report
        .split("Test ended on ")
        .nth(1)
        .and_then(|r| r.split("th second").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no end in the slowhttptest report:\n{report}"));
    assert!(
        ended <= HEADER_TIMEOUT + 3,
        "the slow connections lasted {ended} s with header_timeout_secs = {HEADER_TIMEOUT}"
    );
    // slowhttptest's own probe found the service available every second.
    let csv = std::fs::read_to_string(slow_prefix.with_extension("csv")).unwrap();
    for row in csv.lines().skip(1).filter(|l| !l.is_empty()) {
        assert_eq!(
            row.rsplit(',').next(),
            Some("200"),
            "slowhttptest's probe did not get a 200: {row}\n{csv}"
        );
    }

    latencies.sort();
    let max = *latencies.last().unwrap();
    let p50 = latencies[latencies.len() / 2];
    eprintln!(
        "/healthz during the flood: {} requests, p50 {p50:?}, max {max:?}",
        latencies.len()
    );
    assert!(
        max <= Duration::from_millis(100),
        "/healthz took {max:?} during the flood (p50 {p50:?})"
    );

    let metrics = Client::new().get(&server.url("/metrics")).text();
    let closed = |reason: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "appliance_http_connections_closed_total{{reason=\"{reason}\"}} "
                ))
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {reason} counter in /metrics"))
    };
    let by_policy =
        closed("evicted_idle_at_cap") + closed("header_timeout") + closed("idle_timeout");
    assert!(
        by_policy >= 2 * FLOOD_PER_CLIENT,
        "the server closed only {by_policy} connections:\n{metrics}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(server.pid());
    assert!(
        after <= baseline + 32 * 1024,
        "memory did not come back: {baseline} KiB before, {after} KiB after"
    );
    assert!(sent >= 15, "only {sent} watch batches went through");
}
