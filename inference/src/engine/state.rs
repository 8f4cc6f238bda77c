//! The engine's in-memory state: per-video statistics, the catalog of
//! ready videos with its lookups, and per-viewer profiles.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;

use parking_lot::{Mutex, RwLock};

use super::Reason;
use super::VideoDoc;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub(super) views: f32,
    pub(super) completion_sum: f32,
    pub(super) likes: f32,
    pub(super) shares: f32,
    pub(super) comments: f32,
    pub(super) velocity: f32,
    pub(super) velocity_at: i64,
    /// Watches the viewer enjoyed (completion ≥ 0.7 or liked).
    pub(super) enjoyed: f32,
    /// Views decaying with [`RECENT_HALF_LIFE_SECS`], as of `recent_at`.
    pub(super) recent: f32,
    pub(super) recent_at: i64,
}

/// Half-life of a video's recent views: long enough to span a weekly
/// rhythm, short enough that last month's hit fades.
pub(super) const RECENT_HALF_LIFE_SECS: f32 = 3.0 * 86_400.0;

fn decay(value: f32, since: i64, now: i64, half_life: f32) -> f32 {
    value * (-(now - since).max(0) as f32 * std::f32::consts::LN_2 / half_life).exp()
}

impl Stats {
    pub(super) fn completion_rate(&self) -> f32 {
        (self.completion_sum + 0.4 * 5.0) / (self.views + 5.0)
    }
    pub(super) fn rate(&self, count: f32, prior: f32) -> f32 {
        (count + prior * 5.0) / (self.views + 5.0)
    }
    pub(super) fn velocity_at(&self, now: i64, half_life: f32) -> f32 {
        decay(self.velocity, self.velocity_at, now, half_life)
    }
    pub(super) fn recent_at(&self, now: i64) -> f32 {
        decay(self.recent, self.recent_at, now, RECENT_HALF_LIFE_SECS)
    }
    /// Counts one view at `now` in the recent views.
    pub(super) fn add_recent(&mut self, now: i64) {
        self.recent = self.recent_at(now) + 1.0;
        self.recent_at = self.recent_at.max(now);
    }
}

pub(super) struct Video {
    pub(super) doc: VideoDoc,
    pub(super) creator: u32,
    pub(super) sound: Option<u32>,
    pub(super) words: Vec<String>,
    /// The hashtags lowercased once, as affinities and the tag index key
    /// them (ranking looks them up for every candidate of every page).
    pub(super) tags: Box<[String]>,
    pub(super) emb: Box<[f32]>,
    pub(super) stats: Mutex<Stats>,
    /// Co-watch counts with other videos (item-to-item collaborative
    /// signal), bounded by [`super::collab`].
    pub(super) co: Mutex<HashMap<u32, f32>>,
    pub(super) expanded: AtomicBool,
    pub(super) alive: bool,
}

#[derive(Default)]
pub(super) struct Interner {
    pub(super) ids: HashMap<String, u32>,
}

impl Interner {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.to_string()).or_insert(next)
    }
}

#[derive(Default)]
pub(super) struct Catalog {
    pub(super) videos: Vec<Video>,
    pub(super) by_id: HashMap<String, u32>,
    pub(super) by_tag: HashMap<String, Vec<u32>>,
    pub(super) by_sound: HashMap<u32, Vec<u32>>,
    pub(super) by_creator: HashMap<u32, Vec<u32>>,
    pub(super) creators: Interner,
    pub(super) sounds: Interner,
    /// Read by every candidate's features, written once per watch: a
    /// read-write lock, so concurrent pages do not queue on it.
    pub(super) creator_stats: RwLock<HashMap<u32, Stats>>,
}

impl Catalog {
    pub(super) fn live(&self, slot: u32) -> Option<&Video> {
        self.videos.get(slot as usize).filter(|v| v.alive)
    }
}

pub(super) struct User {
    pub(super) slot: u32,
    pub(super) emb: Option<Vec<f32>>,
    pub(super) events: u32,
    pub(super) interest_only: bool,
    pub(super) watched: HashSet<u32>,
    pub(super) positives: VecDeque<u32>,
    /// The last videos watched (enjoyed or not), newest last: the
    /// collaborative scores are computed from them.
    pub(super) recent: VecDeque<u32>,
    pub(super) follows: HashSet<u32>,
    pub(super) tag_aff: HashMap<String, f32>,
    pub(super) sound_aff: HashMap<u32, f32>,
    pub(super) exploration: Vec<(u32, i64)>,
}

pub(super) struct Entry {
    pub(super) slot: u32,
    pub(super) reason: Reason,
    pub(super) score: f32,
}
