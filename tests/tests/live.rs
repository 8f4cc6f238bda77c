//! `appliance ingest-rtsp` end to end: a real RTSP server nobody on the
//! project wrote (GStreamer's, from Debian, started by `tests/rtsp/serve.py`)
//! on a free loopback port, the real binary pulling it into a live HLS
//! ladder, and that ladder read the way live players read it — reloading the
//! playlists, through a camera that dies, freezes, and an ingester that
//! restarts.
//!
//! The contract under test:
//!
//! ```text
//! appliance ingest-rtsp <rtsp-url> --out DIR [--rungs 720,480,360] [--duration SECS] [--watchdog-secs N]
//! DIR/master.m3u8, DIR/v{H}/index.m3u8 (or {H}p/) + init-{N}.mp4 + {seq}.m4s, DIR/audio/…, DIR/live.json
//! ```
//!
//! 2 s CMAF segments, EXT-X-TARGETDURATION:2 always, a window of ≥ 3
//! segments, EXT-X-PROGRAM-DATE-TIME on every segment, EXT-X-DISCONTINUITY
//! (+ DISCONTINUITY-SEQUENCE, + its own EXT-X-MAP) after a reconnect,
//! EXT-X-ENDLIST and exit 0 on --duration expiry, SIGTERM or SIGINT.
//!
//! Outside CI the tests skip when GStreamer's RTSP server is not installed;
//! under CI that fails them (`scripts/setup` installs it). Each test needs
//! the two cores to itself (a live ladder is encoded in real time), so they
//! run one at a time (a lock here; `.config/nextest.toml` for nextest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use e2e::rtsp::{
    assert_segment_decodes, check_history, now_ms, probe_segment, rtsp_server_available, Ingest,
    LivePlaylist, LiveReader, PlaylistPoller, RtspServer, StaticServer,
};
use e2e::{attr, keyframe_times, manifest_dir, run, variants};

const RUNGS: [u64; 3] = [720, 480, 360];
const TARGET: u64 = 2;
const MIN_WINDOW: usize = 3;
const POLL: Duration = Duration::from_millis(500);
/// From the start of `ingest-rtsp` to its first segment on disk (connect,
/// first key frame, one 2 s segment, encoder start-up on a busy box).
const FIRST_SEGMENT: Duration = Duration::from_secs(60);
/// Past --duration, for the last segment and EXT-X-ENDLIST.
const WIND_DOWN: Duration = Duration::from_secs(90);

static SERIAL: Mutex<()> = Mutex::new(());

/// A temp dir, the RTSP server on a free port, and the lock that keeps
/// the live tests from sharing the CPUs.
struct Rig {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    server: RtspServer,
}

impl Rig {
    fn out(&self) -> PathBuf {
        self.dir.path().join("live")
    }
}

fn rig(what: &str) -> Option<Rig> {
    if !rtsp_server_available(what) {
        return None;
    }
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = RtspServer::start(e2e::rtsp::free_port(), &dir.path().join("rtsp-server.log"));
    Some(Rig {
        _serial: serial,
        dir,
        server,
    })
}

fn rungs_arg() -> String {
    RUNGS.map(|h| h.to_string()).join(",")
}

/// The media playlist of the rung `h` pixels high, as the master names it.
fn video_playlist(out: &Path, h: u64) -> PathBuf {
    out.join(rung_uri(&out.join("master.m3u8"), h))
}

fn rung_uri(master: &Path, h: u64) -> String {
    variants(master)
        .into_iter()
        .find(|(a, _)| {
            attr(a, "RESOLUTION")
                .and_then(|r| r.split_once('x'))
                .is_some_and(|(_, y)| y == h.to_string())
        })
        .map(|(_, uri)| uri)
        .unwrap_or_else(|| {
            panic!(
                "no {h}-pixel-high variant in {}:\n{}",
                master.display(),
                std::fs::read_to_string(master).unwrap_or_default()
            )
        })
}

/// Segments in a media playlist right now (0 if missing or mid-write).
fn segments_now(playlist: &Path) -> usize {
    LivePlaylist::read(playlist).map_or(0, |p| p.segments.len())
}

