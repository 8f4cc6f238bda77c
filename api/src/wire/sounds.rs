//! Sounds (the library of audio creators reuse) and the copyright check's
//! reference library and flags.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A sound: a video's original audio, reused by the videos that name it
/// (`soundId`) or whose audio matches it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sound {
    pub id: String,
    /// "original sound - <creator>" for a video's own audio.
    pub title: String,
    /// The creator whose audio it is.
    pub owner_id: Option<String>,
    pub duration_secs: f64,
    /// Ready public videos using it.
    pub usage_count: i64,
    /// The video it was first heard in.
    pub original_video_id: Option<String>,
    pub created_at: String,
    /// In trending lists: videos using it published in the last 7 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_usage: Option<i64>,
}

/// What the box does with an upload whose audio matches a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RightsPolicy {
    /// The upload fails and is never served.
    Block,
    /// The upload is published and the match listed for review.
    Flag,
    /// Nothing is held against the upload.
    Allow,
}

impl RightsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Flag => "flag",
            Self::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "flag" => Some(Self::Flag),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// The `metadata` part of `POST /ops/reference-audio`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceAudioMeta {
    /// 1–200 characters.
    pub title: String,
    pub policy: RightsPolicy,
}

/// `multipart/form-data` of `POST /ops/reference-audio`.
#[derive(Debug, ToSchema)]
pub struct ReferenceAudioUpload {
    /// JSON `ReferenceAudioMeta`.
    pub metadata: String,
    /// Any audio or video file FFmpeg decodes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A track of the copyright library.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceAudio {
    pub id: String,
    pub title: String,
    pub policy: RightsPolicy,
    /// How much of it was fingerprinted.
    pub duration_secs: f64,
    pub created_at: String,
}

/// An upload whose audio matched a reference, for review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudioFlag {
    pub video_id: String,
    pub reference_id: String,
    pub reference_title: String,
    /// The reference's policy when the match was found.
    pub policy: RightsPolicy,
    /// Where in the upload the matching audio starts.
    pub offset_secs: f64,
    /// Where in the reference it starts.
    pub reference_offset_secs: f64,
    pub duration_secs: f64,
    /// 0–1.
    pub confidence: f64,
    pub created_at: String,
}
