//! What the live tests share: the rig (a temp dir, the RTSP server on a
//! free port, and the lock that runs the tests one at a time), where the
//! ladder's playlists are, and every check a finished live ladder must pass
//! (variants, renditions, live media playlists that ended well, rungs
//! aligned segment for segment and key frame for key frame, all decoding).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use e2e::rtsp::{
    assert_segment_decodes, probe_segment, rtsp_server_available, LivePlaylist, RtspServer,
};
use e2e::{attr, keyframe_times, run, variants};

use crate::{MIN_WINDOW, RUNGS, TARGET};

static SERIAL: Mutex<()> = Mutex::new(());

/// A temp dir, the RTSP server on a free port, and the lock that keeps
/// the live tests from sharing the CPUs.
pub(crate) struct Rig {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    pub(crate) server: RtspServer,
}

impl Rig {
    pub(crate) fn out(&self) -> PathBuf {
        self.dir.path().join("live")
    }
}

pub(crate) fn rig(what: &str) -> Option<Rig> {
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

pub(crate) fn rungs_arg() -> String {
    RUNGS.map(|h| h.to_string()).join(",")
}

/// The media playlist of the rung `h` pixels high, as the master names it.
pub(crate) fn video_playlist(out: &Path, h: u64) -> PathBuf {
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
pub(crate) fn ladder_has(out: &Path, n: usize) -> bool {
    let master = out.join("master.m3u8");
    let Ok(text) = std::fs::read_to_string(&master) else {
        return false;
    };
    let uris = media_uris(&text);
    !uris.is_empty() && uris.iter().all(|u| segments_now(&out.join(u)) >= n)
}

/// URIs of the media playlists a master names (variants and renditions).
pub(crate) fn media_uris(master: &str) -> Vec<String> {
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

/// Everything a finished (EXT-X-ENDLIST) live ladder must be. `wall` is
/// the wall-clock span (ms) the run happened in. Returns the final media
/// playlists by URI.
pub(crate) fn check_ladder(
    out: &Path,
    audio: bool,
    wall: (i64, i64),
) -> BTreeMap<String, LivePlaylist> {
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