/// The master playlist and every media playlist it names exist and list
/// at least `n` segments.
fn ladder_has(out: &Path, n: usize) -> bool {
    let master = out.join("master.m3u8");
    let Ok(text) = std::fs::read_to_string(&master) else {
        return false;
    };
    let uris = media_uris(&text);
    !uris.is_empty() && uris.iter().all(|u| segments_now(&out.join(u)) >= n)
}

/// URIs of the media playlists a master names (variants and renditions).
fn media_uris(master: &str) -> Vec<String> {
    let lines: Vec<&str> = master.lines().collect();
    let mut uris = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("#EXT-X-STREAM-INF:") {
            if let Some(u) = lines.get(i + 1) {
                uris.push(u.trim().to_owned());
            }
        } else if let Some(a) = l.strip_prefix("#EXT-X-MEDIA:") {
            if let Some(u) = attr(a, "URI") {
                uris.push(u.to_owned());
            }
        }
    }
    uris
}

/// Every EXT-X-MEDIA line of type AUDIO, as attribute lists.
fn audio_renditions(master: &Path) -> Vec<String> {
    std::fs::read_to_string(master)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MEDIA:"))
        .filter(|a| attr(a, "TYPE") == Some("AUDIO"))
        .map(str::to_owned)
        .collect()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Everything a finished (EXT-X-ENDLIST) live ladder must be. `wall` is
/// the wall-clock span (ms) the run happened in. Returns the final media
/// playlists by URI.
fn check_ladder(out: &Path, audio: bool, wall: (i64, i64)) -> BTreeMap<String, LivePlaylist> {
    let master = out.join("master.m3u8");
    let text =
        std::fs::read_to_string(&master).unwrap_or_else(|e| panic!("{}: {e}", master.display()));
    assert!(text.starts_with("#EXTM3U"), "master playlist:\n{text}");

    // Variants: one per rung, named v{H}/index.m3u8, H.264 whatever the camera sent.
    let vars = variants(&master);
    let mut by_height = BTreeMap::new();
    for (a, uri) in &vars {
        let (w, h) = attr(a, "RESOLUTION")
            .unwrap_or_else(|| panic!("no RESOLUTION in {a}\n{text}"))
            .split_once('x')
            .expect("WxH");
        let (w, h): (u64, u64) = (w.parse().unwrap(), h.parse().unwrap());
        assert!(
            w % 2 == 0 && (w as f64 / h as f64 - 16.0 / 9.0).abs() < 0.02,
            "{w}x{h} is not the 16:9 camera's shape scaled"
        );
        // The contract says v{H}/; the VOD ladder's {H}p/ is accepted too.
        assert!(
            uri == &format!("v{h}/index.m3u8") || uri == &format!("{h}p/index.m3u8"),
            "variant URI {uri} for height {h}\n{text}"
        );
        let codecs = attr(a, "CODECS").unwrap_or_else(|| panic!("no CODECS in {a}"));
        assert!(
            codecs.contains("avc1."),
            "the live ladder is H.264: CODECS {codecs}"
        );
        assert_eq!(
            codecs.contains("mp4a.40.2"),
            audio,
            "CODECS {codecs} (the source {} audio)",
            if audio { "has" } else { "has no" }
        );
        assert!(
            attr(a, "BANDWIDTH").is_some_and(|b| b.parse::<u64>().is_ok_and(|b| b > 0)),
            "BANDWIDTH in {a}"
        );
        by_height.insert(h, a.clone());
    }
    assert_eq!(
        by_height.keys().rev().copied().collect::<Vec<_>>(),
        RUNGS,
        "one variant per rung in\n{text}"
    );
    let renditions = audio_renditions(&master);
    if audio {
        assert_eq!(renditions.len(), 1, "one audio rendition in\n{text}");
        let r = &renditions[0];
        assert_eq!(attr(r, "URI"), Some("audio/index.m3u8"), "{r}");
        let group = attr(r, "GROUP-ID").expect("GROUP-ID");
        for a in by_height.values() {
            assert_eq!(
                attr(a, "AUDIO"),
                Some(group),
                "variant {a} names the audio group"
            );
        }
    } else {
        assert!(
            renditions.is_empty(),
            "no audio rendition for a silent camera:\n{text}"
        );
    }

    // Media playlists: live playlists that ended well.
    let mut lists = BTreeMap::new();
    for uri in media_uris(&text) {
        let path = out.join(&uri);
        let p = LivePlaylist::load(&path);
        let body = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            p.target_duration,
            Some(TARGET),
            "{uri}: EXT-X-TARGETDURATION\n{body}"
        );
        assert!(
            p.segments.len() >= MIN_WINDOW,
            "{uri}: {} segments, the window must hold ≥ {MIN_WINDOW}\n{body}",
            p.segments.len()
        );
        assert!(p.endlist, "{uri}: no EXT-X-ENDLIST at the end\n{body}");
        for (i, s) in p.segments.iter().enumerate() {
            let pdt = s.pdt_ms.unwrap_or_else(|| {
                panic!("{uri}: {} has no EXT-X-PROGRAM-DATE-TIME\n{body}", s.uri)
            });
            assert!(
                pdt >= wall.0 - 3000 && pdt <= wall.1 + 3000,
                "{uri}: program date-time {:?} of {} is not within the run ({} … {} ms since the epoch)",
                s.pdt,
                s.uri,
                wall.0,
                wall.1
            );
            let inner = i + 1 < p.segments.len() && !p.segments[i + 1].discontinuity;
            if inner {
                assert!(
                    (1.9..=2.1).contains(&s.duration),
                    "{uri}: segment {} lasts {} s, not 2\n{body}",
                    s.uri,
                    s.duration
                );
            }
            let dir = path.parent().unwrap();
            assert!(
                dir.join(&s.uri).is_file(),
                "{uri}: {} is listed but missing",
                s.uri
            );
            assert!(
                dir.join(s.map.as_deref().expect("EXT-X-MAP")).is_file(),
                "{uri}: init segment {:?} missing",
                s.map
            );
        }
        lists.insert(uri, p);
    }

    // Rungs are aligned: the same segments (numbers, durations, times), each
    // starting with an IDR, and key frames at the same instants.
    let top = &lists[&rung_uri(&master, RUNGS[0])];
    for h in &RUNGS[1..] {
        let uri = rung_uri(&master, *h);
        let p = &lists[&uri];
        // Same numbers and discontinuities; durations and program
        // date-times equal up to how they are printed.
        let shape = |p: &LivePlaylist| {
            p.segments
                .iter()
                .map(|s| (s.seq, s.discontinuity))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(p),
            shape(top),
            "{uri} is not aligned with the top rung"
        );
        for (a, b) in p.segments.iter().zip(&top.segments) {
            let dpdt = (a.pdt_ms.unwrap() - b.pdt_ms.unwrap()).abs();
            assert!(
                (a.duration - b.duration).abs() <= 0.05 && dpdt <= 50,
                "{uri} segment {} ({} s at {:?}) is not aligned with the top rung's ({} s at {:?})",
                a.seq,
                a.duration,
                a.pdt,
                b.duration,
                b.pdt
            );
        }
    }
    let mut keyframes = BTreeMap::new();
    for h in RUNGS {
        let uri = rung_uri(&master, h);
        let path = out.join(&uri);
        let dir = path.parent().unwrap();
        for s in &lists[&uri].segments {
            let seg = dir.join(&s.uri);
            let init = dir.join(s.map.as_deref().unwrap());
            assert_segment_decodes(&init, &seg);
            let v = probe_segment(&init, &seg);
            let st = &v["streams"][0];
            assert_eq!(st["codec_name"], "h264", "{uri} {}", s.uri);
            assert_eq!(st["height"].as_u64(), Some(h), "{uri} {}: height", s.uri);
        }
        keyframes.insert(uri.clone(), keyframe_times(&path));
    }
    let first = keyframes.values().next().unwrap().clone();
    assert!(!first.is_empty(), "no key frames in the top rung");
    for (uri, k) in &keyframes {
        assert_eq!(
            k, &first,
            "key frames of {uri} differ from the top rung's: {keyframes:?}"
        );
    }
    if audio {
        let path = out.join("audio/index.m3u8");
        let dir = path.parent().unwrap();
        for s in &lists["audio/index.m3u8"].segments {
            let seg = dir.join(&s.uri);
            let init = dir.join(s.map.as_deref().unwrap());
            assert_segment_decodes(&init, &seg);
            let v = probe_segment(&init, &seg);
            assert_eq!(v["streams"][0]["codec_name"], "aac", "audio {}", s.uri);
        }
    }

    // The finished ladder, every rendition, decodes with no error.
    let o = run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&master)
            .args(["-map", "0", "-f", "null", "-"]),
        Duration::from_secs(300),
    );
    assert_eq!(
        (o.code, o.stderr.trim()),
        (Some(0), ""),
        "ffmpeg -v error -i {} -map 0 -f null - reported errors",
        master.display()
    );
    lists
}

