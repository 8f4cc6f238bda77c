//! Engagement events: what the spool holds, the shipper delivers and the
//! analytics stores roll up. One shape for every kind so that one table and
//! one spool carry them all.

use std::collections::HashSet;
use std::hash::BuildHasher;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Watch,
    Like,
    Unlike,
    Save,
    Unsave,
    Share,
    Comment,
    /// A video shown on a feed page. Not a view: no rollup, counter,
    /// trending or the feed engine's statistics sees it; the analytics
    /// stores keep impressions in a table of their own.
    Impression,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watch => "watch",
            Self::Like => "like",
            Self::Unlike => "unlike",
            Self::Save => "save",
            Self::Unsave => "unsave",
            Self::Share => "share",
            Self::Comment => "comment",
            Self::Impression => "impression",
        }
    }

    /// The change this event makes to (likes, comments, shares, saves).
    pub fn engagement(self) -> [i64; 4] {
        match self {
            Self::Watch | Self::Impression => [0, 0, 0, 0],
            Self::Like => [1, 0, 0, 0],
            Self::Unlike => [-1, 0, 0, 0],
            Self::Comment => [0, 1, 0, 0],
            Self::Share => [0, 0, 1, 0],
            Self::Save => [0, 0, 0, 1],
            Self::Unsave => [0, 0, 0, -1],
        }
    }
}

/// One event. Short field names: millions of these sit in the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; client ids are scoped `user:clientId`.
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "k")]
    pub kind: Kind,
    /// When it happened, ms (client clock for watches, clamped).
    #[serde(rename = "t")]
    pub ts: i64,
    /// When the box accepted it, ms (shipping lag is measured from here).
    #[serde(rename = "r")]
    pub received: i64,
    #[serde(rename = "v")]
    pub video: String,
    #[serde(rename = "c")]
    pub creator: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "w", default)]
    pub watch_ms: u32,
    #[serde(rename = "d", default)]
    pub duration_ms: u32,
    #[serde(rename = "cp", default)]
    pub completed: bool,
    #[serde(rename = "l", default)]
    pub liked: bool,
    #[serde(rename = "s", default)]
    pub shared: bool,
    /// Traffic source of a watch (`fyp`, `following`, …); empty otherwise.
    #[serde(rename = "src", default)]
    pub source: String,
    /// Channel of a share; empty otherwise.
    #[serde(rename = "ch", default)]
    pub channel: String,
    /// What an impression showed, and where; absent for every other kind.
    #[serde(rename = "im", default, skip_serializing_if = "Option::is_none")]
    pub shown: Option<Shown>,
}

/// Where and how a video was shown (an impression). `Event::source` holds
/// the page's source (`personalized`, `cold_start`, `following`,
/// `trending_fallback`, or `following_fallback` for a following request
/// served from trending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// 0-based position in the viewer's feed session, page after page.
    #[serde(rename = "p")]
    pub position: u32,
    /// The ranker that ordered the page: `model`, `formula`, or `none` (a
    /// following page or a fallback).
    #[serde(rename = "rk")]
    pub ranker: String,
    /// The viewer's side of the experiment: `control` or `candidate`.
    #[serde(rename = "va")]
    pub variant: String,
    /// The experiment the page belongs to; empty: none (no experiment ran,
    /// or a following page: only for-you pages are in one).
    #[serde(rename = "x", default)]
    pub experiment: String,
}

impl Event {
    /// An engagement action (not a watch) taken now.
    pub fn action(kind: Kind, id: String, video: &str, creator: &str, user: &str) -> Self {
        let now = crate::store::catalog::now_ms();
        Self {
            id,
            kind,
            ts: now,
            received: now,
            video: video.to_owned(),
            creator: creator.to_owned(),
            user: user.to_owned(),
            watch_ms: 0,
            duration_ms: 0,
            completed: false,
            liked: false,
            shared: false,
            source: String::new(),
            channel: String::new(),
            shown: None,
        }
    }

    /// `video` shown to `user` on a feed page from `source` at `ts` (ms).
    pub fn impression(
        id: String,
        user: &str,
        video: &str,
        creator: &str,
        ts: i64,
        source: &str,
        shown: Shown,
    ) -> Self {
        Self {
            id,
            kind: Kind::Impression,
            ts,
            received: ts,
            video: video.to_owned(),
            creator: creator.to_owned(),
            user: user.to_owned(),
            watch_ms: 0,
            duration_ms: 0,
            completed: false,
            liked: false,
            shared: false,
            source: source.to_owned(),
            channel: String::new(),
            shown: Some(shown),
        }
    }

