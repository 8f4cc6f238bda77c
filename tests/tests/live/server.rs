//! Live channels in `appliance serve`: a camera (GStreamer's RTSP server)
//! made a channel over the API, its live ladder read over HTTP from the
//! origin the way a CDN and a player read it (cache headers, validators,
//! CORS, every reload of the playlist keeping the live invariants), the box
//! `kill -9`ed and later stopped with SIGTERM under it (each time the
//! channel comes back after one discontinuity, numbering going on, no
//! EXT-X-ENDLIST), a clip cut from the recording, and the channel stopped
//! into a VOD video with a discontinuity between runs; and every way a
//! channel is refused (role, URL, rungs, capacity with its units, another
//! creator's channel, a clip of a channel that does not record), with
//! camera credentials never shown.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::rtsp::{check_history, now_ms, parse_pdt, LivePlaylist, Snapshot};
use e2e::server::{admin, assert_decodes, register, Client, Resp, Server};
use e2e::{attr, rfc3339_ms, run};
use serde_json::{json, Value};

use crate::ladder::rig;
use crate::{FIRST_SEGMENT, MIN_WINDOW, POLL, TARGET};

const LIVE_PLAYLIST_CACHE: &str = "public, max-age=1, must-revalidate";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// From a restart of the box to the channel's first new segment.
const RESTART: Duration = Duration::from_secs(60);

/// The end of the server's log, for a failure message.
fn log_tail(server: &Server) -> String {
    let log = server.log();
    let cut = log.len().saturating_sub(6000);
    let cut = (cut..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(0);
    log[cut..].to_owned()
}

/// Polls `f` every `POLL` until it gives a value; panics after `limit`
/// with `what`, the last thing `f` saw (`last`) and the server's log.
fn wait_for<T>(
    server: &Server,
    what: &str,
    limit: Duration,
    mut f: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {limit:?}; last seen:\n{last}\nserver log (end):\n{}",
                log_tail(server)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// URIs of a master playlist's variants (the line after each
/// EXT-X-STREAM-INF) with their attribute lists.
fn variant_uris(master: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = master.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let a = l.strip_prefix("#EXT-X-STREAM-INF:")?;
            Some((a.to_owned(), lines.get(i + 1)?.trim().to_owned()))
        })
        .collect()
}

/// URIs of the renditions (EXT-X-MEDIA) a master playlist names.
fn rendition_uris(master: &str) -> Vec<String> {
    master
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MEDIA:"))
        .filter_map(|a| attr(a, "URI").map(str::to_owned))
        .collect()
}

/// `dir/of/playlist.m3u8` + `uri` → `dir/of/uri`.
fn sibling(playlist_url: &str, uri: &str) -> String {
    let base = &playlist_url[..playlist_url.rfind('/').expect("a path") + 1];
    format!("{base}{uri}")
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.header(name).unwrap_or("<absent>")
}

/// An HLS file as the origin must serve it to anyone: 200, the content
/// type, the cache policy, a validator, CORS open to all.
fn assert_served(r: &Resp, url: &str, content_type: &str, cache: &str) {
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    assert_eq!(header(r, "content-type"), content_type, "GET {url}");
    assert_eq!(
        header(r, "cache-control"),
        cache,
        "GET {url}: Cache-Control"
    );
    assert_eq!(
        header(r, "access-control-allow-origin"),
        "*",
        "GET {url}: CORS"
    );
    assert!(r.header("etag").is_some(), "GET {url}: no ETag");
}

/// GETs a media playlist; a 200 is kept as a snapshot of its history.
fn reload(client: &Client, url: &str, snaps: &mut Vec<Snapshot>) -> Option<LivePlaylist> {
    let r = client.get(url);
    if r.status != 200 {
        return None;
    }
    let text = r.text();
    let p = LivePlaylist::parse(&text)
        .unwrap_or_else(|e| panic!("GET {url} is not a whole playlist ({e}):\n{text}"));
    snaps.push(Snapshot {
        at: Instant::now(),
        wall_ms: now_ms(),
        text,
    });
    Some(p)
}

fn channel(server: &Server, client: &Client, id: &str) -> Value {
    let r = client.get(&server.url(&format!("/api/v1/live/channels/{id}")));
    assert_eq!(r.status, 200, "GET channel {id}: {}", r.text());
    r.json()
}

