//! Wire types: the JSON contract with app clients. Field names are camelCase;
//! times are RFC 3339 strings in UTC. Changing a field here is changing the
//! public API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod engagement;
mod experiments;
mod feed;
mod lists;
mod live;
mod notifications;
mod playback;
mod remix;
mod search;
mod sounds;
mod status;
mod webhooks;

pub use engagement::*;
pub use experiments::*;
pub use feed::*;
pub use lists::*;
pub use live::*;
pub use notifications::*;
pub use playback::*;
pub use remix::*;
pub use search::*;
pub use sounds::*;
pub use status::*;
pub use webhooks::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Creator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Creator => "creator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "creator" => Some(Self::Creator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Who is calling, once their bearer token has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Creators act on their own things; admins on everyone's.
    pub fn may_manage(&self, owner_id: &str) -> bool {
        self.is_admin() || self.user_id == owner_id
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters: letters, digits, `_`, `.`, `-`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// 10–1024 characters.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
    /// `viewer` (default) or `creator`. Admins are made with `appliance user add`.
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    /// Send as `Authorization: Bearer <token>`. Shown once; the box keeps only its hash.
    pub token: String,
    pub expires_at: String,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Unlisted => "unlisted",
            Self::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "unlisted" => Some(Self::Unlisted),
            "private" => Some(Self::Private),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadInit {
    /// 1–255 characters, not all blank, without `/`, `\\` or NUL.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\\\x00]*[^/\\\x00\s][^/\\\x00]*$"
    )]
    pub filename: String,
    /// Bytes, at least 1; at most the configured limit (5 GB by default),
    /// else 413.
    #[schema(minimum = 1)]
    pub file_size: u64,
    /// A video container type (`video/mp4`, `video/quicktime`, `video/webm`,
    /// `video/x-matroska`, `video/mp2t`, `video/x-msvideo`, `video/mpeg`,
    /// `application/octet-stream`; any case), else 415.
    pub mime_type: String,
}

/// An upload session. `GET /uploads/{id}` returns it with what has arrived,
/// so a client that was interrupted sends only `missingChunks`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    pub upload_id: String,
    pub filename: String,
    pub file_size: u64,
    pub chunk_size: u64,
    pub total_chunks: u32,
    pub expires_at: String,
    /// `open`, `completed` or `cancelled`.
    pub status: String,
    pub received_chunks: Vec<u32>,
    pub missing_chunks: Vec<u32>,
    pub bytes_received: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReceipt {
    pub upload_id: String,
    pub chunk: u32,
    pub size: u64,
    /// Hex SHA-256 of the stored chunk.
    pub sha256: String,
    /// False when this chunk had already arrived with the same bytes.
    pub created: bool,
}

/// The parts of a single-shot upload (`POST /videos`, `multipart/form-data`).
/// Only the OpenAPI document uses this type: the handler reads the parts as
/// they stream in.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SingleShotUpload {
    /// JSON `VideoMeta`.
    pub metadata: String,
    /// The video, with its filename.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// The metadata a creator gives a video when completing its upload.
