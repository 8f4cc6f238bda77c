//! Wire types of the feed: pages, interests, search queries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Video;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    ForYou,
    Following,
    Trending,
}

/// Query of every feed: `limit` 1–50 (default 10) and the previous page's
/// `nextCursor`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// 1–50, default 10.
    #[serde(default)]
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
    /// Opaque; from the previous page's `nextCursor`.
    #[serde(default)]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedVideo {
    #[serde(flatten)]
    pub video: Video,
    /// Why this video is here: `similar_to_watched`, `similar_users`,
    /// `co_watched`, `following`, `hashtag`, `sound`, `trending`,
    /// `popular`, `exploration` or `cold_start`.
    pub reason: String,
}

/// A feed page: a list like every other (`items`, `nextCursor`) with what
/// the feed says about it beside them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Feed {
    pub items: Vec<FeedVideo>,
    /// Opaque: pass it as `cursor` for the next page; `null` when this
    /// page is the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// `personalized`, `cold_start`, `following`, `trending`, or
    /// `trending_fallback` when personalisation failed (see `degraded`).
    pub source: String,
    /// Videos the next page will most likely start with, for the player to
    /// prefetch.
    pub prefetch_ids: Vec<String>,
    /// Why the personalised feed was not served, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// The viewer's side of the running A/B experiment of rankers
    /// (`control` when none runs, and for anonymous callers). Only for-you
    /// pages are ranked by the side's ranker; other feeds say the side too.
    pub variant: super::Variant,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interests {
    /// 3–20 distinct interests: hashtags or plain words (`cooking`,
    /// `travel`), 1–50 letters, digits or `_` each (a leading `#` is
    /// dropped).
    #[schema(min_items = 3, max_items = 20)]
    pub interests: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterestsSet {
    pub interests: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchSource {
    Fyp,
    Following,
    Search,
    Hashtag,
    Profile,
    Sound,
}

impl WatchSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fyp => "fyp",
            Self::Following => "following",
            Self::Search => "search",
            Self::Hashtag => "hashtag",
            Self::Profile => "profile",
            Self::Sound => "sound",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchEvent {
    /// Client-generated, unique per event; a repeated id is ignored.
    /// 1–128 visible ASCII characters.
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub event_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub video_id: String,
    /// At most 100 loops of the video.
    pub watch_ms: u64,
    /// 1 ms – 24 h.
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub duration_ms: u64,
    #[serde(default)]
    pub completed: bool,
    pub source: WatchSource,
    #[serde(default)]
    pub liked: bool,
    #[serde(default)]
    pub shared: bool,
    /// RFC 3339, when the watch ended on the client.
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchBatch {
    /// 1–500 events.
    #[schema(min_items = 1, max_items = 500)]
    pub events: Vec<WatchEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchAccepted {
    pub accepted: u32,
    /// Events whose `eventId` had been accepted in the last few minutes
    /// (counted once; older repeats are caught by the analytics store).
    pub duplicates: u32,
    /// Events about videos that do not exist (any more): not recorded.
    pub unknown_videos: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowState {
    pub user_id: String,
    pub following: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to look for: 1–200 characters, not all blank.
    #[param(min_length = 1, max_length = 200, pattern = r"\S")]
    pub q: String,
    /// 1–50, default 20.
    #[serde(default)]
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
    /// Opaque; from the previous page's `nextCursor` (results go at most
    /// 1000 deep).
    #[serde(default)]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
}
