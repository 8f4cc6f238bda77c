//! The analytics store: every engagement event, and per-video per-hour
//! rollups that creator analytics, trending and view-count reconciliation
//! read. Two implementations behind one seam, chosen by `[analytics] kind`:
//! an embedded SQLite file (no services) and ClickHouse.
//!
//! Contract every implementation keeps: a delivery marked
//! [`Attempt::Retry`] may repeat events of the previous delivery, whose
//! outcome the shipper could not know (a crash between the store's commit
//! and the spool's cursor, a timeout), and each of those is stored once.
//! A delivery marked [`Attempt::First`] holds events no earlier delivery
//! sent, so the store inserts them without looking anything up: that
//! lookup was most of the shipping time (see `engagement::shipper`).

mod clickhouse;
mod embedded;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;

pub use self::clickhouse::ClickHouse;
pub use self::embedded::Embedded;
use crate::engagement::events::Event;
use crate::error::Result;

/// Whose rollups to read.
#[derive(Debug, Clone)]
pub enum Scope {
    Video(String),
    Creator(String),
}

/// One rollup row: a video (or creator), an hour, a traffic source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HourRow {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    /// Traffic source of the views; empty for engagement actions.
    pub source: String,
    pub views: u64,
    pub watch_ms: u64,
    pub completions: u64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub saves: i64,
}

/// What trending needs per video and hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoHour {
    pub video: String,
    pub hour: i64,
    pub views: u64,
    pub completions: u64,
    pub shares: i64,
    pub likes: i64,
}

/// A watch as the feed engine replays it at start-up.
#[derive(Debug, Clone)]
pub struct PastWatch {
    pub user: String,
    pub video: String,
    pub watch_ms: u32,
    pub duration_ms: u32,
    pub completed: bool,
    pub liked: bool,
    pub shared: bool,
    pub ts: i64,
}

impl From<&Event> for PastWatch {
    fn from(e: &Event) -> Self {
        Self {
            user: e.user.clone(),
            video: e.video.clone(),
            watch_ms: e.watch_ms,
            duration_ms: e.duration_ms,
            completed: e.completed,
            liked: e.liked,
            shared: e.shared,
            ts: e.ts,
        }
    }
}

/// An impression as training reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastImpression {
    pub user: String,
    pub video: String,
    pub position: u32,
    /// ms (whole seconds in ClickHouse).
    pub ts: i64,
    /// `control` or `candidate`.
    pub variant: String,
}

/// One side of an experiment, recounted from the stored events and the
/// experiment's for-you impressions (sources `personalized`, `cold_start`,
/// `trending_fallback`). "Followed" compares the box's receive time of the
/// watch or like with the box's time of the showing, in whole seconds: in
/// the same second, or later, follows it (ClickHouse keeps seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantCounts {
    pub variant: String,
    /// Distinct viewers shown at least one video.
    pub viewers: u64,
    pub impressions: u64,
    /// Impressions followed by a watch of that video by that viewer.
    pub watched: u64,
    /// Impressions followed by a like of that video by that viewer.
    pub liked: u64,
    /// Watch events of a shown video by its viewer at or after the first
    /// time it was shown to them.
    pub watches: u64,
    /// Of those, the completed ones.
    pub completed: u64,
}

/// The most events one delivery holds, in this release and every earlier
/// one (`analytics.batch_size` is at most 100,000): a delivery in doubt
/// after a restart lies within this many events from the spool's cursor,
/// and within this many rows at the end of the embedded store.
pub const LARGEST_DELIVERY: usize = 100_000;

/// Whether a delivery may repeat events an earlier one stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No earlier delivery sent any of these events: insert them as they
    /// are (the shipper vouches for it; repeats within the batch are still
    /// collapsed).
    First,
    /// The previous delivery may have stored some of these events (its
    /// outcome is unknown): store only the ones it did not.
    Retry,
}

#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    fn name(&self) -> &'static str;
    /// Creates or upgrades the schema (idempotent).
    async fn migrate(&self) -> Result<()>;
    /// Stores a batch from the spool; returns how many events were new.
    async fn deliver(&self, events: &[Event], attempt: Attempt) -> Result<usize>;
    /// Stores events that the last delivery may have stored already
    /// (`deliver` as a retry): how tests put events in a store.
    #[cfg(test)]
    async fn ingest(&self, events: &[Event]) -> Result<usize> {
        self.deliver(events, Attempt::Retry).await
    }
    /// Rollup rows of `scope` from `since` (unix seconds) on.
    async fn rollups(&self, scope: &Scope, since: i64) -> Result<Vec<HourRow>>;
    /// Distinct viewers of `scope` from `since` on.
    async fn unique_viewers(&self, scope: &Scope, since: i64) -> Result<u64>;
    /// Per-video hourly activity of every video from `since` on.
    async fn activity(&self, since: i64) -> Result<Vec<VideoHour>>;
    /// All-time views of each of `videos` (absent: none).
    async fn total_views(&self, videos: &[String]) -> Result<HashMap<String, u64>>;
    /// Every stored watch in time order, in chunks, for the feed's warm-up.
    async fn watch_history(&self, sink: &mut (dyn FnMut(Vec<PastWatch>) + Send)) -> Result<u64>;
    /// Every stored impression, in chunks, for training.
    async fn impressions(&self, sink: &mut (dyn FnMut(Vec<PastImpression>) + Send)) -> Result<u64>;
    /// Per variant of `experiment` (empty: for-you impressions served while
    /// no experiment ran), what its viewers were shown on for-you pages and
    /// did next; variants with no impression are absent.
    async fn experiment_counts(&self, experiment: &str) -> Result<Vec<VariantCounts>>;
    async fn ping(&self) -> Result<()>;
}

/// Totals over rollup rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub views: u64,
    pub watch_ms: u64,
    pub completions: u64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub saves: i64,
}

impl Totals {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a HourRow>) -> Self {
        rows.into_iter().fold(Self::default(), |mut t, r| {
            t.views += r.views;
            t.watch_ms += r.watch_ms;
            t.completions += r.completions;
            t.likes += r.likes;
            t.comments += r.comments;
            t.shares += r.shares;
            t.saves += r.saves;
            t
        })
    }
}

/// Collapses duplicate ids within one batch (the first wins).
pub(super) fn distinct(events: &[Event]) -> Vec<&Event> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|e| seen.insert(e.id.as_str()))
        .collect()
}
