//! Verification of a candidate the index found: Chromaprint's own matcher
//! (`rusty_chromaprint::match_fingerprints`) aligns the two fingerprints
//! and scores the common stretch by the bits that differ per item (0 for
//! the same sound, ~16 for unrelated sound). A match is that stretch when
//! it is long enough and similar enough; its confidence is
//! `1 − bits/16`, so 1 is the same bits and 0 is chance.
//!
//! Audio with too little in it to tell apart (silence, a steady tone, a
//! hum: most items alike) is never matched nor made a sound.

use media::fingerprint::{config, item_secs};

/// The least common stretch that counts, in seconds (shorter audio
/// counts when at least half of it matches).
pub const MIN_MATCH_SECS: f64 = 5.0;
/// The least confidence that counts (at most 8 of 32 bits differ on
/// average over the stretch).
pub const MIN_CONFIDENCE: f64 = 0.5;
/// A fingerprint needs at least this many items (≈ 3 s)…
const MIN_ITEMS: usize = 24;
/// …and this share of its items' keys distinct.
const MIN_DISTINCT_SHARE: f64 = 0.1;

/// Where two fingerprints share sound.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Where the stretch starts in the query (the upload), seconds.
    pub query_secs: f64,
    /// Where it starts in the other (the sound or reference), seconds.
    pub other_secs: f64,
    pub duration_secs: f64,
    /// 0–1.
    pub confidence: f64,
}

/// Whether `items` hold enough variety to be told apart from other audio.
pub fn distinctive(items: &[u32]) -> bool {
    if items.len() < MIN_ITEMS {
        return false;
    }
    let mut keys: Vec<u32> = items.iter().map(|i| i >> 12).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len() as f64 >= items.len() as f64 * MIN_DISTINCT_SHARE
}

/// The best stretch `query` shares with `other`, if it counts as a match.
pub fn verify(query: &[u32], other: &[u32]) -> Option<Match> {
    if !distinctive(query) || !distinctive(other) {
        return None;
    }
    let segments = rusty_chromaprint::match_fingerprints(query, other, &config()).ok()?;
    let item = item_secs();
    // Segments of the one alignment the matcher picked; together they are
    // the common stretch (merged where the score stays alike).
    let first = segments.first()?;
    let items: usize = segments.iter().map(|s| s.items_count).sum();
    let bits = segments
        .iter()
        .map(|s| s.score * s.items_count as f64)
        .sum::<f64>()
        / items.max(1) as f64;
    let m = Match {
        query_secs: first.offset1 as f64 * item,
        other_secs: first.offset2 as f64 * item,
        duration_secs: items as f64 * item,
        confidence: (1.0 - bits / 16.0).clamp(0.0, 1.0),
    };
    let shorter = query.len().min(other.len()) as f64 * item;
    let long_enough = m.duration_secs >= MIN_MATCH_SECS.min(shorter * 0.5);
    (long_enough && m.confidence >= MIN_CONFIDENCE).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sounds::index::tests_support::walk;

    #[test]
    fn the_same_items_shifted_match_with_their_offset() {
        let a = walk(5, 400);
        // b starts 30 items into a, with a low bit flipped in every item.
        let b: Vec<u32> = a[30..330].iter().map(|x| x ^ 1).collect();
        let m = verify(&b, &a).expect("a match");
        assert!((m.other_secs - 30.0 * item_secs()).abs() < 0.01, "{m:?}");
        assert!(m.query_secs < 0.01, "{m:?}");
        assert!(m.confidence > 0.9, "{m:?}");
        assert!(m.duration_secs > 30.0, "{m:?}");
    }

    #[test]
    fn unrelated_items_do_not_match() {
        assert_eq!(verify(&walk(1, 300), &walk(2, 300)), None);
    }

    /// Song `seed` (chords changing every quarter second), made and
    /// degraded by the ffmpeg CLI, fingerprinted as uploads are.
    fn song(dir: &std::path::Path, name: &str, seed: u32, extra: &[&str]) -> Vec<u32> {
        // A pseudo-random note (0–11) per quarter second, its sequence
        // picked by the seed (no two seeds' melodies are shifts of each other).
        let note = format!(
            "mod(floor(abs(sin(floor(t*4)*{:.3}))*1000),12)",
            1.37 + 0.71 * f64::from(seed)
        );
        let f = |shift: u32| format!("440*pow(2,({note}+{shift})/12)");
        let expr = format!(
            "0.3*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})",
            f(0),
            f(4),
            f(7)
        );
        let out = dir.join(name);
        let ok = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("aevalsrc='{expr}':s=44100:d=20"))
            .args(extra)
            .arg(&out)
            .status()
            .expect("ffmpeg runs")
            .success();
        assert!(ok);
        media::fingerprint_file(&out).unwrap().unwrap().items
    }

    #[test]
    fn a_degraded_song_matches_and_other_audio_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let original = song(d, "a.wav", 1, &[]);
        // Another bit rate and codec, 3 dB quieter, 2 s later.
        let degraded = song(
            d,
            "b.mp3",
            1,
            &[
                "-af",
                "volume=-3dB,adelay=2000|2000",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "64k",
            ],
        );
        let m = verify(&degraded, &original).expect("the same song");
        assert!((m.query_secs - 2.0).abs() < 0.3, "{m:?}");
        assert!(m.other_secs < 0.2, "{m:?}");
        assert!(m.confidence > 0.8, "{m:?}");
        assert!(m.duration_secs > 15.0, "{m:?}");
        // The index finds it among others at the same offset.
        let mut index = crate::sounds::index::Index::new();
        let other = song(d, "c.wav", 7, &[]);
        index.insert(&other);
        index.insert(&original);
        let found = index.candidates(&degraded, 8);
        assert_eq!(found[0].entry, 1, "{found:?}");
        assert!((found[0].offset + 16).abs() <= 1, "{found:?}");
        // An unrelated song does not match; a steady tone is not distinctive.
        assert_eq!(verify(&degraded, &other), None);
        let tone = d.join("tone.wav");
        assert!(std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:duration=20")
            .arg(&tone)
            .status()
            .unwrap()
            .success());
        let tone = media::fingerprint_file(&tone).unwrap().unwrap().items;
        assert!(!distinctive(&tone), "{tone:x?}");
    }

    #[test]
    fn steady_audio_is_not_distinctive() {
        assert!(!distinctive(&[0x1234_5678; 300]));
        assert!(!distinctive(&walk(3, 10)));
        assert!(distinctive(&walk(3, 300)));
        assert_eq!(verify(&[7; 300], &[7; 300]), None);
    }
}