/// A camera mount in, a live ladder out, read live by ffmpeg while it grows.
fn mount_gives_a_live_ladder(mount: &str, audio: bool) {
    let Some(rig) = rig(&format!("live ingest of /{mount}")) else {
        return;
    };
    let out = rig.out();
    let t0 = now_ms();
    let mut ingest = Ingest::start(
        &rig.server.url(mount),
        &out,
        &["--rungs", &rungs_arg(), "--duration", "14"],
    );
    ingest.wait_until(
        "a ladder with one segment per playlist",
        FIRST_SEGMENT,
        || ladder_has(&out, 1),
    );
    let poller = PlaylistPoller::start(&video_playlist(&out, 720), POLL);
    // A live player: ffmpeg's HLS demuxer reloading the playlists.
    let reader = LiveReader::start(&out.join("master.m3u8"), Some(10.0));
    let code = ingest.wait(Duration::from_secs(14) + WIND_DOWN);
    assert_eq!(
        code,
        Some(0),
        "ingest-rtsp --duration 14 must end with status 0; its output:\n{}",
        ingest.output()
    );
    let t1 = now_ms();
    let r = reader.wait(Duration::from_secs(120));
    let snaps = poller.finish();
    let h = check_history("720 rung", &snaps, TARGET, MIN_WINDOW);
    assert_eq!(
        h.discontinuities_total, 0,
        "a camera that never dropped gives no discontinuity"
    );

    assert_eq!(
        (r.code, r.stderr.trim()),
        (Some(0), ""),
        "ffmpeg reading the live master playlist reported errors"
    );
    let fps = 30.0;
    assert!(
        r.frames as f64 / fps >= 8.0,
        "ffmpeg read only {} frames ({:.1} s at {fps} fps) of the live stream; want ≥ 8 s",
        r.frames,
        r.frames as f64 / fps
    );

    check_ladder(&out, audio, (t0, t1));
}

