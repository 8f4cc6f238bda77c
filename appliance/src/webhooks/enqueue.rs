//! The outbox: an event becomes one pending delivery per subscribed
//! endpoint, written by the catalog function that makes the event happen,
//! inside its transaction (publish, settle, delete, upload expiry, channel
//! start and stop call `record` before they commit). So the event and its
//! deliveries commit together or not at all: no crash can leave an event
//! without its deliveries, and there is nothing to re-derive at start-up.
//!
//! An event's id is derived from what it is about (kind, subject, and the
//! job for a video's outcome), so announcing it again — a ready video's
//! ladder growing rung by rung, a second process expiring the same upload —
//! adds nothing (`UNIQUE (webhook_id, event_id)`), and it is the
//! `webhook-id` every attempt carries.

use api::wire::{WebhookData, WebhookEvent, WebhookPayload};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339};

/// Something that happened, named by its subject.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The video is `ready` (playable), published by job `job_id` (0 for a
    /// video published whole, a live recording).
    VideoReady {
        video_id: &'a str,
        job_id: i64,
    },
    /// The video's job `job_id` gave up and the video is `failed`.
    VideoFailed {
        video_id: &'a str,
        job_id: i64,
    },
    /// The video is being deleted (its row still there, `deleting`).
    VideoDeleted {
        video_id: &'a str,
    },
    UploadExpired {
        upload_id: &'a str,
    },
    LiveStarted {
        channel_id: &'a str,
    },
    LiveStopped {
        channel_id: &'a str,
    },
}

impl Event<'_> {
    pub fn kind(&self) -> WebhookEvent {
        match self {
            Self::VideoReady { .. } => WebhookEvent::VideoReady,
            Self::VideoFailed { .. } => WebhookEvent::VideoFailed,
            Self::VideoDeleted { .. } => WebhookEvent::VideoDeleted,
            Self::UploadExpired { .. } => WebhookEvent::UploadExpired,
            Self::LiveStarted { .. } => WebhookEvent::LiveStarted,
            Self::LiveStopped { .. } => WebhookEvent::LiveStopped,
        }
    }

    /// `evt_` and 128 bits of SHA-256 over kind, subject and generation:
    /// the same event always gets the same id, two events never share one.
    pub fn id(&self) -> String {
        let (subject, generation) = match *self {
            Self::VideoReady { video_id, job_id } | Self::VideoFailed { video_id, job_id } => {
                (video_id, job_id)
            }
            Self::VideoDeleted { video_id } => (video_id, 0),
            Self::UploadExpired { upload_id } => (upload_id, 0),
            Self::LiveStarted { channel_id } | Self::LiveStopped { channel_id } => (channel_id, 0),
        };
        let digest = Sha256::digest(format!("{}\n{subject}\n{generation}", self.kind().as_str()));
        format!("evt_{}", hex::encode(&digest[..16]))
    }
}

/// Queues `event` for every endpoint subscribed to it, on `c` — the
/// caller's transaction. Nothing when no endpoint takes it, or when the
/// subject is not (or no longer) in the state the event says. Returns the
/// deliveries added.
pub fn record(c: &Connection, event: Event<'_>) -> Result<usize> {
    let kind = event.kind();
    if !cat::webhook_subscribed(c, kind.as_str())? {
        return Ok(0);
    }
    let Some(data) = data_of(c, event)? else {
        return Ok(0);
    };
    let now = now_ms();
    let id = event.id();
    let payload = WebhookPayload {
        id: id.clone(),
        kind,
        timestamp: rfc3339(now),
        data,
    };
    let body = serde_json::to_string(&payload).unwrap_or_default();
    cat::webhook_fan_out(c, kind.as_str(), &id, &body, now)
}

/// What the event's receivers are told about its subject, read in the
/// same transaction as the change.
fn data_of(c: &Connection, event: Event<'_>) -> Result<Option<WebhookData>> {
    let video = |id: &str, state: Option<&str>| -> Result<Option<WebhookData>> {
        Ok(cat::video(c, id)?
            .filter(|v| state.is_none_or(|s| v.state == s))
            .map(|v| WebhookData {
                video_id: Some(v.id),
                owner_id: Some(v.owner_id),
                title: Some(v.title),
                visibility: Some(v.visibility),
                failure: v.failure.filter(|_| state == Some("failed")),
                ..WebhookData::default()
            }))
    };
    let channel = |id: &str| -> Result<Option<WebhookData>> {
        Ok(cat::channel(c, id)?.map(|ch| WebhookData {
            channel_id: Some(ch.id),
            owner_id: Some(ch.owner_id),
            name: Some(ch.name),
            ..WebhookData::default()
        }))
    };
    match event {
        Event::VideoReady { video_id, .. } => video(video_id, Some("ready")),
        Event::VideoFailed { video_id, .. } => video(video_id, Some("failed")),
        Event::VideoDeleted { video_id } => video(video_id, None),
        Event::UploadExpired { upload_id } => Ok(cat::upload(c, upload_id)?.map(|u| WebhookData {
            upload_id: Some(u.id),
            video_id: Some(u.video_id),
            owner_id: Some(u.owner_id),
            filename: Some(u.filename),
            ..WebhookData::default()
        })),
        Event::LiveStarted { channel_id } | Event::LiveStopped { channel_id } => {
            channel(channel_id)
        }
    }
}
