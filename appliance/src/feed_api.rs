//! The feed, interests, watch, follow and search endpoints: validation,
//! catalog persistence, then the recommendation engine.

use std::collections::HashMap;

use api::wire::*;
use api::ApiError;

use crate::app::App;
use crate::catalog::{self as cat, now_ms};
use crate::error::Result;
use crate::events::{Event, Kind};

const MAX_BATCH: usize = 500;
/// Older watches (a client offline for weeks) are refused, not counted
/// into long-closed hours.
const MAX_EVENT_AGE_MS: i64 = 30 * 86_400_000;

fn engine_kind(kind: FeedKind) -> inference::FeedKind {
    match kind {
        FeedKind::ForYou => inference::FeedKind::ForYou,
        FeedKind::Following => inference::FeedKind::Following,
        FeedKind::Trending => inference::FeedKind::Trending,
    }
}

fn reason_str(r: inference::Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `#Cooking ` → `cooking`; refuses what cannot be a hashtag.
pub fn normalize_tag(raw: &str) -> std::result::Result<String, ApiError> {
    let t = raw.trim().trim_start_matches('#').to_lowercase();
    if t.is_empty() || t.chars().count() > 50 || !t.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return Err(ApiError::validation(format!(
            "{raw:?} is not a hashtag: 1–50 letters, digits or underscores"
        )));
    }
    Ok(t)
}

impl App {
    async fn hydrate(&self, ids: Vec<String>) -> Result<Vec<Video>> {
        let rows = self
            .catalog
            .call(move |c| cat::public_videos(c, &ids))
            .await?;
        Ok(rows.iter().map(App::video_wire).collect())
    }

