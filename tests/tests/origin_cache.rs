//! The origin answers repeat pulls from memory (`videos::origin_cache`),
//! yet a video that leaves `ready` leaves the origin at once: a reprocess
//! or a delete is never followed by a warm-cache answer for the old files.

use std::time::Duration;

use e2e::server::{admin, register, upload_small, wait_final, Client, Resp, Server};
use e2e::shared_media;
use serde_json::json;

fn video_status(server: &Server, client: &Client, video: &str) -> String {
    client
        .get(&server.url(&format!("/api/v1/videos/{video}/status")))
        .json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_reprocessed_or_deleted_video_leaves_the_warm_origin_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "");
    let (ann, _) = register(&server, "ann", "creator");
    // Eight seconds of 360p: a reprocess takes long enough that the checks
    // below run while the video is `processing`.
    let file = shared_media("prog_640x360_h264_aac_8s.mp4");
    let video = upload_small(
        &server,
        &ann,
        &file,
        &json!({"title": "cached", "visibility": "public"}),
    );
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(180))["status"],
        "ready"
    );
    let cdn = Client::new();
    let url = |p: &str| server.url(&format!("/hls/{video}/{p}"));
    let master = cdn.get(&url("master.m3u8"));
    assert_eq!(master.status, 200);
    let rung = master
        .text()
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .and_then(|l| l.split_once('/'))
        .map(|(r, _)| r.to_owned())
        .expect("a variant in the master playlist");
    let media = cdn.get(&url(&format!("{rung}/index.m3u8"))).text();
    let first = media
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment")
        .to_owned();
    let paths = [
        "master.m3u8".to_owned(),
        format!("{rung}/index.m3u8"),
        format!("{rung}/init.mp4"),
        format!("{rung}/{first}"),
    ];

    // Warm: the second pull (from memory) is the first one byte for byte,
    // validators and ranges included.
    for p in &paths {
        let a = cdn.get(&url(p));
        let b = cdn.get(&url(p));
        assert_eq!((a.status, b.status), (200, 200), "{p}");
        assert_eq!(a.body, b.body, "{p}");
        assert_eq!(a.header("etag"), b.header("etag"), "{p}");
        assert_eq!(a.header("last-modified"), b.header("last-modified"));
        let etag = a.header("etag").unwrap().to_owned();
        let again = cdn.request("GET", &url(p), &[("if-none-match", &etag)], None);
        assert_eq!(again.status, 304, "{p}");
        let part = cdn.request("GET", &url(p), &[("range", "bytes=4-11")], None);
        assert_eq!(part.status, 206, "{p}");
        assert_eq!(part.body, a.body[4..12], "{p}");
    }

    // Reprocess: while the video is processing, none of its old files is
    // served, though every one of them was just answered from memory.
    let admin = admin(&server, "cache-admin");
    let r = admin.post_json(
        &server.url(&format!("/api/v1/ops/videos/{video}/reprocess")),
        &json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let during: Vec<(String, Resp)> = paths
        .iter()
        .map(|p| (p.clone(), cdn.get(&url(p))))
        .collect();
    let still = video_status(&server, &ann, &video);
    if still == "processing" {
        for (p, r) in &during {
            assert_eq!(r.status, 404, "{p} served while the video is reprocessed");
        }
    } else {
        eprintln!("the reprocess finished before the checks ended ({still}); not conclusive");
    }
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(180))["status"],
        "ready"
    );
    assert_eq!(cdn.get(&url("master.m3u8")).status, 200);
    for p in &paths[..3] {
        assert_eq!(cdn.get(&url(p)).status, 200, "{p} after the reprocess");
    }

    // Delete: gone at once, from a warm cache.
    let r = ann.delete(&server.url(&format!("/api/v1/videos/{video}")));
    assert_eq!(r.status, 204);
    for p in &paths {
        let r = cdn.get(&url(p));
        assert_eq!(r.status, 404, "{p} served after the delete");
    }
}