    pub fn hour(&self) -> i64 {
        self.ts.div_euclid(3_600_000) * 3600
    }
}

/// Drops events seen in the last few minutes, so that a client's retried
/// batch does not move counters and the feed twice. Best effort by design:
/// two generations of 64-bit hashes, rotated by time or size, so memory is
/// bounded under any load. Exact de-duplication is the analytics store's
/// job (it keys on the event id).
pub struct RecentIds {
    inner: Mutex<Generations>,
    window_ms: i64,
    max_per_generation: usize,
    hasher: std::collections::hash_map::RandomState,
}

/// The sets hold hashes already (SipHash, randomly keyed, of the id):
/// hashing them again was a good part of the accept path's time.
#[derive(Default, Clone, Copy)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashSet64 = HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>;

struct Generations {
    current: HashSet64,
    previous: HashSet64,
    started: i64,
}

impl RecentIds {
    pub fn new(window_secs: u64, max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Generations {
                current: HashSet64::default(),
                previous: HashSet64::default(),
                started: crate::store::catalog::now_ms(),
            }),
            window_ms: window_secs as i64 * 1000,
            max_per_generation: (max_entries / 2).max(1),
            hasher: Default::default(),
        }
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Forgets ids whose events were not accepted after all.
    pub fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let hashes: Vec<u64> = ids.into_iter().map(|id| self.hash(id)).collect();
        let mut g = self.inner.lock();
        for h in hashes {
            g.current.remove(&h);
        }
    }

    /// For each id, whether it is new (and now remembered).
    pub fn first_seen<'a>(&self, ids: impl IntoIterator<Item = &'a str>, now: i64) -> Vec<bool> {
        let hashes: Vec<u64> = ids.into_iter().map(|id| self.hash(id)).collect();
        let mut g = self.inner.lock();
        if now - g.started >= self.window_ms || g.current.len() >= self.max_per_generation {
            // The oldest generation goes; its table is reused (cleared, its
            // capacity kept) so the new one does not grow from empty again.
            let g = &mut *g;
            std::mem::swap(&mut g.previous, &mut g.current);
            g.current.clear();
            g.started = now;
        }
        hashes
            .into_iter()
            .map(|h| !g.previous.contains(&h) && g.current.insert(h))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_drop_repeats_within_the_window_and_forget_after_two() {
        let r = RecentIds::new(60, 1000);
        let t = crate::store::catalog::now_ms();
        assert_eq!(r.first_seen(["a", "b", "a"], t), [true, true, false]);
        assert_eq!(r.first_seen(["a"], t + 30_000), [false]);
        // Rotated once: still remembered in the previous generation.
        assert_eq!(r.first_seen(["b"], t + 61_000), [false]);
        // Rotated twice: forgotten.
        assert_eq!(r.first_seen(["a"], t + 122_000), [true]);
    }

    #[test]
    fn recent_ids_stay_bounded() {
        let r = RecentIds::new(3600, 10);
        for i in 0..100 {
            assert_eq!(r.first_seen([i.to_string().as_str()], 0), [true]);
        }
        let g = r.inner.lock();
        assert!(g.current.len() <= 5 && g.previous.len() <= 5);
    }

    #[test]
    fn events_round_trip_and_kinds_parse() {
        let e = Event::action(Kind::Share, "x".into(), "v", "c", "u");
        let back: Event = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(serde_json::to_string(&Kind::Unsave).unwrap(), "\"unsave\"");
        // Events spooled before impressions existed still read.
        let old = r#"{"i":"x","k":"like","t":1,"r":1,"v":"v","c":"c","u":"u"}"#;
        assert_eq!(serde_json::from_str::<Event>(old).unwrap().shown, None);
        let shown = Shown {
            position: 7,
            ranker: "model".into(),
            variant: "candidate".into(),
            experiment: "exp".into(),
        };
        let i = Event::impression(
            "impression:a:7".into(),
            "u",
            "v",
            "c",
            5,
            "personalized",
            shown,
        );
        let back: Event = serde_json::from_slice(&serde_json::to_vec(&i).unwrap()).unwrap();
        assert_eq!(back, i);
        assert_eq!(i.kind.engagement(), [0; 4]);
    }
}
