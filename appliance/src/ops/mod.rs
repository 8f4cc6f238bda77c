//! Operations: what an operator asks the box — hardware inventory and
//! placement, recent jobs, reprocessing a video, the A/B experiment report
//! (recounted from the analytics store), readiness, Prometheus metrics —
//! and `appliance doctor`.
//!
//! May call: every domain below the composition root (`store`, `videos`,
//! `live`, `feed`, `engagement`), read-only except `reprocess`.
//! Invariants: readiness and metrics never fail the request (a broken
//! dependency is part of the answer); an impossible configured backend is
//! reported, not a 500.

pub mod doctor;
mod experiments;
mod host;
mod metrics;
mod readiness;
pub mod recent;
mod status;

use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult};

use crate::engagement::Engagement;
use crate::feed::Recommender;
use crate::live::Live;
use crate::store::catalog::{self as cat, Catalog};
use crate::store::Objects;
use crate::videos::Videos;
use settings::Config;

/// The ops domain's service: what `api::Ops` runs on.
pub struct Ops {
    config: Arc<Config>,
    catalog: Catalog,
    objects: Objects,
    inventory: Arc<hardware::Inventory>,
    videos: Arc<Videos>,
    feed: Arc<Recommender>,
    engagement: Arc<Engagement>,
    conns: Arc<api::ConnStats>,
    live: Arc<Live>,
}

impl Ops {
    pub fn new(
        videos: Arc<Videos>,
        feed: Arc<Recommender>,
        engagement: Arc<Engagement>,
        conns: Arc<api::ConnStats>,
        live: Arc<Live>,
    ) -> Self {
        Self {
            config: videos.config.clone(),
            catalog: videos.catalog.clone(),
            objects: videos.objects.clone(),
            inventory: videos.inventory.clone(),
            videos,
            feed,
            engagement,
            conns,
            live,
        }
    }
}

impl api::Ops for Ops {
    async fn inventory(&self) -> ApiResult<serde_json::Value> {
        // An impossible configured backend is part of the answer, not a 500.
        let placement = match self
            .config
            .transcode
            .backend
            .parse::<hardware::BackendRequest>()
            .and_then(|r| self.inventory.place(r))
        {
            Ok(p) => serde_json::json!(p),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let utilisation: Vec<_> = self
            .inventory
            .gpus
            .iter()
            .map(|g| {
                g.pci_bus_id
                    .as_deref()
                    .and_then(|pci| hardware::nvidia::nvml::get().ok()?.utilisation(pci))
            })
            .collect();
        Ok(serde_json::json!({
            "hardware": &*self.inventory,
            "stages": self.inventory.stage_report(),
            "load": self.inventory.load(),
            "utilisation": utilisation,
            "gpuFallbacks": media::gpu_fallbacks(),
            "placement": placement,
            "workers": crate::videos::worker_count(&self.config, &self.inventory),
            "objects": self.objects.describe(),
        }))
    }

    async fn jobs(&self, query: JobsQuery) -> ApiResult<Page<Job>> {
        query.check()?;
        let limit = query.limit.unwrap_or(100);
        let before = query
            .cursor
            .as_deref()
            .map(api::cursor::parse_seq)
            .transpose()?;
        // One more than the page, to know whether another follows.
        let rows = self
            .catalog
            .call(move |c| cat::recent_jobs(c, before, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |j| api::cursor::seq(j.id),
            status::job_of,
        ))
    }

    async fn reprocess(&self, video_id: &str) -> ApiResult<Accepted> {
        let (id, max) = (video_id.to_owned(), self.config.jobs.max_attempts);
        let ok = self
            .catalog
            .call(move |c| cat::requeue_video(c, &id, max))
            .await?;
        if !ok {
            return Err(ApiError::conflict(
                "only a ready or failed video can be reprocessed",
            ));
        }
        // The old ladder is not served while the video is `processing`; the
        // worker replaces it before publishing, and it is embedded again.
        self.videos.origin_cache.invalidate(video_id);
        self.feed.forget_video(video_id);
        self.videos.work_ready.notify_one();
        Ok(Accepted {
            video_id: video_id.to_owned(),
            status: VideoState::Processing,
        })
    }

    async fn experiments(&self) -> ApiResult<ExperimentReport> {
        self.experiment_report().await
    }

    async fn readiness(&self) -> Health {
        readiness::readiness(self).await
    }

    async fn status(&self, admin: bool) -> StatusReport {
        status::report(self, admin).await
    }

    async fn metrics(&self) -> String {
        metrics::render(self).await
    }
}