#[test]
fn h264_camera_gives_a_live_ladder() {
    mount_gives_a_live_ladder("h264", false);
}

#[test]
fn h265_camera_gives_an_h264_live_ladder() {
    mount_gives_a_live_ladder("h265", false);
}

#[test]
fn h264_with_g711_audio_gives_a_live_ladder_with_aac() {
    mount_gives_a_live_ladder("h264-pcma", true);
}

#[test]
fn h264_with_aac_audio_gives_a_live_ladder() {
    mount_gives_a_live_ladder("h264-aac", true);
}

/// Segments from `first_seq` on (in the last playlist that lists them):
/// each decodes on its own with its init segment, in every rung.
fn assert_segments_from_decode(out: &Path, first_seq: u64) -> usize {
    let mut n = 0;
    for h in RUNGS {
        let path = video_playlist(out, h);
        let p = LivePlaylist::load(&path);
        let dir = path.parent().unwrap();
        let after: Vec<_> = p.segments.iter().filter(|s| s.seq >= first_seq).collect();
        assert!(
            !after.is_empty(),
            "{h} rung: no segment ≥ {first_seq} in the final playlist:\n{}",
            std::fs::read_to_string(&path).unwrap()
        );
        for s in &after {
            assert_segment_decodes(&dir.join(s.map.as_deref().unwrap()), &dir.join(&s.uri));
        }
        n = after.len();
    }
    n
}

