//! A live playlist over time: a poller that rereads it like a live player
//! and keeps every version, and the invariants RFC 8216 asks of those
//! versions from one reload to the next (§6.2.2, §6.3.4).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::playlist::{now_ms, LivePlaylist, LiveSegment};

/// One read of a playlist by the poller.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Wall clock, ms since the epoch.
    pub wall_ms: i64,
    pub text: String,
}

/// Reads a playlist every `every`, like a live player reloading it, and
/// keeps every version it saw.
pub struct PlaylistPoller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Snapshot>>>,
}

impl PlaylistPoller {
    pub fn start(path: &Path, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || {
            let mut snaps = Vec::new();
            loop {
                let done = flag.load(Ordering::SeqCst);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    snaps.push(Snapshot {
                        at: Instant::now(),
                        wall_ms: now_ms(),
                        text,
                    });
                }
                if done {
                    return snaps;
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Takes one last read and returns every snapshot.
    pub fn finish(mut self) -> Vec<Snapshot> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("poller thread")
    }
}

impl Drop for PlaylistPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What a playlist's history adds up to.
#[derive(Debug, Default)]
pub struct History {
    pub playlists: Vec<(Instant, i64, LivePlaylist)>,
    /// Media sequence numbers of the segments seen with EXT-X-DISCONTINUITY.
    pub discontinuity_seqs: BTreeSet<u64>,
    /// Discontinuities since the start, per the last playlist.
    pub discontinuities_total: u64,
    /// Every segment ever listed, by media sequence number.
    pub segments: BTreeMap<u64, LiveSegment>,
}

/// Checks every invariant RFC 8216 §6.2.2 asks of a live playlist across
/// reloads, over the snapshots of one run of the ingester: each parses (was
/// replaced atomically); the target duration is `target` every time; the
/// media and discontinuity sequences never go back, and the latter counts
/// exactly the discontinuities that slid out; a media sequence number always
/// names the same URI; once the window has `min_window` segments it never
/// has fewer; every segment has a program date-time that advances by the
/// segment's duration except across a discontinuity; every discontinuity
/// carries its own EXT-X-MAP; no segment is longer than the target; once
/// EXT-X-ENDLIST appears the playlist no longer changes.
pub fn check_history(name: &str, snaps: &[Snapshot], target: u64, min_window: usize) -> History {
    let mut h = History::default();
    let dump = |i: usize| -> String {
        let lo = i.saturating_sub(1);
        snaps[lo..=i]
            .iter()
            .map(|s| format!("--- snapshot at wall {} ms:\n{}", s.wall_ms, s.text))
            .collect()
    };
    assert!(!snaps.is_empty(), "{name}: the playlist was never seen");
    let mut reached_window = false;
    let mut ended: Option<String> = None;
    for (i, s) in snaps.iter().enumerate() {
        let p = LivePlaylist::parse(&s.text).unwrap_or_else(|e| {
            panic!(
                "{name}: snapshot {i} is not a valid playlist: {e}:\n{}",
                s.text
            )
        });
        if let Some(end) = &ended {
            assert_eq!(
                &s.text,
                end,
                "{name}: the playlist changed after EXT-X-ENDLIST:\n{}",
                dump(i)
            );
        }
        if p.endlist {
            ended = Some(s.text.clone());
        }
        assert_eq!(
            p.target_duration,
            Some(target),
            "{name}: EXT-X-TARGETDURATION must be {target} on every reload:\n{}",
            dump(i)
        );
        if p.segments.len() >= min_window {
            reached_window = true;
        } else {
            assert!(
                !reached_window,
                "{name}: the window shrank below {min_window} segments:\n{}",
                dump(i)
            );
        }
        for (k, seg) in p.segments.iter().enumerate() {
            assert!(
                seg.pdt_ms.is_some(),
                "{name}: segment {} has no (parsable) EXT-X-PROGRAM-DATE-TIME ({:?}):\n{}",
                seg.uri,
                seg.pdt,
                s.text
            );
            assert!(
                seg.duration > 0.0 && seg.duration.round() as u64 <= target,
                "{name}: EXTINF {} of {} exceeds the target duration {target}:\n{}",
                seg.duration,
                seg.uri,
                s.text
            );
            assert!(
                seg.map.is_some(),
                "{name}: {} has no EXT-X-MAP:\n{}",
                seg.uri,
                s.text
            );
            if seg.discontinuity {
                assert!(
                    seg.map_here,
                    "{name}: the discontinuity before {} has no EXT-X-MAP of its own:\n{}",
                    seg.uri, s.text
                );
                h.discontinuity_seqs.insert(seg.seq);
            }
            if k > 0 {
                let prev = &p.segments[k - 1];
                let (a, b) = (prev.pdt_ms.unwrap(), seg.pdt_ms.unwrap());
                let expected = a + (prev.duration * 1000.0).round() as i64;
                if seg.discontinuity {
                    assert!(
                        b >= expected - 250,
                        "{name}: program date-time goes back across the discontinuity before {}:\n{}",
                        seg.uri,
                        s.text
                    );
                } else {
                    assert!(
                        (b - expected).abs() <= 250,
                        "{name}: program date-time of {} is {} ms off the previous one plus its \
                         duration (no discontinuity between them):\n{}",
                        seg.uri,
                        b - expected,
                        s.text
                    );
                }
            }
            if let Some(old) = h.segments.get(&seg.seq) {
                assert_eq!(
                    (&old.uri, old.discontinuity, &old.pdt),
                    (&seg.uri, seg.discontinuity, &seg.pdt),
                    "{name}: media sequence number {} changed meaning between reloads:\n{}",
                    seg.seq,
                    dump(i)
                );
            }
            h.segments.insert(seg.seq, seg.clone());
        }
        if let Some((_, _, prev)) = h.playlists.last() {
            assert!(
                p.media_sequence >= prev.media_sequence,
                "{name}: EXT-X-MEDIA-SEQUENCE went back from {} to {}:\n{}",
                prev.media_sequence,
                p.media_sequence,
                dump(i)
            );
            assert!(
                p.discontinuity_sequence >= prev.discontinuity_sequence,
                "{name}: EXT-X-DISCONTINUITY-SEQUENCE went back:\n{}",
                dump(i)
            );
            // The segments that slid out since the previous reload, if it
            // listed all of them: the discontinuity sequence grows by the
            // number of discontinuity tags among them.
            let removed: Vec<&LiveSegment> = prev
                .segments
                .iter()
                .filter(|s| s.seq < p.media_sequence)
                .collect();
            if p.media_sequence <= prev.media_sequence + prev.segments.len() as u64 {
                let tags = removed.iter().filter(|s| s.discontinuity).count() as u64;
                assert_eq!(
                    p.discontinuity_sequence - prev.discontinuity_sequence,
                    tags,
                    "{name}: EXT-X-DISCONTINUITY-SEQUENCE must grow by the number of \
                     discontinuity tags that slid out ({tags}):\n{}",
                    dump(i)
                );
            }
            // Segments are only ever appended at the live edge.
            if let (Some(a), Some(b)) = (prev.last_seq(), p.last_seq()) {
                assert!(b >= a, "{name}: the last segment went back:\n{}", dump(i));
            }
        }
        h.playlists.push((s.at, s.wall_ms, p));
    }
    let last = &h.playlists.last().unwrap().2;
    h.discontinuities_total = last.discontinuities_total();
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-segment window over segments `first..first+3` of a stream with a
    /// discontinuity before segment 5 (a 4 s gap); `ds` is written as the
    /// discontinuity sequence.
    fn window(first: u64, ds: u64) -> Snapshot {
        let mut t = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{ds}\n"
        );
        for seq in first..first + 3 {
            let gap = if seq >= 5 { 4 } else { 0 };
            if seq == 5 {
                t.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if seq == first || seq == 5 {
                t.push_str(&format!(
                    "#EXT-X-MAP:URI=\"init-{}.mp4\"\n",
                    u64::from(seq >= 5)
                ));
            }
            let s = seq * 2 + gap;
            t.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:{s:02}.000Z\n#EXTINF:2.0,\n{seq}.m4s\n"
            ));
        }
        Snapshot {
            at: Instant::now(),
            wall_ms: 0,
            text: t,
        }
    }

    #[test]
    fn a_window_sliding_over_a_discontinuity_keeps_the_invariants() {
        let snaps: Vec<_> = (0..8)
            .map(|first| window(first, u64::from(first > 5)))
            .collect();
        let h = check_history("test", &snaps, 2, 3);
        assert_eq!(h.discontinuities_total, 1);
        assert_eq!(h.discontinuity_seqs, BTreeSet::from([5]));
        assert_eq!(h.segments.len(), 10);
    }

    #[test]
    #[should_panic(expected = "must grow by the number of discontinuity tags")]
    fn a_discontinuity_sliding_out_must_bump_the_discontinuity_sequence() {
        let snaps: Vec<_> = (0..8).map(|first| window(first, 0)).collect();
        check_history("test", &snaps, 2, 3);
    }

    #[test]
    #[should_panic(expected = "EXT-X-MEDIA-SEQUENCE went back")]
    fn the_media_sequence_must_not_go_back() {
        check_history("test", &[window(3, 0), window(2, 0)], 2, 3);
    }
}
