//! The feed's HTTP-facing service: feed pages, interests, search and
//! hashtag pages — validation, catalog persistence, then the engine.

use std::collections::HashMap;

use api::wire::*;
use api::{ApiError, ApiResult};

use std::sync::Arc;

use super::recommend::Recommender;
use crate::engagement::Engagement;
use crate::error::Result;
use crate::store::catalog::{self as cat, Catalog};
use settings::Config;

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

/// How deep search results go: the last page ends here.
pub const SEARCH_DEPTH: usize = 1000;

/// The feed domain's service: what `api::Feed` runs on.
pub struct FeedService {
    config: Arc<Config>,
    catalog: Catalog,
    recommender: Arc<Recommender>,
    engagement: Arc<Engagement>,
}

impl FeedService {
    pub fn new(
        config: Arc<Config>,
        catalog: Catalog,
        recommender: Arc<Recommender>,
        engagement: Arc<Engagement>,
    ) -> Self {
        Self {
            config,
            catalog,
            recommender,
            engagement,
        }
    }

    /// The published videos among `ids`, in order: from the metadata
    /// cache, and what it lacks in one catalog read.
    async fn hydrate(&self, ids: Vec<String>) -> Result<Vec<Video>> {
        let meta = &self.recommender.meta;
        let (known, generation) = meta.get(&ids);
        let missing: Vec<String> = ids
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut read: HashMap<String, Arc<Video>> = HashMap::new();
        if !missing.is_empty() {
            let rows = self
                .catalog
                .read(move |c| cat::public_videos(c, &missing))
                .await?;
            let fresh: Vec<Arc<Video>> = rows
                .iter()
                .map(|r| Arc::new(crate::store::video_wire(r)))
                .collect();
            meta.insert(&fresh, generation);
            read = fresh.into_iter().map(|v| (v.id.clone(), v)).collect();
        }
        Ok(ids
            .iter()
            .zip(known)
            .filter_map(|(id, k)| k.or_else(|| read.get(id).cloned()))
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    pub async fn feed_page(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        q: FeedQuery,
    ) -> Result<Feed> {
        q.check()?;
        let limit = q.limit.unwrap_or(10);
        if let Some(p) = caller {
            self.engagement
                .limit(
                    "feed pages",
                    &p.user_id,
                    self.config.limits.feed_per_minute,
                    std::time::Duration::from_secs(60),
                )
                .await?;
        }
        let user = caller.map(|p| p.user_id.as_str());
        let served = self
            .recommender
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
        let videos = self.hydrate(ids).await?;
        if let Some(user) = user.filter(|_| super::experiment::records(engine_kind(kind))) {
            // What the viewer is answered, durable before the answer.
            let shown: Vec<(&str, &str)> = videos
                .iter()
                .map(|v| (v.id.as_str(), v.owner_id.as_str()))
                .collect();
            // Ranker, variant and experiment as the page was served (read
            // together by the engine, or by the recommender for a
            // fallback), never read again here.
            let events = super::experiment::impressions(
                user,
                engine_kind(kind),
                &served,
                &shown,
                cat::now_ms(),
            );
            if let Err(e) = self.engagement.record_impressions(events).await {
                tracing::warn!(error = %e, "impressions not recorded; the page is served anyway");
            }
        }
        let items = videos
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
            items,
            next_cursor: served.page.next_cursor,
            source: served.source.to_string(),
            prefetch_ids: served.page.prefetch_ids,
            degraded: served.degraded,
            // An anonymous caller is on no side (their empty id would hash
            // to one).
            variant: match (caller, served.page.variant) {
                (Some(_), inference::Variant::Candidate) => Variant::Candidate,
                _ => Variant::Control,
            },
        })
    }

    pub async fn set_interests(&self, caller: &Principal, req: Interests) -> Result<InterestsSet> {
        let mut tags = Vec::new();
        for (i, raw) in req.interests.iter().enumerate() {
            let t = normalize_tag(raw)
                .map_err(|e| ApiError::invalid(format!("interests[{i}]"), e.message))?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        if !(3..=20).contains(&tags.len()) {
            return Err(ApiError::invalid(
                "interests",
                format!("pick 3–20 distinct interests, got {}", tags.len()),
            )
            .into());
        }
        let (user, t) = (caller.user_id.clone(), tags.clone());
        self.catalog
            .call(move |c| cat::set_interests(c, &user, &t))
            .await?;
        self.recommender
            .apply_interests(&caller.user_id, &tags)
            .await;
        Ok(InterestsSet { interests: tags })
    }

    /// Search results best first, `limit` at a time from the cursor's
    /// offset, at most `SEARCH_DEPTH` deep. The ranking is recomputed per
    /// page: a video published between two pages can shift the results by
    /// one.
    pub async fn search_videos(&self, q: SearchQuery) -> Result<Page<Video>> {
        q.check()?;
        let text = q.q.trim();
        let limit = q.limit.unwrap_or(20) as usize;
        let offset = q
            .cursor
            .as_deref()
            .map(api::cursor::parse_offset)
            .transpose()?
            .unwrap_or(0);
        if offset >= SEARCH_DEPTH {
            return Err(api::cursor::bad().into());
        }
        // One more than the page, to know whether another follows.
        let want = (offset + limit + 1).min(SEARCH_DEPTH + 1);
        let emb = self.recommender.embed_query(text).await;
        let hits = match self.recommender.engine.search(text, emb.as_deref(), want) {
            Ok(h) => h,
            // Without the index, search is keyword-only rather than down.
            Err(inference::InferenceError::IndexUnavailable(_)) => {
                self.recommender.engine.search(text, None, want)?
            }
            Err(e) => return Err(e.into()),
        };
        let end = (offset + limit).min(SEARCH_DEPTH);
        let more = hits.len() > end && end < SEARCH_DEPTH;
        let ids = hits
            .into_iter()
            .skip(offset)
            .take(end - offset)
            .map(|(id, _)| id)
            .collect();
        let items = self.hydrate(ids).await?;
        Ok(Page {
            items,
            next_cursor: more.then(|| api::cursor::offset(end)),
        })
    }

    pub async fn hashtag_videos(&self, tag: &str, page: PageQuery) -> Result<Page<Video>> {
        page.check()?;
        let tag = normalize_tag(tag).map_err(|e| ApiError::invalid("tag", e.message))?;
        let limit = page.limit.unwrap_or(20);
        let offset = page
            .cursor
            .as_deref()
            .map(api::cursor::parse_offset)
            .transpose()?
            .unwrap_or(0);
        let (ids, total) = self
            .recommender
            .engine
            .hashtag(&tag, offset, limit as usize);
        let next = offset + ids.len();
        let items = self.hydrate(ids).await?;
        Ok(Page {
            items,
            next_cursor: (next < total).then(|| api::cursor::offset(next)),
        })
    }
}

impl api::Feed for FeedService {
    async fn feed(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        query: FeedQuery,
    ) -> ApiResult<Feed> {
        Ok(self.feed_page(caller, kind, query).await?)
    }

    async fn set_interests(&self, caller: &Principal, req: Interests) -> ApiResult<InterestsSet> {
        Ok(self.set_interests(caller, req).await?)
    }

    async fn search_videos(&self, query: SearchQuery) -> ApiResult<Page<Video>> {
        Ok(self.search_videos(query).await?)
    }

    async fn hashtag_videos(&self, tag: &str, page: PageQuery) -> ApiResult<Page<Video>> {
        Ok(self.hashtag_videos(tag, page).await?)
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