#[test]
fn camera_killed_and_restarted_gives_one_discontinuity_and_the_stream_goes_on() {
    let Some(mut rig) = rig("the camera-drop test") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264"),
        &out,
        &["--rungs", &rungs_arg(), "--duration", "40"],
    );
    ingest.wait_until(
        "a ladder with one segment per playlist",
        FIRST_SEGMENT,
        || ladder_has(&out, 1),
    );
    let poller = PlaylistPoller::start(&video_playlist(&out, 720), POLL);
    // A player that keeps polling through the drop, until EXT-X-ENDLIST.
    let reader = LiveReader::start(&out.join("master.m3u8"), None);

    sleep_until(ingest.started + Duration::from_secs(10));
    let before = LivePlaylist::load(&video_playlist(&out, 720));
    let killed_ms = now_ms();
    rig.server.kill9();
    std::thread::sleep(Duration::from_secs(4));
    rig.server.restart();
    let restarted_ms = now_ms();

    let code = ingest.wait(Duration::from_secs(40) + WIND_DOWN);
    assert_eq!(
        code,
        Some(0),
        "ingest-rtsp must ride out the camera drop and end with status 0; its output:\n{}",
        ingest.output()
    );
    let r = reader.wait(Duration::from_secs(120));
    let snaps = poller.finish();
    let h = check_history("720 rung", &snaps, TARGET, MIN_WINDOW);

    // Exactly one discontinuity, after the drop, with the clock re-anchored.
    assert_eq!(
        (h.discontinuities_total, h.discontinuity_seqs.len()),
        (1, 1),
        "one EXT-X-DISCONTINUITY for one camera drop (seen before segments {:?}); \
         the last playlist:\n{}\ningest output:\n{}",
        h.discontinuity_seqs,
        snaps.last().unwrap().text,
        ingest.output()
    );
    let d = *h.discontinuity_seqs.iter().next().unwrap();
    assert!(
        before.last_seq().is_some_and(|l| d > l),
        "the discontinuity (before segment {d}) comes after what was written before the kill \
         (last {:?})",
        before.last_seq()
    );
    let seg = &h.segments[&d];
    let pdt = seg.pdt_ms.unwrap();
    assert!(
        pdt >= killed_ms,
        "the first segment after the reconnect has program date-time {:?}, before the camera \
         was killed (re-anchor it to the wall clock)",
        seg.pdt
    );
    if let Some(prev) = h.segments.get(&(d - 1)) {
        let gap = pdt - (prev.pdt_ms.unwrap() + (prev.duration * 1000.0).round() as i64);
        assert!(
            gap >= 2000,
            "the camera was away ≥ 4 s but program date-time shows a gap of {gap} ms"
        );
    }
    let after = h.segments.range(d..).count();
    assert!(
        after >= 3,
        "only {after} segments after the reconnect (camera back at {} ms, run ended at {} ms)",
        restarted_ms,
        snaps.last().unwrap().wall_ms
    );
    assert_segments_from_decode(&out, d);
    // Every rung shows the same single discontinuity.
    for hgt in RUNGS {
        let p = LivePlaylist::load(&video_playlist(&out, hgt));
        assert_eq!(
            p.discontinuities_total(),
            1,
            "{hgt} rung: discontinuities since the start"
        );
    }

    // The player that kept polling went on after the drop.
    let pre = h.segments.range(..d).count() as u64;
    assert_eq!(r.code, Some(0), "the polling ffmpeg failed:\n{}", r.stderr);
    assert!(
        r.frames >= (pre + 2) * 54,
        "the polling ffmpeg decoded {} frames: it stopped at the drop ({pre} segments before \
         it, {after} after); its errors:\n{}",
        r.frames,
        r.stderr
    );
}

