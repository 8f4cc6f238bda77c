//! Rate limits and a video's counts as a viewer sees them (flushed
//! counters plus what the hot store holds, and the viewer's own flags).

use api::wire::*;
use api::ApiError;

use super::Engagement;
use crate::error::Result;
use crate::store::catalog::{self as cat, VideoRow};

impl Engagement {
    /// Sliding-window rate limit on `key`; a 429 with `Retry-After` when
    /// over. The hot store decides (per process while Redis is away).
    pub async fn limit(
        &self,
        what: &str,
        key: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<()> {
        if limit == 0 {
            return Ok(());
        }
        let wait = self
            .hot
            .rate(&format!("{what}:{key}"), limit, window)
            .await?;
        match wait {
            None => Ok(()),
            Some(ms) => {
                let secs = (ms as u64).div_ceil(1000).max(1);
                let mut e = ApiError::new(
                    api::ErrorCode::RateLimited,
                    format!(
                        "too many {what}: at most {limit} per {} s; retry in {secs} s",
                        window.as_secs()
                    ),
                );
                e.retry_after = Some(secs);
                Err(e.into())
            }
        }
    }

    /// Flushed counters plus what the hot store holds.
    pub async fn video_counts(&self, id: &str) -> Result<VideoStats> {
        let vid = id.to_owned();
        let mut c = self
            .catalog
            .call(move |c| cat::video_stats(c, &vid))
            .await?;
        c.add(&self.hot.pending(id).await);
        let n = |v: i64| v.max(0) as u64;
        Ok(VideoStats {
            views: n(c.views),
            likes: n(c.likes),
            comments: n(c.comments),
            shares: n(c.shares),
            saves: n(c.saves),
        })
    }

    pub async fn video_with_engagement(
        &self,
        caller: Option<&Principal>,
        v: &VideoRow,
    ) -> Result<Video> {
        let mut wire = crate::store::video_wire(v);
        wire.stats = self.video_counts(&v.id).await?;
        if let Some(p) = caller {
            let (vid, uid) = (v.id.clone(), p.user_id.clone());
            let (liked, saved) = self
                .catalog
                .call(move |c| cat::viewer_flags(c, &vid, &uid))
                .await?;
            wire.viewer = ViewerEngagement { liked, saved };
        }
        Ok(wire)
    }
}
