//! Duets and stitches (FR6): a creator's finished upload session composed
//! with another video, published as an ordinary video linked to it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Visibility;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RemixKind {
    /// Side by side with the original (original left, recording right).
    Duet,
    /// A clip of the original, then the recording.
    Stitch,
}

impl RemixKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duet => "duet",
            Self::Stitch => "stitch",
        }
    }
}

/// What a remix was made from, on `GET /videos/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Remix {
    pub kind: RemixKind,
    pub original_id: String,
    /// Seconds of the original a stitch used: `[clipStart, clipEnd)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_end: Option<f64>,
}

/// `POST /videos/{id}/duet`: the caller's upload session (every byte
/// received, not completed) becomes a duet with video `{id}`. The metadata
/// is a new video's (`VideoMeta`), all optional: the title defaults to
/// "Duet with …".
#[derive(Debug, Clone, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DuetRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub upload_id: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 150, pattern = r"\S")]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_items = 30)]
    pub hashtags: Vec<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub sound_id: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    /// Whether others may duet the result (default true).
    #[serde(default)]
    pub duet_enabled: Option<bool>,
    /// Whether others may stitch the result (default true).
    #[serde(default)]
    pub stitch_enabled: Option<bool>,
    /// The recording's speed: 0.5, 1 (default), 2 or 3.
    #[serde(default)]
    pub speed: Option<f64>,
}

/// `POST /videos/{id}/stitch`: as a duet, with the original's clip
/// `[clipStart, clipEnd)` in seconds (0.1–5 s long, inside the original).
#[derive(Debug, Clone, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StitchRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub upload_id: String,
    #[schema(minimum = 0)]
    pub clip_start: f64,
    #[schema(minimum = 0)]
    pub clip_end: f64,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 150, pattern = r"\S")]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_items = 30)]
    pub hashtags: Vec<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub sound_id: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    #[serde(default)]
    pub duet_enabled: Option<bool>,
    #[serde(default)]
    pub stitch_enabled: Option<bool>,
    /// The recording's speed: 0.5, 1 (default), 2 or 3.
    #[serde(default)]
    pub speed: Option<f64>,
}