#[test]
fn frozen_camera_is_caught_by_the_watchdog_and_the_stream_recovers() {
    let Some(mut rig) = rig("the frozen-camera test") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264"),
        &out,
        &[
            "--rungs",
            &rungs_arg(),
            "--duration",
            "30",
            "--watchdog-secs",
            "4",
        ],
    );
    ingest.wait_until(
        "a ladder with one segment per playlist",
        FIRST_SEGMENT,
        || ladder_has(&out, 1),
    );
    let v720 = video_playlist(&out, 720);
    let poller = PlaylistPoller::start(&v720, POLL);
    sleep_until(ingest.started + Duration::from_secs(8));

    let is_watchdog = |l: &str| {
        let l = l.to_lowercase();
        l.contains("watchdog") || l.contains("stall")
    };
    let early: Vec<_> = ingest
        .lines()
        .into_iter()
        .filter(|l| is_watchdog(&l.text))
        .collect();
    assert!(
        early.is_empty(),
        "the watchdog fired while the camera was streaming: {early:?}\n{}",
        ingest.output()
    );
    rig.server.freeze();
    let frozen = Instant::now();
    let fired = ingest.wait_line(frozen, frozen + Duration::from_secs(4 + 3), is_watchdog);
    let last_before = LivePlaylist::load(&v720).last_seq().unwrap_or(0);
    rig.server.thaw();
    let Some(fired) = fired else {
        panic!(
            "no line matching /watchdog|stall/i within 7 s of SIGSTOP with --watchdog-secs 4; \
             the ingester's output:\n{}",
            ingest.output()
        );
    };
    let after = fired.at.duration_since(frozen);
    assert!(
        after >= Duration::from_secs(2),
        "the watchdog fired {after:?} after the freeze, too early for --watchdog-secs 4: {}",
        fired.text
    );
    eprintln!("watchdog fired {after:?} after SIGSTOP: {}", fired.text);

    // After SIGCONT: reconnected, new segments, one discontinuity.
    ingest.wait_until(
        "two new segments after SIGCONT",
        Duration::from_secs(40),
        || {
            LivePlaylist::read(&v720)
                .ok()
                .and_then(|p| p.last_seq())
                .is_some_and(|l| l >= last_before + 2)
        },
    );
    let code = ingest.wait(Duration::from_secs(30) + WIND_DOWN);
    assert_eq!(
        code,
        Some(0),
        "ingest-rtsp must recover from a frozen camera and end with status 0; its output:\n{}",
        ingest.output()
    );
    let snaps = poller.finish();
    let h = check_history("720 rung", &snaps, TARGET, MIN_WINDOW);
    assert_eq!(
        h.discontinuities_total,
        1,
        "one EXT-X-DISCONTINUITY for one freeze; last playlist:\n{}\noutput:\n{}",
        snaps.last().unwrap().text,
        ingest.output()
    );
    let d = *h.discontinuity_seqs.iter().next().unwrap();
    assert!(d > last_before, "the discontinuity comes after the freeze");
    let n = h.segments.range(d..).count();
    assert!(n >= 2, "only {n} segments after the recovery");
    assert_segments_from_decode(&out, d);
}