    pub async fn feed_page(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        q: FeedQuery,
    ) -> Result<Feed> {
        let limit = q.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            return Err(ApiError::validation(format!("limit must be 1–50, got {limit}")).into());
        }
        if let Some(p) = caller {
            self.limit(
                "feed pages",
                &p.user_id,
                self.config.limits.feed_per_minute,
                std::time::Duration::from_secs(60),
            )
            .await?;
        }
        let user = caller.map(|p| p.user_id.as_str());
        let served = self
            .feed
            .feed(engine_kind(kind), user, limit as usize, q.cursor.as_deref())
            .await?;
        let reasons: HashMap<String, inference::Reason> = served
            .page
            .items
            .iter()
            .map(|i| (i.video_id.clone(), i.reason))
            .collect();
        let ids: Vec<String> = served
            .page
            .items
            .iter()
            .map(|i| i.video_id.clone())
            .collect();
        let videos = self
            .hydrate(ids)
            .await?
            .into_iter()
            .map(|video| FeedVideo {
                reason: reasons
                    .get(&video.id)
                    .map(|r| reason_str(*r))
                    .unwrap_or_default(),
                video,
            })
            .collect();
        Ok(Feed {
            videos,
            next_cursor: served.page.next_cursor,
            source: served.source.to_string(),
            prefetch_ids: served.page.prefetch_ids,
            degraded: served.degraded,
        })
    }

    pub async fn set_interests(&self, caller: &Principal, req: Interests) -> Result<InterestsSet> {
        let mut tags = Vec::new();
        for raw in &req.interests {
            let t = normalize_tag(raw)?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if !(3..=20).contains(&tags.len()) {
            return Err(ApiError::validation(format!(
                "pick 3–20 distinct interests, got {}",
                tags.len()
            ))
            .into());
        }
        let (user, t) = (caller.user_id.clone(), tags.clone());
        self.catalog
            .call(move |c| cat::set_interests(c, &user, &t))
            .await?;
        self.feed.apply_interests(&caller.user_id, &tags).await;
        Ok(InterestsSet { interests: tags })
    }

    pub async fn watch_batch(&self, caller: &Principal, req: WatchBatch) -> Result<WatchAccepted> {
        if req.events.is_empty() || req.events.len() > MAX_BATCH {
            return Err(ApiError::validation(format!(
                "a batch holds 1–{MAX_BATCH} events, got {}",
                req.events.len()
            ))
            .into());
        }
        let now = now_ms();
        let mut parsed = Vec::with_capacity(req.events.len());
        for (i, e) in req.events.into_iter().enumerate() {
            let bad = |m: String| ApiError::validation(format!("events[{i}]: {m}"));
            if e.event_id.is_empty()
                || e.event_id.len() > 128
                || !e.event_id.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(bad("eventId must be 1–128 visible ASCII characters".into()).into());
            }
            if !api::origin::valid_id(&e.video_id) {
                return Err(bad(format!("videoId {:?} is not a video id", e.video_id)).into());
            }
            if e.duration_ms == 0 || e.duration_ms > 86_400_000 {
                return Err(bad("durationMs must be 1 ms – 24 h".into()).into());
            }
            if e.watch_ms > e.duration_ms.saturating_mul(100) {
                return Err(bad("watchMs is more than 100 loops of the video".into()).into());
            }
            let ts = time::OffsetDateTime::parse(
                &e.timestamp,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| bad(format!("timestamp {:?} is not RFC 3339", e.timestamp)))?;
            let ts = (ts.unix_timestamp_nanos() / 1_000_000) as i64;
            if ts < now - MAX_EVENT_AGE_MS {
                return Err(bad(format!(
                    "timestamp {:?} is more than 30 days old",
                    e.timestamp
                ))
                .into());
            }
            parsed.push((e, ts));
        }
        let total = parsed.len() as u32;
        let videos: Vec<&str> = parsed.iter().map(|(e, _)| e.video_id.as_str()).collect();
        let owners = self.engagement.owners(&self.catalog, &videos).await?;
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
            });
        }
        let unknown = total - events.len() as u32;
        // Durable first, then learned from: the user's embedding moves now,
        // and the user index picks it up within a second.
        let (fresh, dups) = self.engagement.accept(events).await?;
        self.feed.record(&fresh);
        Ok(WatchAccepted {
            accepted: total - unknown,
            duplicates: dups as u32,
            unknown_videos: unknown,
        })
    }

    pub async fn follow(&self, caller: &Principal, user_id: &str, on: bool) -> Result<FollowState> {
        if user_id == caller.user_id {
            return Err(ApiError::validation("you cannot follow yourself").into());
        }
        let id = user_id.to_string();
        if self
            .catalog
            .call(move |c| cat::user_by_id(c, &id))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found("user").into());
        }
        let (a, b) = (caller.user_id.clone(), user_id.to_string());
        self.catalog
            .call(move |c| cat::set_follow(c, &a, &b, on))
            .await?;
        self.feed.engine.set_follow(&caller.user_id, user_id, on);
        Ok(FollowState {
            user_id: user_id.to_string(),
            following: on,
        })
    }

    pub async fn search_videos(&self, q: SearchQuery) -> Result<Page<Video>> {
        let text = q.q.trim();
        if text.is_empty() || text.chars().count() > 200 {
            return Err(ApiError::validation("q must be 1–200 characters").into());
        }
        let limit = q.limit.unwrap_or(20);
        if !(1..=50).contains(&limit) {
            return Err(ApiError::validation(format!("limit must be 1–50, got {limit}")).into());
        }
        let emb = self.feed.embed_query(text).await;
        let hits = match self
            .feed
            .engine
            .search(text, emb.as_deref(), limit as usize)
        {
            Ok(h) => h,
            // Without the index, search is keyword-only rather than down.
            Err(inference::InferenceError::IndexUnavailable(_)) => {
                self.feed.engine.search(text, None, limit as usize)?
            }
            Err(e) => return Err(e.into()),
        };
        let items = self
            .hydrate(hits.into_iter().map(|(id, _)| id).collect())
            .await?;
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    pub async fn hashtag_videos(&self, tag: &str, page: PageQuery) -> Result<Page<Video>> {
        let tag = normalize_tag(tag)?;
        let limit = page.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::validation(format!("limit must be 1–100, got {limit}")).into());
        }
        let offset: usize = match page.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .strip_prefix("o")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ApiError::validation("malformed cursor"))?,
        };
        let (ids, total) = self.feed.engine.hashtag(&tag, offset, limit as usize);
        let next = offset + ids.len();
        let items = self.hydrate(ids).await?;
        Ok(Page {
            items,
            next_cursor: (next < total).then(|| format!("o{next}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashtags_are_normalised_and_junk_refused() {
        assert_eq!(normalize_tag(" #Cooking").unwrap(), "cooking");
        assert_eq!(normalize_tag("street_food").unwrap(), "street_food");
        for bad in ["", "#", "two words", "a/b", &"x".repeat(51)] {
            assert!(normalize_tag(bad).is_err(), "{bad:?}");
        }
    }
}