#[derive(Debug, Clone, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VideoMeta {
    /// 1–150 characters, not all blank.
    #[schema(min_length = 1, max_length = 150, pattern = r"\S")]
    pub title: String,
    /// At most 5000 characters.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    /// At most 30: letters, digits or `_`, 1–64 each (a leading `#` is
    /// dropped; repeats are merged).
    #[serde(default)]
    #[schema(max_items = 30)]
    pub hashtags: Vec<String>,
    /// 1–64 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub sound_id: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
    /// Whether others may duet this video (default true).
    #[serde(default)]
    pub duet_enabled: Option<bool>,
    /// Whether others may stitch this video (default true).
    #[serde(default)]
    pub stitch_enabled: Option<bool>,
    /// The speed the upload is edited to before it is transcoded: 0.5, 1
    /// (default), 2 or 3 (picture re-timed, sound pitch-corrected).
    #[serde(default)]
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub video_id: String,
    pub status: VideoState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoState {
    Processing,
    Ready,
    Failed,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rendition {
    /// `1080p`, `720p`, … — also its folder under the video's HLS path.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    /// Peak bits/s, as in the master playlist.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub playlist_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VideoStats {
    pub views: u64,
    pub likes: u64,
    pub comments: u64,
    pub shares: u64,
    pub saves: u64,
}

/// The caller's own engagement with a video (all false for anonymous callers).
#[derive(Debug, Clone, Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ViewerEngagement {
    pub liked: bool,
    pub saved: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Video {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub hashtags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sound_id: Option<String>,
    pub visibility: Visibility,
    pub status: VideoState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Present once the video is `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    pub renditions: Vec<Rendition>,
    /// What was wrong with the upload and worked around when it was
    /// transcoded (damaged packets dropped, a truncated tail); absent for a
    /// clean upload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    pub stats: VideoStats,
    pub viewer: ViewerEngagement,
    /// Whether others may duet / stitch this video.
    pub duet_enabled: bool,
    pub stitch_enabled: bool,
    /// The speed the upload was edited to (1: as recorded).
    pub speed: f64,
    /// Present when this video is a duet or stitch of another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remix: Option<Remix>,
}

/// The stage of a `ready` video whose ladder is still growing.
pub const GROWING: &str = "growing";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoStatus {
    pub video_id: String,
    pub status: VideoState,
    /// `queued`, `transcoding`, `packaging`, `publishing`, `retrying`,
    /// `growing` (ready: playable, more rungs still encoding), `done`, `failed`.
    pub stage: String,
    /// Whole-job progress, 0–100 (the mean of the rungs while transcoding).
    pub percent: f32,
    /// Per-rung progress, 0–100.
    pub rungs: BTreeMap<String, u8>,
    /// The rungs a player can play now (what the master playlist lists),
    /// largest first; it grows while the stage is `growing`.
    #[serde(default)]
    pub live_rungs: Vec<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub updated_at: String,
}

impl VideoStatus {
    /// The SSE event name this state is announced with.
    pub fn event_name(&self) -> &'static str {
        match self.status {
            VideoState::Ready if self.is_growing() => "transcode.playable",
            VideoState::Ready => "transcode.completed",
            VideoState::Failed => "transcode.failed",
            VideoState::Processing => "transcode.progress",
        }
    }

    /// Playable, with more rungs to come.
    pub fn is_growing(&self) -> bool {
        self.status == VideoState::Ready && self.stage == GROWING
    }

    pub fn is_final(&self) -> bool {
        self.status != VideoState::Processing && !self.is_growing()
    }
}

/// A status change, as published to SSE subscribers. `started` is announced
/// once per attempt; everything else is `progress` until the end.
#[derive(Debug, Clone)]
pub struct StatusEvent {
    pub name: &'static str,
    pub status: VideoStatus,
}

impl StatusEvent {
    /// The static event name for `name` (events crossing processes).
    pub fn name_of(name: &str) -> Option<&'static str> {
        [
            "transcode.started",
            "transcode.progress",
            "transcode.playable",
            "transcode.completed",
            "transcode.failed",
            "video.deleted",
        ]
        .into_iter()
        .find(|n| *n == name)
    }

    pub fn snapshot(status: VideoStatus) -> Self {
        Self {
            name: status.event_name(),
            status,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i64,
    pub video_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<String>,
    pub run_after: String,
    pub created_at: String,
    pub updated_at: String,
}

/// How well one part of the box works: `down` parts stop its core job
/// (serving the origin, accepting uploads), `degraded` ones cost a feature
/// or freshness but the box still does that job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    Ok,
    Degraded,
    Down,
}

/// `/healthz` (the process answers) and `/readyz` (every dependency).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The worst state of the checks; `/readyz` answers 503 only when it
    /// is `down`.
    pub status: CheckState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
}

/// One dependency as `/readyz` found it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `catalog`, `objects`, `data dir`, `spool`, `analytics store`,
    /// `hot store`, `embedding model`, `ranker`, `video index`,
    /// `disk space`, `file descriptors`.
    pub name: String,
    pub state: CheckState,
    /// What was found, and for a fault what it costs.
    pub detail: String,
}

impl Health {
    /// The worst of `checks`.
    pub fn of(checks: Vec<HealthCheck>) -> Self {
        Self {
            status: checks
                .iter()
                .map(|c| c.state)
                .max()
                .unwrap_or(CheckState::Ok),
            checks,
        }
    }
}
