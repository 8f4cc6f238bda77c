//! Live channels: an RTSP camera pulled into a live HLS ladder served under
//! `/live/{channelId}/`, optionally recorded to VOD.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /live/channels`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveChannelCreate {
    /// 1–100 characters, not all blank.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// `rtsp://host[:port]/path`, optionally with `user:password@` (kept,
    /// used to log in to the camera, never shown again or logged). RTSP over
    /// TLS (`rtsps://`) is not supported.
    #[schema(min_length = 8, max_length = 2048, pattern = r"^[Rr][Tt][Ss][Pp]://")]
    pub url: String,
    /// Rung heights (short side) from 1080, 720, 480, 360; default 720, 480,
    /// 360. Rungs taller than the camera are left out.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 4)]
    pub rungs: Option<Vec<u32>>,
    /// Keep every segment, so the channel becomes a VOD video when it stops
    /// and clips can be cut from it.
    #[serde(default)]
    pub record: bool,
    /// `tcp` (RTP interleaved on the RTSP connection, the default) or `udp`.
    #[serde(default)]
    pub transport: Option<LiveTransport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LiveTransport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LiveState {
    Connecting,
    Live,
    Reconnecting,
    Stopped,
}

/// A channel and how its ingest is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveChannel {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// The camera's URL with any password replaced by `***`.
    pub url: String,
    pub rungs: Vec<u32>,
    pub record: bool,
    pub transport: LiveTransport,
    pub state: LiveState,
    /// The camera's codecs and resolution as last connected (e.g.
    /// `h264 1280x720 30fps + pcma 8000Hz`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Frames per second received over the last few seconds.
    pub fps_in: f64,
    /// When the last frame arrived (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_frame_at: Option<String>,
    pub reconnects: u64,
    /// Access units dropped because the ladder fell behind.
    pub dropped: u64,
    /// Segments published since the box (re)started the channel.
    pub segments: u64,
    /// The last segment's delay from its last captured frame to its
    /// publication (milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The latest failure (connection, camera, ladder), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `/live/{id}/master.m3u8` on this origin.
    pub playback_url: String,
    /// Videos made from this channel's recording (clips and the whole).
    pub recordings: Vec<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

/// `POST /live/channels/{id}/clip`: a span of a recording channel becomes a
/// VOD video (no re-encoding), cut at segment boundaries (2 s).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveClip {
    /// Start, RFC 3339 (the playlists' `EXT-X-PROGRAM-DATE-TIME` clock).
    pub from: String,
    /// End, RFC 3339, after `from`.
    pub to: String,
    /// The video's title; default: the channel's name and the span.
    #[serde(default)]
    #[schema(max_length = 150)]
    pub title: Option<String>,
}