#[test]
fn restarted_ingester_continues_the_sequence_after_a_discontinuity() {
    let Some(rig) = rig("the ingester-restart test") else {
        return;
    };
    let out = rig.out();
    let args = ["--rungs", &rungs_arg(), "--duration", "8"];
    let url = rig.server.url("h264");

    let mut first = Ingest::start(&url, &out, &args);
    let code = first.wait(Duration::from_secs(8) + FIRST_SEGMENT + WIND_DOWN);
    assert_eq!(code, Some(0), "first run; its output:\n{}", first.output());
    let state = out.join("live.json");
    let json = std::fs::read_to_string(&state).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the state a restart continues from)",
            state.display()
        )
    });
    serde_json::from_str::<serde_json::Value>(&json)
        .unwrap_or_else(|e| panic!("live.json is not JSON ({e}):\n{json}"));
    let mut p1 = BTreeMap::new();
    let mut bytes1 = BTreeMap::new();
    for h in RUNGS {
        let path = video_playlist(&out, h);
        let p = LivePlaylist::load(&path);
        assert!(p.endlist, "{h} rung: the first run ends its playlist");
        assert!(
            !p.segments.is_empty(),
            "{h} rung: the first run wrote segments"
        );
        for s in &p.segments {
            for uri in [s.uri.as_str(), s.map.as_deref().unwrap()] {
                let f = path.parent().unwrap().join(uri);
                bytes1.insert(f.clone(), std::fs::read(&f).unwrap());
            }
        }
        p1.insert(h, (p, std::fs::read_to_string(&path).unwrap()));
    }

    let poller = PlaylistPoller::start(&video_playlist(&out, 720), Duration::from_millis(200));
    let mut second = Ingest::start(&url, &out, &args);
    let code = second.wait(Duration::from_secs(8) + FIRST_SEGMENT + WIND_DOWN);
    assert_eq!(
        code,
        Some(0),
        "second run; its output:\n{}",
        second.output()
    );
    let snaps = poller.finish();

    let (old, old_text) = &p1[&720];
    let old_last = old.last_seq().unwrap();
    // The second run's versions of the playlist: from the first that differs
    // from the first run's last (it may rewrite the old window before its
    // first segment), and the first that has a segment of its own.
    let i = snaps
        .iter()
        .position(|s| &s.text != old_text)
        .unwrap_or_else(|| {
            panic!("the second run never rewrote the 720 rung's playlist:\n{old_text}")
        });
    let rewritten = LivePlaylist::parse(&snaps[i].text)
        .unwrap_or_else(|e| panic!("second run's first playlist: {e}:\n{}", snaps[i].text));
    assert!(
        rewritten.media_sequence >= old.media_sequence,
        "EXT-X-MEDIA-SEQUENCE went back across the restart\nfirst run's last:\n{old_text}\n\
         second run's first:\n{}",
        snaps[i].text
    );
    let j = (i..snaps.len())
        .find(|&j| {
            LivePlaylist::parse(&snaps[j].text)
                .is_ok_and(|p| p.last_seq().is_some_and(|l| l > old_last))
        })
        .unwrap_or_else(|| {
            panic!(
                "no segment numbered past the first run's last ({old_last}) in the second run; \
                 its last playlist:\n{}",
                snaps.last().unwrap().text
            )
        });
    let new = LivePlaylist::parse(&snaps[j].text).unwrap();
    let shown = format!(
        "first run's last:\n{old_text}\nsecond run's first with a new segment:\n{}",
        snaps[j].text
    );
    assert!(
        !new.endlist,
        "the restarted stream is live again (no ENDLIST)\n{shown}"
    );
    let fresh: Vec<_> = new.segments.iter().filter(|s| s.seq > old_last).collect();
    assert!(
        new.discontinuities_total() > old.discontinuities_total(),
        "a discontinuity must separate the two runs\n{shown}"
    );
    if new.segments.iter().any(|s| s.seq <= old_last) {
        assert!(
            fresh[0].discontinuity,
            "the first segment of the second run must carry EXT-X-DISCONTINUITY\n{shown}"
        );
    }
    for s in &new.segments {
        if let Some(o) = old.segments.iter().find(|o| o.seq == s.seq) {
            assert_eq!(
                o.uri, s.uri,
                "segment {} renamed across the restart\n{shown}",
                s.seq
            );
        }
    }
    check_history("720 rung (second run)", &snaps[i..], TARGET, MIN_WINDOW);

    // A CDN caches segments and init segments forever: the second run
    // never rewrites a URI of the first.
    for (f, b) in &bytes1 {
        if let Ok(now) = std::fs::read(f) {
            assert!(
                &now == b,
                "{} was rewritten by the second run (segments are immutable)",
                f.display()
            );
        }
    }
    for h in RUNGS {
        let p = LivePlaylist::load(&video_playlist(&out, h));
        let (o, _) = &p1[&h];
        assert!(p.endlist, "{h} rung: the second run ends its playlist");
        assert!(
            p.last_seq().unwrap() > o.last_seq().unwrap(),
            "{h} rung grew"
        );
        assert_eq!(
            p.discontinuities_total(),
            o.discontinuities_total() + 1,
            "{h} rung: one more discontinuity after the restart"
        );
    }
    assert_segments_from_decode(&out, old_last + 1);
}

