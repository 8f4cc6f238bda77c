//! Videos: uploads (resumable chunks and single-shot), the durable job
//! queue's workers and janitor, the status hub (SSE) and its fan-out
//! between processes, the CLI progress bars, the video endpoints, and the
//! origin's lookups and stills at any time.
//!
//! May call: `store` (rows and objects), `accounts` (a creator's page
//! checks the user), `engagement` (rate limits, counts, forgetting a
//! deleted video's counters, the hot store's pub/sub for fan-out), `feed`
//! (waking the embed loop on publish, forgetting a deleted video),
//! `notifications` (an upload's outcome, told to its owner).
//!
//! Invariants: "a chunk is stored" in `uploads` (`store_chunk`: size and
//! digest checked, object first, then its row; a repeat is harmless); "a
//! job is claimed" in `store::catalog::jobs::claim` under a lease that
//! `jobs` renews; a video is published only by `store::catalog::publish`
//! after its whole ladder is uploaded, and never if it was deleted
//! meanwhile; "a segment is served" by `origin` (ready and not private,
//! looked up through the catalog's read pool) and `api::routes::origin`.

mod fanout;
mod hub;
mod jobs;
mod library;
mod origin;
pub mod origin_cache;
mod playback;
pub mod progress;
mod publishing;
mod remix;
mod stills;
mod tus;
mod uploads;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use api::wire::*;
use tokio::sync::Notify;

pub use fanout::spawn as spawn_fanout;
pub use hub::Hub;
pub use jobs::{spawn, worker_count, Counters};

use crate::accounts::Accounts;
use crate::engagement::Engagement;
use crate::error::Result;
use crate::feed::Recommender;
use crate::notifications::Notifications;
use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog, VideoRow};
use crate::store::{objects, video_state, LadderInfo, Objects};
use settings::Config;

/// The videos domain's state: what `api::Uploads`, `api::Videos` and
/// `api::Origin` run on, and what the workers share.
pub struct Videos {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub objects: Objects,
    pub hub: Hub,
    pub inventory: Arc<hardware::Inventory>,
    /// Wakes idle workers when a job is enqueued.
    pub work_ready: Notify,
    /// Uploads being completed right now (a second complete waits its turn
    /// with a 409 instead of assembling the same file twice).
    completing: Mutex<HashSet<String>>,
    /// tus uploads a `PATCH` is writing right now (one writer per upload;
    /// a second `PATCH` is a 409, which tus clients retry after a `HEAD`).
    tus_writing: Mutex<HashSet<String>>,
    pub work_dir: PathBuf,
    pub counters: Counters,
    /// What the origin answers without asking; every way out of `ready`
    /// invalidates it.
    pub origin_cache: origin_cache::OriginCache,
    /// The `[playback]` keys: tokens issued and checked (`playback`).
    pub playback: playback::Tokens,
    accounts: Arc<Accounts>,
    feed: Arc<Recommender>,
    engagement: Arc<Engagement>,
    /// Tells an upload's owner it is ready or failed (`jobs`).
    notifications: Arc<Notifications>,
    /// Fingerprints' sounds and the copyright check (`publishing`), and
    /// the `soundId` an upload names (`uploads`).
    pub sounds: Arc<crate::sounds::Sounds>,
}

