//! `POST /engagement/watch-batch`: validates a client's batch of watch
//! events, makes them durable (spool), then hands the new ones to the
//! listener (the feed learns from them at once).

use api::wire::*;
use api::ApiError;

use super::events::{Event, Kind};
use super::Social;
use crate::error::Result;
use crate::store::catalog::now_ms;

const MAX_BATCH: usize = 500;
/// Older watches (a client offline for weeks) are refused, not counted
/// into long-closed hours.
const MAX_EVENT_AGE_MS: i64 = 30 * 86_400_000;

impl Social {
    pub async fn watch_batch(&self, caller: &Principal, req: WatchBatch) -> Result<WatchAccepted> {
        if req.events.is_empty() || req.events.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "events",
                format!(
                    "a batch holds 1–{MAX_BATCH} events, got {}",
                    req.events.len()
                ),
            )
            .into());
        }
        let now = now_ms();
        let mut parsed = Vec::with_capacity(req.events.len());
        for (i, e) in req.events.into_iter().enumerate() {
            let bad = |field: &str, m: String| ApiError::invalid(format!("events[{i}].{field}"), m);
            if e.event_id.is_empty()
                || e.event_id.len() > 128
                || !e.event_id.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(bad("eventId", "must be 1–128 visible ASCII characters".into()).into());
            }
            if !api::origin::valid_id(&e.video_id) {
                return Err(bad("videoId", format!("{:?} is not a video id", e.video_id)).into());
            }
            if e.duration_ms == 0 || e.duration_ms > 86_400_000 {
                return Err(bad("durationMs", "must be 1 ms – 24 h".into()).into());
            }
            if e.watch_ms > e.duration_ms.saturating_mul(100) {
                return Err(bad("watchMs", "is more than 100 loops of the video".into()).into());
            }
            let ts = time::OffsetDateTime::parse(
                &e.timestamp,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| bad("timestamp", format!("{:?} is not RFC 3339", e.timestamp)))?;
            let ts = (ts.unix_timestamp_nanos() / 1_000_000) as i64;
            if ts < now - MAX_EVENT_AGE_MS {
                return Err(bad(
                    "timestamp",
                    format!("{:?} is more than 30 days old", e.timestamp),
                )
                .into());
            }
            parsed.push((e, ts));
        }
        let total = parsed.len() as u32;
        let videos: Vec<&str> = parsed.iter().map(|(e, _)| e.video_id.as_str()).collect();
        let owners = self.engagement.owners(&videos).await?;
        let mut events = Vec::with_capacity(parsed.len());
        for (e, ts) in parsed {
            let Some(creator) = owners.get(&e.video_id) else {
                continue;
            };
            events.push(Event {
                // Scoped per user: one client cannot suppress another's events.
                id: format!("{}:{}", caller.user_id, e.event_id),
                kind: Kind::Watch,
                // A clock running ahead does not put views in the future.
                ts: ts.min(now),
                received: now,
                video: e.video_id,
                creator: creator.clone(),
                user: caller.user_id.clone(),
                watch_ms: e.watch_ms as u32,
                duration_ms: e.duration_ms as u32,
                completed: e.completed,
                liked: e.liked,
                shared: e.shared,
                source: e.source.as_str().to_string(),
                channel: String::new(),
                shown: None,
            });
        }
        let unknown = total - events.len() as u32;
        // Durable first, then learned from: the user's embedding moves now,
        // and the user index picks it up within a second.
        let (fresh, dups) = self.engagement.accept(events).await?;
        self.listener.watched(&fresh);
        Ok(WatchAccepted {
            accepted: total - unknown,
            duplicates: dups as u32,
            unknown_videos: unknown,
        })
    }
}
