//! Search over users, sounds and hashtags (`GET /search/users|sounds|
//! hashtags`, beside `/search/videos`): one typed result per kind, each a
//! `Page` of hits taking the same `SearchQuery` (`q`, `limit` 1–50,
//! `cursor`).

use serde::Serialize;
use utoipa::ToSchema;

/// A user whose username starts with the query (case-insensitive); the
/// most followed first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserHit {
    pub id: String,
    pub username: String,
    pub followers: u64,
}

/// A sound whose title has the query's words (the last one as a prefix,
/// as it is being typed); ranked by how well the title matches and how
/// many videos use it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoundHit {
    pub id: String,
    pub title: String,
    /// Public, published videos using the sound.
    pub usage: u64,
    pub duration_ms: u64,
    /// The creator whose original audio it is; `null` for sounds no user
    /// owns.
    #[schema(required = true)]
    pub owner_id: Option<String>,
    #[schema(required = true)]
    pub owner_username: Option<String>,
}

/// A hashtag starting with the query (without its `#`); trending ones
/// first, then the most used.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashtagHit {
    /// Lowercase, without `#`.
    pub tag: String,
    /// Public, published videos carrying it.
    pub video_count: u64,
    /// Its score in the last trending computation (`GET
    /// /hashtags/trending`); 0 when it is not trending.
    pub trending_score: f64,
}
