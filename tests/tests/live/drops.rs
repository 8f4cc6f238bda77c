//! The stream through trouble: a camera killed (`kill -9`) and restarted, a
//! camera frozen (`SIGSTOP`) until the watchdog notices, an ingester run
//! twice on the same directory. Each gives exactly one discontinuity, the
//! numbering and program date-times carry on, and the segments after it
//! decode.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::rtsp::{
    assert_segment_decodes, check_history, now_ms, Ingest, LivePlaylist, LiveReader, PlaylistPoller,
};

use crate::ladder::{ladder_has, rig, rungs_arg, video_playlist};
use crate::{FIRST_SEGMENT, MIN_WINDOW, POLL, RUNGS, TARGET, WIND_DOWN};

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
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