impl Videos {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        catalog: Catalog,
        objects: Objects,
        inventory: Arc<hardware::Inventory>,
        accounts: Arc<Accounts>,
        feed: Arc<Recommender>,
        engagement: Arc<Engagement>,
        notifications: Arc<Notifications>,
    ) -> Self {
        let sounds_catalog = catalog.clone();
        Self {
            work_dir: config.storage.data_dir.join("work"),
            playback: playback::Tokens::from_config(&config.playback),
            config,
            catalog,
            objects,
            hub: Hub::default(),
            inventory,
            work_ready: Notify::new(),
            completing: Mutex::new(HashSet::new()),
            tus_writing: Mutex::new(HashSet::new()),
            counters: Counters::default(),
            origin_cache: Default::default(),
            sounds: Arc::new(crate::sounds::Sounds::new(sounds_catalog)),
            accounts,
            feed,
            engagement,
            notifications,
        }
    }

    /// The status of a video: durable state from the catalog, live
    /// progress from the hub.
    pub async fn status_of(&self, v: &VideoRow) -> Result<VideoStatus> {
        let vid = v.id.clone();
        let job = self
            .catalog
            .call(move |c| cat::job_for_video(c, &vid))
            .await?;
        let live = self.hub.live(&v.id);
        Ok(status_wire(v, job.as_ref(), live.as_ref()))
    }

    pub async fn delete_now(&self, video_id: &str) -> Result<()> {
        let id = video_id.to_owned();
        let existed = self
            .catalog
            .call(move |c| cat::begin_delete(c, &id))
            .await?;
        self.origin_cache.invalidate(video_id);
        if existed {
            self.hub.publish(deleted_event(video_id));
        }
        self.feed.forget_video(video_id);
        self.engagement.forget_video(video_id);
        self.finish_delete(video_id).await
    }

    /// Removes a `deleting` video's objects, then its row (the janitor
    /// re-runs this for deletions a crash interrupted).
    pub async fn finish_delete(&self, video_id: &str) -> Result<()> {
        self.origin_cache.invalidate(video_id);
        self.objects
            .delete_prefix(&objects::video_prefix(video_id))
            .await?;
        let id = video_id.to_owned();
        self.catalog.call(move |c| cat::finish_delete(c, &id)).await
    }

    /// Publishes a ladder made elsewhere (a live recording) as a `ready`
    /// video: its files go up under the video's prefix first, then the row
    /// appears already published, so nothing half-uploaded is ever served;
    /// the feed embeds it like any published video.
    pub async fn publish_ladder(&self, row: VideoRow, dir: &std::path::Path) -> Result<()> {
        let prefix = objects::ladder_prefix(&row.id);
        self.objects.upload_dir(dir, &prefix).await?;
        let id = row.id.clone();
        if let Err(e) = self.catalog.call(move |c| cat::insert_video(c, &row)).await {
            let _ = self
                .objects
                .delete_prefix(&objects::video_prefix(&id))
                .await;
            return Err(e);
        }
        self.feed.embed_wake.notify_one();
        tracing::info!(video = %id, "published a ladder made outside the job queue");
        Ok(())
    }
}

pub fn status_wire(
    v: &VideoRow,
    job: Option<&cat::JobRow>,
    live: Option<&hub::Live>,
) -> VideoStatus {
    let state = video_state(&v.state);
    let growing = state == VideoState::Ready && v.stage == GROWING;
    let (stage, rungs, percent) = match (state, live) {
        (VideoState::Processing, Some(l)) if !l.stage.is_empty() => {
            (l.stage.clone(), l.rungs.clone(), l.percent())
        }
        (VideoState::Ready, Some(l)) if growing => (v.stage.clone(), l.rungs.clone(), l.percent()),
        (VideoState::Ready, _) => (
            v.stage.clone(),
            Default::default(),
            if growing { 0.0 } else { 100.0 },
        ),
        (VideoState::Processing | VideoState::Failed, _) => {
            (v.stage.clone(), Default::default(), 0.0)
        }
    };
    VideoStatus {
        video_id: v.id.clone(),
        status: state,
        stage,
        percent,
        rungs,
        live_rungs: match state {
            VideoState::Ready => v
                .ladder
                .as_deref()
                .and_then(|l| serde_json::from_str::<LadderInfo>(l).ok())
                .map(|l| l.renditions.into_iter().map(|r| r.name).collect())
                .unwrap_or_default(),
            VideoState::Processing | VideoState::Failed => Vec::new(),
        },
        attempts: job.map_or(0, |j| j.attempts),
        error: v.failure.clone(),
        updated_at: rfc3339(v.updated_at),
    }
}

/// The last event subscribers of a deleted video get.
pub fn deleted_event(video_id: &str) -> StatusEvent {
    StatusEvent {
        name: "transcode.failed",
        status: VideoStatus {
            video_id: video_id.to_owned(),
            status: VideoState::Failed,
            stage: "deleted".into(),
            percent: 0.0,
            rungs: Default::default(),
            live_rungs: Vec::new(),
            attempts: 0,
            error: Some("the video was deleted".into()),
            updated_at: rfc3339(now_ms()),
        },
    }
}
