//! Engagement: everything viewers do to videos and to each other, and what
//! the box learns from it. Owns the event path (validate → recent-id filter
//! → fsync'd spool → 202; a shipper delivers the spool to the analytics
//! store exactly once per event id), the hot store (Redis or in-process:
//! counters, rate limits, idempotency keys; flushed into the catalog's
//! counters once per flush id and reconciled from rows), the analytics
//! stores (embedded SQLite or ClickHouse; hourly rollups; the feed's
//! impressions in a table of their own, and the per-variant recount of an
//! A/B experiment), social actions
//! (likes, saves, shares, comments, follows), trending, and creator
//! analytics.
//!
//! May call: `store` (catalog rows are the truth for social actions; the
//! hot store flushes into it). It never calls the feed: what the feed
//! learns (watches, follows, trending) goes out through `Listener`, which
//! the composition root wires to the feed; what users are told (a new
//! follower, a reply, a like milestone) through `Notifier`, wired to
//! `notifications` the same way.
//!
//! Invariants: an event is acknowledged only after it is in the spool and
//! fsync'd; a like/save/follow row changes at most once per repeat (a
//! repeated like is not a second like, so "likes are counted once" lives in
//! `store::catalog::social::set_flag` plus `Social::set_like`); counters
//! are applied once per flush id; nothing here blocks on a down Redis or
//! ClickHouse (the spool and the in-process store carry on).

mod analytics;
mod events;
mod hot;
mod idempotency;
mod impressions;
mod insights;
mod limits;
mod pipeline;
mod shipper;
mod social;
mod spool;
mod watches;

pub use analytics::{AnalyticsStore, PastImpression, PastWatch, Scope, VariantCounts};
pub use events::{Event, Kind, Shown};
pub use hot::follow::follow as follow_channel;
pub use hot::redis::{NOTIFICATIONS_CHANNEL, STATUS_CHANNEL};
pub use pipeline::Engagement;
pub use social::Social;

use crate::store::catalog::{CommentRow, VideoRow};

/// What the rest of the box learns from engagement. The feed implements
/// it; the composition root hands it to `Engagement::spawn` and `Social`,
/// so this domain never imports the feed.
pub trait Listener: Send + Sync {
    /// Watch events accepted for the first time (already durable).
    fn watched(&self, events: &[Event]);
    /// `follower` started (`on`) or stopped following `followee`.
    fn followed(&self, follower: &str, followee: &str, on: bool);
    /// The trending videos, best first, as last recomputed.
    fn trending(&self, videos: &[String]);
}

/// What users are told about each other's actions. The notifications
/// domain implements it and the composition root hands it to `Social`, so
/// engagement never imports notifications. Each call returns once the
/// notification is stored (or found unwarranted: one's own action, a
/// repeat); a failure is logged there and never fails the action itself.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// `follower` started following `followee` (a new follow row).
    async fn followed(&self, follower: &str, followee: &str);
    /// `reply` (stored) answers a comment `to` wrote on `video`.
    async fn replied(&self, video: &VideoRow, to: &str, reply: &CommentRow);
    /// `liker` liked `video` (a new like row), which now has about `likes`.
    async fn liked(&self, video: &VideoRow, liker: &str, likes: u64);
}
