//! Webhooks: endpoints an admin registers (`/ops/webhooks`), the delivery
//! log of each, and the body the box POSTs to them. Deliveries follow the
//! Standard Webhooks signing scheme (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>` over `id.timestamp.body`), so the
//! receivers' off-the-shelf verifiers work as they are.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a webhook reports. A receiver gets only the events its endpoint
/// subscribed to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum WebhookEvent {
    /// A video became playable (`ready`), once per transcode.
    #[serde(rename = "video.ready")]
    VideoReady,
    /// A video's transcode gave up (`failed`), with the reason.
    #[serde(rename = "video.failed")]
    VideoFailed,
    /// A video was deleted.
    #[serde(rename = "video.deleted")]
    VideoDeleted,
    /// A live channel was created and started.
    #[serde(rename = "live.started")]
    LiveStarted,
    /// A live channel was stopped.
    #[serde(rename = "live.stopped")]
    LiveStopped,
    /// An unfinished upload session expired.
    #[serde(rename = "upload.expired")]
    UploadExpired,
}

impl WebhookEvent {
    pub const ALL: [Self; 6] = [
        Self::VideoReady,
        Self::VideoFailed,
        Self::VideoDeleted,
        Self::LiveStarted,
        Self::LiveStopped,
        Self::UploadExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VideoReady => "video.ready",
            Self::VideoFailed => "video.failed",
            Self::VideoDeleted => "video.deleted",
            Self::LiveStarted => "live.started",
            Self::LiveStopped => "live.stopped",
            Self::UploadExpired => "upload.expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// `POST /ops/webhooks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookCreate {
    /// `http://` or `https://`, without `user:password@` or a fragment.
    /// Unless the box's `webhooks.allow_private` is on, a host that is (or
    /// resolves to) a loopback, private, link-local or otherwise
    /// non-public address is refused (checked again at every delivery).
    #[schema(
        min_length = 8,
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub url: String,
    /// The events to deliver; a repeat counts once.
    #[schema(min_items = 1, max_items = 6)]
    pub events: Vec<WebhookEvent>,
    /// The signing secret in the Standard Webhooks form: `whsec_` and the
    /// base64 of 24–64 random bytes (the HMAC key is those bytes). Left
    /// out, the box makes one; it is in this answer only.
    #[serde(default)]
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,86}={0,2}$")]
    pub secret: Option<String>,
}

/// A registered endpoint. Its secret is never shown again after the
/// answer that created it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: String,
    /// Only in the answer to the `POST /ops/webhooks` that created it (an
    /// idempotent replay of that request leaves it out: the secret is kept
    /// in the catalog alone): the secret that signs every delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookDeliveryState {
    /// Waiting for its next attempt (or in one now).
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// No 2xx answer within the retry window (24 h by default).
    Failed,
    /// The endpoint was deleted before it was delivered.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAttemptOutcome {
    /// A 2xx answer.
    Delivered,
    /// A non-2xx answer, a refused connection or a timeout.
    Failed,
    /// Running now.
    InFlight,
    /// The process sending it stopped before it finished: the receiver may
    /// or may not have it (it is sent again with the same `webhook-id`).
    Unknown,
}

/// One POST of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// 1 for the first attempt, counting on through redeliveries.
    pub n: u32,
    /// When it started (RFC 3339).
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The receiver's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed (an HTTP status, a refused connection, a timeout…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub outcome: WebhookAttemptOutcome,
    /// The first attempt after a manual redelivery.
    pub manual: bool,
}

/// One event for one endpoint: its body, state and every attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: i64,
    /// The `webhook-id` header of every attempt: the same on each retry and
    /// redelivery, so a receiver de-duplicates by it.
    pub event_id: String,
    pub event: WebhookEvent,
    pub state: WebhookDeliveryState,
    pub created_at: String,
    /// When the next attempt is due (pending deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// No automatic attempt starts after this; a redelivery moves it.
    pub retry_until: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    pub attempt_count: u32,
    /// The attempts, oldest first (the latest 100 when there were more).
    pub attempts: Vec<WebhookAttempt>,
    /// The body POSTed (a `WebhookPayload`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// The body of every delivery (`content-type: application/json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The event id, as in the `webhook-id` header.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookEvent,
    /// When the event happened (RFC 3339).
    pub timestamp: String,
    pub data: WebhookData,
}

/// What the event is about: the members its kind needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookData {
    /// `video.*`; `upload.expired` (the video the upload was for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_id: Option<String>,
    /// The creator of the video, upload or channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// `video.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `video.*`: `public`, `unlisted` or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// `video.failed`: the reason a creator may be shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// `upload.expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// `upload.expired`: the file name the upload was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// `live.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// `live.*`: the channel's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_the_wire_names() {
        for e in WebhookEvent::ALL {
            let json = serde_json::to_value(e).unwrap();
            assert_eq!(json, e.as_str());
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
            let back: WebhookEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, e);
        }
        assert_eq!(WebhookEvent::parse("video.readyy"), None);
    }
}