/// A VOD rendition playlist over HTTP: its text and EXTINF total.
fn vod_playlist(client: &Client, url: &str) -> (String, f64) {
    let r = client.get(url);
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    let text = r.text();
    let secs = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.split(',').next().unwrap().parse::<f64>().expect("EXTINF"))
        .sum();
    (text, secs)
}

/// A published recording (clip or whole): a ready video whose ladder
/// ffmpeg decodes over HTTP; returns its one video rung's playlist URL,
/// text and duration.
fn assert_recording(
    server: &Server,
    client: &Client,
    anon: &Client,
    video: &str,
) -> (String, String, f64) {
    let r = client.get(&server.url(&format!("/api/v1/videos/{video}")));
    assert_eq!(r.status, 200, "GET video {video}: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "ready", "video {video}: {v}");
    let master_url = server.url(&format!("/hls/{video}/master.m3u8"));
    let m = anon.get(&master_url);
    assert_eq!(m.status, 200, "GET {master_url}: {}", m.text());
    let master = m.text();
    let vars = variant_uris(&master);
    assert_eq!(vars.len(), 1, "one rung (360) in\n{master}");
    assert_eq!(
        attr(&vars[0].0, "RESOLUTION"),
        Some("640x360"),
        "the recording's rung:\n{master}"
    );
    assert!(
        attr(&vars[0].0, "CODECS").is_some_and(|c| c.contains("mp4a.40.2")),
        "the camera has AAC audio: the recording's variant lists it\n{master}"
    );
    assert_eq!(
        rendition_uris(&master),
        ["audio/index.m3u8"],
        "one audio rendition in\n{master}"
    );
    assert_decodes(&master_url);
    let rung_url = sibling(&master_url, &vars[0].1);
    let (text, secs) = vod_playlist(anon, &rung_url);
    assert!(
        text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.trim_end().ends_with("#EXT-X-ENDLIST"),
        "{rung_url}: a VOD playlist that ends:\n{text}"
    );
    (rung_url, text, secs)
}

/// `init-{run}.mp4` → run.
fn run_of(map: &str) -> Option<u64> {
    map.strip_prefix("init-")?
        .strip_suffix(".mp4")?
        .parse()
        .ok()
}

/// Waits after a restart of the box for 3 segments of the channel's next
/// run (its `init-{run}.mp4`) in the playlist at `rung_url`, and checks
/// how it carries on from `before` (the playlist as last seen before the
/// box went down): the media sequence has not gone back, numbering goes
/// on past the segments listed before, and the run opens with
/// EXT-X-DISCONTINUITY and its own EXT-X-MAP.
fn resumed(
    server: &Server,
    anon: &Client,
    rung_url: &str,
    snaps: &mut Vec<Snapshot>,
    before: &LivePlaylist,
) -> LivePlaylist {
    let run = before
        .segments
        .last()
        .and_then(|s| run_of(s.map.as_deref()?))
        .unwrap_or_else(|| panic!("no init-{{run}}.mp4 map in {before:?}"))
        + 1;
    let init = format!("init-{run}.mp4");
    let after = wait_for(
        server,
        &format!("3 segments of run {run} after the restart"),
        RESTART,
        |last| {
            let p = reload(anon, rung_url, snaps)?;
            *last = format!("{p:?}");
            let n = p
                .segments
                .iter()
                .filter(|s| s.map.as_deref() == Some(init.as_str()))
                .count();
            (n >= 3).then_some(p)
        },
    );
    assert!(
        after.media_sequence >= before.media_sequence,
        "EXT-X-MEDIA-SEQUENCE went back across the restart: {} → {}",
        before.media_sequence,
        after.media_sequence
    );
    let first = after
        .segments
        .iter()
        .find(|s| s.map.as_deref() == Some(init.as_str()))
        .unwrap();
    let last_before = before.last_seq().unwrap();
    // The box may have published one more segment after our last look.
    assert!(
        (last_before + 1..=last_before + 2).contains(&first.seq),
        "run {run} starts at segment {}; the last one seen before the restart was {last_before}",
        first.seq
    );
    assert!(
        first.discontinuity && first.map_here,
        "run {run} opens with EXT-X-DISCONTINUITY and its own EXT-X-MAP: {first:?}"
    );
    after
}

#[test]
fn a_channel_in_the_server_is_served_survives_kill_9_and_records_to_vod() {
    let Some(rig) = rig("live channels in the server") else {
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), "[live]\nwatchdog_secs = 5\n");
    let (creator, creator_id) = register(&server, "camera-owner", "creator");
    let anon = Client::new();

    let r = creator.post_json(
        &server.url("/api/v1/live/channels"),
        &json!({"name": "front door", "url": rig.server.url("h264-aac"), "rungs": [360], "record": true}),
    );
    assert_eq!(r.status, 201, "create: {}", r.text());
    let ch = r.json();
    let id = ch["id"].as_str().expect("id").to_owned();
    assert_eq!(ch["ownerId"], creator_id.as_str(), "{ch}");
    assert_eq!(ch["name"], "front door", "{ch}");
    assert_eq!(ch["url"], rig.server.url("h264-aac").as_str(), "{ch}");
    assert_eq!(ch["rungs"], json!([360]), "{ch}");
    assert_eq!(ch["record"], true, "{ch}");
    assert_eq!(ch["transport"], "tcp", "{ch}");
    assert_eq!(
        ch["playbackUrl"],
        format!("/live/{id}/master.m3u8").as_str(),
        "{ch}"
    );
    assert_eq!(ch["recordings"], json!([]), "{ch}");
    assert!(ch["createdAt"].is_string(), "{ch}");
    assert!(
        matches!(ch["state"].as_str(), Some("connecting" | "live")),
        "a new channel is connecting (or already live): {ch}"
    );

    // Before the first segment the master is not there yet, and a CDN may
    // ask again within a second (only checkable if we are that early).
    let master_url = server.url(&format!("/live/{id}/master.m3u8"));
    let early = anon.get(&master_url);
    eprintln!("right after the create, the master: {}", early.status);
    if early.status == 404 {
        assert_eq!(
            header(&early, "cache-control"),
            "public, max-age=1",
            "a live file not published yet"
        );
        assert_eq!(header(&early, "access-control-allow-origin"), "*");
    } else {
        assert_eq!(early.status, 200, "GET {master_url}: {}", early.text());
    }
    let unknown = anon.get(&server.url("/live/no-such-channel/master.m3u8"));
    assert_eq!(unknown.status, 404, "an unknown channel");

    // The ladder appears: master, then ≥ 3 segments in the 360p playlist.
    let mut snaps = Vec::new();
    let (master, rung_rel) = wait_for(&server, "the master playlist", FIRST_SEGMENT, |last| {
        let r = anon.get(&master_url);
        *last = format!("{} {}", r.status, r.text());
        if r.status != 200 {
            return None;
        }
        let text = r.text();
        let rung = variant_uris(&text).first()?.1.clone();
        Some((text, rung))
    });
    let vars = variant_uris(&master);
    assert_eq!(vars.len(), 1, "one variant for rungs [360]:\n{master}");
    assert_eq!(attr(&vars[0].0, "RESOLUTION"), Some("640x360"), "{master}");
    assert_eq!(
        rung_rel, "360p/index.m3u8",
        "the rung's directory:\n{master}"
    );
    assert_eq!(
        rendition_uris(&master),
        ["audio/index.m3u8"],
        "the camera's AAC as one audio rendition:\n{master}"
    );
    let rung_url = sibling(&master_url, &rung_rel);
    let audio_url = sibling(&master_url, "audio/index.m3u8");
    let first = wait_for(
        &server,
        "≥ 3 segments in the 360p playlist",
        FIRST_SEGMENT,
        |last| {
            let p = reload(&anon, &rung_url, &mut snaps)?;
            *last = format!("{p:?}");
            (p.segments.len() >= MIN_WINDOW).then_some(p)
        },
    );
    eprintln!(
        "[{:.0} s] 360p playlist has {} segments",
        t0.elapsed().as_secs_f64(),
        first.segments.len()
    );

    // What the origin says about each kind of file.
    let m = anon.get(&master_url);
    assert_served(
        &m,
        &master_url,
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST_CACHE,
    );
    let p = anon.get(&rung_url);
    assert_served(
        &p,
        &rung_url,
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST_CACHE,
    );
    let a = anon.get(&audio_url);
    assert_served(
        &a,
        &audio_url,
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST_CACHE,
    );
    let audio = LivePlaylist::parse(&a.text()).unwrap();
    assert!(!audio.segments.is_empty(), "audio playlist:\n{}", a.text());
    let seg = first.segments.last().unwrap();
    let seg_url = sibling(&rung_url, &seg.uri);
    let s = anon.get(&seg_url);
    assert_served(&s, &seg_url, "video/iso.segment", IMMUTABLE);
    assert!(!s.body.is_empty(), "{seg_url} is empty");
    let init_url = sibling(&rung_url, seg.map.as_deref().expect("EXT-X-MAP"));
    assert!(
        init_url.ends_with("/360p/init-1.mp4"),
        "the first run's init segment: {init_url}"
    );
    let i = anon.get(&init_url);
    assert_served(&i, &init_url, "video/mp4", IMMUTABLE);
    let aseg_url = sibling(&audio_url, &audio.segments[0].uri);
    assert_served(
        &anon.get(&aseg_url),
        &aseg_url,
        "video/iso.segment",
        IMMUTABLE,
    );
    // Validators: a segment never changes, so its ETag gives a 304 with the
    // same cache policy; a playlist's does until it is replaced.
    let etag = s.header("etag").unwrap().to_owned();
    let nm = anon.request("GET", &seg_url, &[("if-none-match", &etag)], None);
    assert_eq!(nm.status, 304, "GET {seg_url} If-None-Match {etag}");
    assert!(nm.body.is_empty(), "a 304 has no body");
    assert_eq!(header(&nm, "cache-control"), IMMUTABLE, "304 of {seg_url}");
    assert_eq!(header(&nm, "etag"), etag, "304 of {seg_url}");
    assert_eq!(header(&nm, "access-control-allow-origin"), "*");
    let mut playlist_304 = None;
    for _ in 0..10 {
        let full = anon.get(&rung_url);
        let tag = full.header("etag").expect("a playlist's ETag").to_owned();
        let again = anon.request("GET", &rung_url, &[("if-none-match", &tag)], None);
        match again.status {
            304 => {
                playlist_304 = Some(again);
                break;
            }
            // Replaced between the two requests: a new version, a new ETag.
            200 => assert_ne!(
                again.header("etag"),
                Some(tag.as_str()),
                "a 200 to If-None-Match must carry another ETag"
            ),
            other => panic!("GET {rung_url} If-None-Match: {other} {}", again.text()),
        }
    }
    let nm = playlist_304.expect("a 304 for the playlist's own ETag (10 tries)");
    assert_eq!(header(&nm, "cache-control"), LIVE_PLAYLIST_CACHE);
    // CORS preflight.
    let pre = anon.request(
        "OPTIONS",
        &rung_url,
        &[
            ("origin", "https://player.example"),
            ("access-control-request-method", "GET"),
        ],
        None,
    );
    assert!(
        matches!(pre.status, 200 | 204),
        "OPTIONS {rung_url}: {}",
        pre.status
    );
    assert_eq!(header(&pre, "access-control-allow-origin"), "*");

    // The channel as the API shows it once it has run a few seconds.
    let ch = wait_for(
        &server,
        "the channel live with fpsIn > 20",
        Duration::from_secs(20),
        |last| {
            let v = channel(&server, &creator, &id);
            *last = v.to_string();
            (v["state"] == "live" && v["fpsIn"].as_f64().is_some_and(|f| f > 20.0)).then_some(v)
        },
    );
    let input = ch["input"]
        .as_str()
        .unwrap_or_else(|| panic!("no input: {ch}"));
    assert!(
        input.contains("h264") && input.contains("1280x720"),
        "the camera's input description: {ch}"
    );
    assert!(ch["lastFrameAt"].is_string(), "{ch}");
    assert!(ch["segments"].as_u64().is_some_and(|n| n >= 3), "{ch}");
    assert!(ch["latencyMs"].as_u64().is_some(), "{ch}");
    assert_eq!(ch["reconnects"], 0, "{ch}");
    let listed = creator.get(&server.url("/api/v1/live/channels")).json();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["items"][0]["id"], id.as_str());

    // kill -9 the box once the window has slid (so a media sequence that
    // went back would show); the channel comes back with it on the same
    // data dir.
    let before = wait_for(
        &server,
        "the window sliding (EXT-X-MEDIA-SEQUENCE ≥ 1)",
        Duration::from_secs(40),
        |last| {
            let p = reload(&anon, &rung_url, &mut snaps)?;
            *last = format!("{p:?}");
            (p.media_sequence >= 1).then_some(p)
        },
    );
    let last_before = before.last_seq().unwrap();
    server.kill9();
    let (config, data) = (server.config.clone(), server.data.clone());
    let log = dir.path().join("server.log");
    server = Server::start_with(&config, &data, log.clone());
    eprintln!(
        "[{:.0} s] killed at segment {last_before}; restarted",
        t0.elapsed().as_secs_f64()
    );
    let rung_url = server.url(&format!("/live/{id}/{rung_rel}"));
    let after = resumed(&server, &anon, &rung_url, &mut snaps, &before);
    eprintln!(
        "[{:.0} s] 3 segments after the restart",
        t0.elapsed().as_secs_f64()
    );
    let ch = channel(&server, &creator, &id);
    assert_eq!(ch["state"], "live", "the channel is live again: {ch}");

    // A live player reads it (across the discontinuity if it starts there).
    let master_url = server.url(&format!("/live/{id}/master.m3u8"));
    let o = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", &master_url])
            .args(["-t", "6", "-f", "null", "-"]),
        Duration::from_secs(90),
    );
    assert_eq!(
        (o.code, o.stderr.trim()),
        (Some(0), ""),
        "ffmpeg reading the live channel {master_url} reported errors"
    );
    eprintln!("[{:.0} s] ffmpeg read 6 s live", t0.elapsed().as_secs_f64());

    // A graceful SIGTERM suspends the channel: the box goes down, the
    // playlists stay open (no EXT-X-ENDLIST), and it comes back after one
    // more discontinuity.
    assert_eq!(server.terminate(), Some(0), "SIGTERM: exit 0");
    let live_dir = data.join("live").join(&id);
    let mut suspended = None;
    for track in [rung_rel.as_str(), "audio/index.m3u8"] {
        let path = live_dir.join(track);
        let text = std::fs::read_to_string(&path).unwrap();
        let p = LivePlaylist::load(&path);
        assert!(
            !p.endlist,
            "{track} after SIGTERM: the channel is suspended, not ended:\n{text}"
        );
        if track == rung_rel {
            // What a CDN would be served while the box is down.
            snaps.push(Snapshot {
                at: Instant::now(),
                wall_ms: now_ms(),
                text,
            });
            suspended = Some(p);
        }
    }
    let suspended = suspended.unwrap();
    assert!(
        suspended.last_seq() >= after.last_seq(),
        "segments went missing at SIGTERM"
    );
    server = Server::start_with(&config, &data, log);
    let rung_url = server.url(&format!("/live/{id}/{rung_rel}"));
    let back = resumed(&server, &anon, &rung_url, &mut snaps, &suspended);
    let first_of_run = back
        .segments
        .iter()
        .find(|s| s.discontinuity && s.seq > suspended.last_seq().unwrap())
        .unwrap();
    assert_eq!(
        Some(first_of_run.seq),
        suspended.last_seq().map(|n| n + 1),
        "after a graceful stop, numbering goes on from the last segment published"
    );
    eprintln!(
        "[{:.0} s] SIGTERM, restarted, 3 segments after",
        t0.elapsed().as_secs_f64()
    );

    // A clip: 4 s from a program date-time, inside one run.
    let now = reload(&anon, &rung_url, &mut snaps).unwrap();
    let segs = &now.segments;
    let k = (0..segs.len().saturating_sub(2))
        .rev()
        .find(|&k| !segs[k + 1].discontinuity && !segs[k + 2].discontinuity)
        .unwrap_or_else(|| panic!("no three segments of one run in {now:?}"));
    let from_ms = segs[k].pdt_ms.unwrap();
    let to = rfc3339_ms(from_ms + 4000);
    assert_eq!(parse_pdt(&to), Some(from_ms + 4000), "{to}");
    let clip_url = server.url(&format!("/api/v1/live/channels/{id}/clip"));
    let r = creator.post_json(
        &clip_url,
        &json!({"from": segs[k].pdt.as_deref().unwrap(), "to": to, "title": "the parcel"}),
    );
    assert_eq!(r.status, 202, "clip: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "ready", "{v}");
    let clip = v["videoId"].as_str().expect("videoId").to_owned();
    let (_, clip_text, clip_secs) = assert_recording(&server, &creator, &anon, &clip);
    assert!(
        (4.0 - 0.002..=10.0).contains(&clip_secs),
        "a 4 s clip (cut on 2 s segments) lasts {clip_secs} s:\n{clip_text}"
    );
    let titled = creator
        .get(&server.url(&format!("/api/v1/videos/{clip}")))
        .json();
    assert_eq!(titled["title"], "the parcel", "{titled}");
    eprintln!(
        "[{:.0} s] clip {clip} of {clip_secs} s",
        t0.elapsed().as_secs_f64()
    );

    // A span the channel recorded nothing in, and one that ends before it
    // starts.
    let r = creator.post_json(
        &clip_url,
        &json!({"from": "2001-01-01T00:00:00Z", "to": "2001-01-01T00:00:04Z"}),
    );
    assert_eq!(r.status, 409, "a clip of nothing: {}", r.text());
    let r = creator.post_json(
        &clip_url,
        &json!({"from": to, "to": segs[k].pdt.as_deref().unwrap()}),
    );
    assert_eq!(
        r.status,
        400,
        "a clip that ends before it starts: {}",
        r.text()
    );

    // Stop: the playlists end, the whole recording becomes a video.
    let r = creator.delete(&server.url(&format!("/api/v1/live/channels/{id}")));
    assert_eq!(r.status, 200, "stop: {}", r.text());
    let ch = r.json();
    assert_eq!(ch["state"], "stopped", "{ch}");
    assert!(ch["stoppedAt"].is_string(), "{ch}");
    let recordings: Vec<String> = ch["recordings"]
        .as_array()
        .unwrap_or_else(|| panic!("recordings: {ch}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        recordings.len(),
        2,
        "the clip and the whole recording: {ch}"
    );
    assert!(recordings.contains(&clip), "{ch}");
    let whole = recordings.iter().find(|v| **v != clip).unwrap().clone();
    let ended = reload(&anon, &rung_url, &mut snaps).expect("the playlist after the stop");
    assert!(ended.endlist, "the stopped channel's 360p playlist ends");
    let audio_url = server.url(&format!("/live/{id}/audio/index.m3u8"));
    let a = anon.get(&audio_url);
    assert!(
        LivePlaylist::parse(&a.text()).is_ok_and(|p| p.endlist),
        "the stopped channel's audio playlist ends:\n{}",
        a.text()
    );
    let h = check_history("360p over HTTP", &snaps, TARGET, MIN_WINDOW);
    assert_eq!(
        h.discontinuities_total, 2,
        "two restarts, two discontinuities (seen before {:?})",
        h.discontinuity_seqs
    );

    // The whole recording: every run, a discontinuity between runs.
    let (whole_url, text, whole_secs) = assert_recording(&server, &creator, &anon, &whole);
    let maps: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MAP:"))
        .filter_map(|a| attr(a, "URI"))
        .collect();
    let discontinuities = text
        .lines()
        .filter(|l| l.trim() == "#EXT-X-DISCONTINUITY")
        .count();
    assert_eq!(
        maps.len(),
        3,
        "the recording spans three runs (before the kill, after it, after SIGTERM): \
         maps {maps:?}\n{text}"
    );
    assert_eq!(
        discontinuities,
        maps.len() - 1,
        "{whole_url}: one EXT-X-DISCONTINUITY between runs ({} runs):\n{text}",
        maps.len()
    );
    for m in &maps {
        assert!(
            m.starts_with("init-") && m.ends_with(".mp4"),
            "the init segment of a run: {m}"
        );
        let u = sibling(&whole_url, m);
        assert_served(&anon.get(&u), &u, "video/mp4", IMMUTABLE);
    }
    let audio_url = server.url(&format!("/hls/{whole}/audio/index.m3u8"));
    let (audio_text, _) = vod_playlist(&anon, &audio_url);
    let audio_discontinuities = audio_text
        .lines()
        .filter(|l| l.trim() == "#EXT-X-DISCONTINUITY")
        .count();
    assert_eq!(
        audio_discontinuities, discontinuities,
        "{audio_url}: the audio rendition has the video's discontinuities:\n{audio_text}"
    );
    let listed = text.lines().filter(|l| l.ends_with(".m4s")).count();
    assert!(
        listed >= h.segments.len(),
        "the recording has {listed} segments; the live playlist listed {} over its life",
        h.segments.len()
    );
    assert!(
        whole_secs > clip_secs,
        "whole {whole_secs} s, clip {clip_secs} s"
    );
    let _ = server.terminate();
    eprintln!(
        "[{:.0} s] done: whole recording {whole_secs:.1} s, {} runs",
        t0.elapsed().as_secs_f64(),
        maps.len()
    );
}

#[test]
fn channels_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    // Two units of live capacity whatever the core count: one 720/480/360
    // channel (≈ 1.94 units) fits, a second does not.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = 2.0 / cores as f64;
    let server = Server::start(
        dir.path(),
        &format!("[live]\ncpu_units_per_core = {per_core}\nwatchdog_secs = 5\n"),
    );
    let channels = server.url("/api/v1/live/channels");
    let nowhere = "rtsp://127.0.0.1:9/none";
    let (viewer, _) = register(&server, "just-watching", "viewer");
    let (alice, alice_id) = register(&server, "alice-cams", "creator");
    let (bob, _) = register(&server, "bob-cams", "creator");

    let r = viewer.post_json(&channels, &json!({"name": "mine", "url": nowhere}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "FORBIDDEN"),
        "viewer: {}",
        r.text()
    );
    let r = Client::new().post_json(&channels, &json!({"name": "anon", "url": nowhere}));
    assert_eq!(r.status, 401, "no token: {}", r.text());
    let r = alice.post_json(&channels, &json!({"name": "ftp", "url": "ftp://x"}));
    assert_eq!(r.status, 400, "ftp://x: {}", r.text());
    r.error_code();
    let r = alice.post_json(
        &channels,
        &json!({"name": "tall", "url": nowhere, "rungs": [999]}),
    );
    assert_eq!(r.status, 400, "rung 999: {}", r.text());
    r.error_code();
    let r = alice.post_json(&channels, &json!({"name": "  ", "url": nowhere}));
    assert_eq!(r.status, 400, "a blank name: {}", r.text());

    // One full ladder fits; the camera is unreachable, and the channel says so.
    let ladder = json!({"name": "porch", "url": nowhere, "rungs": [720, 480, 360]});
    let r = alice.post_json(&channels, &ladder);
    assert_eq!(r.status, 201, "the first 720/480/360 channel: {}", r.text());
    let first = r.json();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["ownerId"], alice_id.as_str());
    assert_eq!(first["record"], false);
    assert_eq!(first["rungs"], json!([720, 480, 360]));
    let ch = wait_for(
        &server,
        "an unreachable camera reported",
        Duration::from_secs(20),
        |last| {
            let v = channel(&server, &alice, &id);
            *last = v.to_string();
            v["lastError"].is_string().then_some(v)
        },
    );
    assert!(
        matches!(ch["state"].as_str(), Some("connecting" | "reconnecting")),
        "a channel whose camera refuses connections: {ch}"
    );
    assert_eq!(ch["segments"], 0, "{ch}");
    assert!(ch.get("input").is_none(), "no input ever connected: {ch}");
    let m = Client::new().get(&server.url(&format!("/live/{id}/master.m3u8")));
    assert_eq!(m.status, 404, "nothing published");
    assert_eq!(header(&m, "cache-control"), "public, max-age=1");

    // A second does not fit: refused with the numbers (a 409, as README
    // and ARCHITECTURE.md say: the box is full until a channel stops).
    let r = alice.post_json(&channels, &json!({"name": "garden", "url": nowhere}));
    assert_eq!(
        r.status,
        409,
        "a second channel over capacity: {}",
        r.text()
    );
    assert_eq!(r.error_code(), "CONFLICT");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("units") && msg.contains("1.94") && msg.contains("2.00"),
        "the refusal names the units (needed, held, total): {msg}"
    );
    let mine = alice.get(&channels).json();
    assert_eq!(
        mine["items"].as_array().map(Vec::len),
        Some(1),
        "a refused channel is not stored: {mine}"
    );

    // Another creator neither sees nor touches it.
    let theirs = bob.get(&channels).json();
    assert_eq!(theirs["items"], json!([]), "bob's list: {theirs}");
    let one = server.url(&format!("/api/v1/live/channels/{id}"));
    assert_eq!(bob.get(&one).status, 404, "bob GETs alice's channel");
    assert_eq!(bob.delete(&one).status, 404, "bob DELETEs alice's channel");
    let r = bob.post_json(
        &format!("{one}/clip"),
        &json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:10Z"}),
    );
    assert_eq!(r.status, 404, "bob clips alice's channel: {}", r.text());
    assert_eq!(channel(&server, &alice, &id)["state"], ch["state"]);
    // An admin sees everyone's.
    let admin = admin(&server, "live-admin");
    let all = admin.get(&channels).json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all["items"][0]["id"], id.as_str(), "{all}");
    assert!(all["nextCursor"].is_null(), "one page holds it: {all}");
    for (query, field) in [("limit=0", "limit"), ("cursor=zz", "cursor")] {
        let r = admin.get(&format!("{channels}?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert_eq!(r.json()["error"]["details"]["field"], field, "{}", r.text());
    }
    assert_eq!(
        admin.get(&one).status,
        200,
        "the admin GETs alice's channel"
    );

    // A channel that does not record has nothing to clip.
    let r = alice.post_json(
        &format!("{one}/clip"),
        &json!({"from": rfc3339_ms(now_ms() - 10_000), "to": rfc3339_ms(now_ms())}),
    );
    assert_eq!(
        r.status,
        409,
        "clip of a non-recording channel: {}",
        r.text()
    );
    assert_eq!(r.error_code(), "CONFLICT");

    // Stopping frees its share: another full ladder fits.
    let r = alice.delete(&one);
    assert_eq!(r.status, 200, "stop: {}", r.text());
    let stopped = r.json();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["recordings"], json!([]), "{stopped}");
    let again = alice.delete(&one);
    assert_eq!(
        (again.status, again.json()["state"].as_str()),
        (200, Some("stopped")),
        "stopping a stopped channel changes nothing"
    );
    let r = bob.post_json(&channels, &ladder);
    assert_eq!(r.status, 201, "room again after the stop: {}", r.text());
    let bobs = r.json()["id"].as_str().unwrap().to_owned();
    let r = alice.post_json(&channels, &json!({"name": "garden", "url": nowhere}));
    assert_eq!(r.status, 409, "and full again: {}", r.text());
    let r = bob.delete(&server.url(&format!("/api/v1/live/channels/{bobs}")));
    assert_eq!(r.status, 200, "{}", r.text());

    // A camera's credentials are used, never shown (nor logged).
    let r = alice.post_json(
        &channels,
        &json!({"name": "gate", "url": "rtsp://gate-user:s3cret-pw@127.0.0.1:9/none",
                "rungs": [360], "transport": "udp"}),
    );
    assert_eq!(r.status, 201, "a 360-only channel over UDP: {}", r.text());
    let gate = r.json();
    assert_eq!(
        (gate["rungs"].clone(), gate["transport"].as_str()),
        (json!([360]), Some("udp")),
        "{gate}"
    );
    let gate_id = gate["id"].as_str().unwrap().to_owned();
    wait_for(
        &server,
        "the gate camera's failure",
        Duration::from_secs(20),
        |last| {
            let v = channel(&server, &alice, &gate_id);
            *last = v.to_string();
            v["lastError"].is_string().then_some(())
        },
    );
    let shown = [
        gate.to_string(),
        channel(&server, &alice, &gate_id).to_string(),
        alice.get(&channels).text(),
        server.log(),
    ];
    for text in shown {
        assert!(
            !text.contains("s3cret-pw") && !text.contains("gate-user"),
            "the camera's credentials are shown:\n{text}"
        );
    }
    assert_eq!(gate["url"], "rtsp://127.0.0.1:9/none", "{gate}");
}
