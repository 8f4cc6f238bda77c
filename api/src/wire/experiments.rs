//! Wire types of A/B experiments between rankers: the side a feed page
//! came from and the admin report of `GET /api/v1/ops/experiments`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which ranker a viewer's feed comes from: `control` (the current ranker,
/// everyone when no experiment runs) or `candidate` (the ranker under
/// test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Control,
    Candidate,
}

/// `running`, or `paused` while the candidate ranker cannot be used, or
/// for a while after its pages failed repeatedly (every viewer then gets
/// the current ranker; `pausedReason` says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentState {
    Running,
    Paused,
}

/// A proportion with its 95 % Wilson score interval. With nothing to
/// count, `value` is 0 and the interval is 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub value: f64,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub low: f64,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub high: f64,
}

/// The experiment configured in `[feed.experiment]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentInfo {
    pub name: String,
    /// Share of viewers on the candidate.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub share: f64,
    /// The candidate as configured: a model file or `formula`.
    pub candidate_ranker: String,
    pub state: ExperimentState,
    /// Why the experiment is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

/// One side of the experiment, recounted from the analytics store. An
/// impression is one video shown on a for-you page (personalised, cold
/// start or its trending fallback; following pages are ranked by no
/// ranker and not counted); a watch or like "follows" it when the box
/// received the same viewer's watch or like of that video in the same
/// second as the showing or later (whatever the client's timestamp).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariantReport {
    pub variant: Variant,
    /// Viewers shown at least one video.
    pub viewers: u64,
    pub impressions: u64,
    /// Impressions followed by a watch of that video by that viewer.
    pub watched_impressions: u64,
    /// Impressions followed by a like of that video by that viewer.
    pub liked_impressions: u64,
    /// Watch events of shown videos by their viewers, at or after the
    /// first time the video was shown to them.
    pub watches: u64,
    /// Of those, the completed ones.
    pub completed_watches: u64,
    /// `watchedImpressions / impressions`.
    pub watch_through: Rate,
    /// `completedWatches / watches`.
    pub completion_rate: Rate,
    /// `likedImpressions / impressions`.
    pub likes_per_impression: Rate,
}

/// The running experiment's report: per variant, what was shown and what
/// viewers did next — a recount of the stored impressions and events (the
/// online side of `appliance eval-feed`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentReport {
    /// Absent when no experiment is configured; `variants` then counts
    /// the impressions served outside any experiment (all `control`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentInfo>,
    /// When the analytics store was read (RFC 3339). The server first waits
    /// up to 2 s for the events accepted before the request to be
    /// delivered from the spool.
    pub as_of: String,
    /// Events accepted before the request still in the spool when the store
    /// was read: not in these counts (0 normally).
    pub pending_events: u64,
    /// `control` first, then `candidate` (only while an experiment is
    /// configured).
    #[schema(min_items = 1, max_items = 2)]
    pub variants: Vec<VariantReport>,
}
