//! Wire types of engagement and analytics: watches, likes, saves, shares,
//! comments, follows, trending hashtags, creator metrics.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LikeState {
    pub video_id: String,
    pub liked: bool,
    pub likes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaveState {
    pub video_id: String,
    pub saved: bool,
    pub saves: u64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShareRequest {
    /// Where it was shared.
    #[schema(inline, value_type = ShareChannel)]
    pub channel: String,
}

/// The share channels the box counts.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ShareChannel {
    CopyLink,
    Sms,
    Whatsapp,
    Messenger,
    Email,
    Twitter,
    Facebook,
    Instagram,
    Telegram,
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareAccepted {
    pub video_id: String,
    pub channel: String,
    /// Shares of this video per channel, this one included.
    pub by_channel: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommentCreate {
    /// 1–2000 characters, not all blank.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub body: String,
    /// Reply to this comment (replies to a reply attach to its thread).
    #[serde(default)]
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: String,
    pub video_id: String,
    pub user_id: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub body: String,
    pub reply_count: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowEntry {
    pub user_id: String,
    pub username: String,
    pub since: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendingHashtag {
    pub tag: String,
    pub score: f64,
    /// Trending videos carrying it.
    pub videos: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// `24h` (default), `7d` or `30d`.
    #[serde(default)]
    #[param(inline, value_type = Option<Period>)]
    pub period: Option<String>,
}

/// The analytics periods (kept a string on the wire side of the server so a
/// wrong one gets the spec's error with the accepted values).
#[derive(Debug, Clone, Copy, ToSchema)]
pub enum Period {
    #[schema(rename = "24h")]
    Day,
    #[schema(rename = "7d")]
    Week,
    #[schema(rename = "30d")]
    Month,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourPoint {
    /// Start of the hour (RFC 3339, UTC).
    pub hour: String,
    pub views: u64,
    pub watch_ms: u64,
    pub completions: u64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub saves: i64,
}

/// Numbers over a period, from the hourly rollups.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub period: String,
    pub views: u64,
    pub unique_viewers: u64,
    pub total_watch_ms: u64,
    pub avg_watch_ms: f64,
    /// Completed views / views.
    pub completion_rate: f64,
    /// (likes + comments + shares + saves) / views.
    pub engagement_rate: f64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub saves: i64,
    /// Views per traffic source (`fyp`, `following`, `search`, …).
    pub traffic_sources: std::collections::BTreeMap<String, u64>,
    /// One point per hour with activity, oldest first.
    pub hourly: Vec<HourPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoAnalytics {
    pub video_id: String,
    #[serde(flatten)]
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorOverview {
    pub creator_id: String,
    pub followers: u64,
    pub following: u64,
    pub videos: u64,
    #[serde(flatten)]
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1–100, default 20.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}