#[test]
fn sigterm_ends_the_playlists_and_exits_0() {
    let Some(rig) = rig("the SIGTERM test") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264-pcma"),
        &out,
        &["--rungs", &rungs_arg()],
    );
    ingest.wait_until("two segments per playlist", FIRST_SEGMENT, || {
        ladder_has(&out, 2)
    });
    let code = ingest.signal_and_wait("TERM", Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "SIGTERM: exit 0; output:\n{}",
        ingest.output()
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    for uri in media_uris(&master) {
        let p = LivePlaylist::load(&out.join(&uri));
        assert!(p.endlist, "{uri}: EXT-X-ENDLIST after SIGTERM");
    }
}

#[test]
fn hls_js_in_headless_chromium_plays_the_live_stream() {
    let player = manifest_dir().join("../player");
    for program in ["chromium", "node"] {
        if !e2e::server::have(program) {
            assert!(
                !e2e::rtsp::under_ci(),
                "{program} is required in CI (scripts/setup installs it) for live playback"
            );
            eprintln!("SKIPPED: {program} is not installed; run scripts/setup");
            return;
        }
    }
    let hls_js = player.join("node_modules/hls.js/dist/hls.min.js");
    if !hls_js.is_file() || !player.join("node_modules/playwright-core").is_dir() {
        assert!(
            !e2e::rtsp::under_ci(),
            "player/node_modules missing in CI (scripts/setup runs npm ci)"
        );
        eprintln!("SKIPPED: run `npm ci --prefix player` first");
        return;
    }
    let Some(rig) = rig("live playback in Chromium") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264-aac"),
        &out,
        &["--rungs", &rungs_arg(), "--duration", "90"],
    );
    // hls.js starts 3 target durations behind the live edge.
    ingest.wait_until("three segments per playlist", FIRST_SEGMENT, || {
        ladder_has(&out, 3)
    });
    let web = StaticServer::start(vec![
        ("/".into(), manifest_dir().join("rtsp/live.html")),
        ("/hls.min.js".into(), hls_js),
        ("/live/".into(), out.clone()),
    ]);
    let shots = e2e::appliance_bin().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("hlsjs-live.png");
    let _ = std::fs::remove_file(&shot);
    let o = run(
        Command::new("node")
            .arg(player.join("play.mjs"))
            .args([
                "--url",
                &format!("{}/", web.base),
                "--seconds",
                "10",
                "--timeout",
                "70",
            ])
            .arg("--screenshot")
            .arg(&shot),
        Duration::from_secs(150),
    );
    let line = o.stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("play.mjs printed no JSON ({e}): {}\n{}", o.stdout, o.stderr));
    assert_eq!(report["engine"], "hls.js", "{report:#}");
    assert!(report["fatal"].is_null(), "{report:#}");
    assert!(
        report["currentTime"].as_f64().unwrap_or(0.0) >= 10.0,
        "hls.js played < 10 s of the live stream: {report:#}"
    );
    assert_eq!(o.code, Some(0), "{report:#}\n{}", o.stderr);
    assert_eq!(
        report["levels"].as_array().map(Vec::len),
        Some(RUNGS.len()),
        "hls.js sees the three rungs: {report:#}"
    );
    eprintln!("screenshot: {}", shot.display());

    // SIGINT ends it like SIGTERM.
    let code = ingest.signal_and_wait("INT", Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "SIGINT: exit 0; output:\n{}",
        ingest.output()
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    let uris: BTreeSet<String> = media_uris(&master).into_iter().collect();
    for uri in &uris {
        assert!(
            LivePlaylist::load(&out.join(uri)).endlist,
            "{uri}: EXT-X-ENDLIST after SIGINT"
        );
    }
}
