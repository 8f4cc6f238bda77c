//! Transcode workers and the janitor. Jobs live in the catalog (see
//! `catalog::claim`): a worker leases one, renews the lease while it runs,
//! and ends it in exactly one of: published (`catalog::publish`, the
//! commit point), retried later (transient fault, exponential backoff),
//! failed (permanent fault, or out of attempts), or released (shutdown).
//! A worker that loses its lease (video deleted, job cancelled) stops its
//! transcode and publishes nothing; anything it had uploaded is removed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::wire::{StatusEvent, VideoState, VideoStatus, GROWING};
use tokio::sync::watch;

use super::publishing::Publisher;
use super::{deleted_event, status_wire, Videos};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339, JobRow, Settle};
use crate::store::{objects, LadderInfo, RenditionInfo};
use settings::Config;

#[derive(Default)]
pub struct Counters {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub cancelled: AtomicU64,
    /// Source frames transcoded, and milliseconds spent on them.
    pub frames: AtomicU64,
    pub transcode_ms: AtomicU64,
}

pub fn worker_count(config: &Config, inventory: &hardware::Inventory) -> usize {
    if config.jobs.workers > 0 {
        return config.jobs.workers;
    }
    // One CPU transcode already keeps ~8 cores busy (a thread per rung plus
    // x264's own threads on the top rung).
    (inventory.cpu.logical_cores / 8).max(1)
}

/// Starts the workers and the janitor; they stop when `shutdown` turns true
/// (a running transcode is stopped and its job released, so the next start
/// runs it again at once).
pub fn spawn(
    app: Arc<Videos>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for i in 0..worker_count(&app.config, &app.inventory) {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        handles.push(tokio::spawn(async move { worker(app, i, shutdown).await }));
    }
    handles.push(tokio::spawn(janitor(app, shutdown)));
    handles
}

async fn worker(app: Arc<Videos>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let owner = format!("{}:{}:{index}", hostname(), std::process::id());
    let lease = Duration::from_secs(app.config.jobs.lease_secs);
    while !*shutdown.borrow() {
        let o = owner.clone();
        match app.catalog.call(move |c| cat::claim(c, &o, lease)).await {
            Ok(Some(job)) => {
                let id = job.id;
                if let Err(e) = run(&app, &owner, job, &shutdown).await {
                    tracing::error!(job = id, "job bookkeeping failed: {e}");
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = app.work_ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!("claiming a job: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

async fn run(
    app: &Arc<Videos>,
    owner: &str,
    job: JobRow,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let vid = job.video_id.clone();
    let video = app.catalog.call(move |c| cat::video(c, &vid)).await?;
    // A video already playable with part of its ladder is a job resumed
    // after a crash: it finishes the ladder.
    let Some(video) =
        video.filter(|v| v.state == "processing" || (v.state == "ready" && v.stage == GROWING))
    else {
        settle(app, owner, &job, Settle::Failed("the video is gone".into())).await?;
        return Ok(());
    };
    if job.attempts > job.max_attempts {
        let reason = format!(
            "gave up after {} attempts (the process running the last one died)",
            job.max_attempts
        );
        settle(app, owner, &job, Settle::Failed(reason)).await?;
        app.counters.failed.fetch_add(1, Ordering::Relaxed);
        announce_final(app, &job.video_id).await;
        return Ok(());
    }
    tracing::info!(job = job.id, video = %job.video_id, attempt = job.attempts, "transcode starting");
    set_stage(app, &job.video_id, "transcoding").await?;
    app.hub.update(&job.video_id, |l| {
        l.stage = "transcoding".into();
        l.rungs.clear();
    });
    let started = status_wire(&video, Some(&job), app.hub.live(&job.video_id).as_ref());
    app.hub.publish(StatusEvent {
        name: "transcode.started",
        status: started,
    });

    let cancel = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(
        app.clone(),
        owner.to_owned(),
        job.id,
        cancel.clone(),
        shutdown.clone(),
    ));
    let scratch = app.work_dir.join(format!("job-{}", job.id));
    let started_at = Instant::now();
    let publisher = Arc::new(Publisher::new(
        app.clone(),
        job.id,
        owner,
        &video,
        cancel.clone(),
    ));
    let outcome = transcode_and_upload(
        app,
        &job,
        &video,
        &scratch,
        cancel.clone(),
        publisher.clone(),
    )
    .await;
    heartbeat.abort();
    let _ = std::fs::remove_dir_all(&scratch);

    // The copyright check refused the audio and stopped the transcode
    // before anything was published: the job fails with its reason.
    if let (Some(reason), Err(_)) = (publisher.blocked(), &outcome) {
        tracing::warn!(job = job.id, video = %job.video_id, "refused by the copyright check");
        app.counters.failed.fetch_add(1, Ordering::Relaxed);
        settle(app, owner, &job, Settle::Failed(reason)).await?;
        announce_final(app, &job.video_id).await;
        return Ok(());
    }

    match outcome {
        Ok(ladder) => {
            let (vid, o, info) = (
                job.video_id.clone(),
                owner.to_owned(),
                serde_json::to_string(&ladder).unwrap_or_default(),
            );
            let published = app
                .catalog
                .call(move |c| cat::publish(c, job.id, &o, &vid, &info))
                .await?;
            if published {
                app.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                app.counters
                    .frames
                    .fetch_add(ladder.frames, Ordering::Relaxed);
                app.counters
                    .transcode_ms
                    .fetch_add(started_at.elapsed().as_millis() as u64, Ordering::Relaxed);
                tracing::info!(job = job.id, video = %job.video_id, secs = started_at.elapsed().as_secs_f32(), first_playable_secs = ?publisher.first_playable(), "published");
                // The gate and the feed's copy knew the growing ladder.
                app.origin_cache.invalidate(&job.video_id);
                app.feed.ladder_changed(&job.video_id);
                app.feed.embed_wake.notify_one();
            } else {
                app.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                remove_if_unwanted(app, &job.video_id).await?;
            }
            announce_final(app, &job.video_id).await;
        }
        Err(Error::Media(media::MediaError::Cancelled)) => {
            if *shutdown.borrow() {
                tracing::info!(job = job.id, "released for the next start");
                settle(app, owner, &job, Settle::Release).await?;
            } else {
                tracing::info!(job = job.id, video = %job.video_id, "cancelled");
                app.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                remove_if_unwanted(app, &job.video_id).await?;
            }
        }
        Err(e) if e.is_transient() && job.attempts < job.max_attempts => {
            let backoff = app
                .config
                .jobs
                .backoff_secs
                .saturating_mul(1 << (job.attempts - 1).min(16))
                .min(600);
            let message = e.to_string();
            tracing::warn!(job = job.id, video = %job.video_id, retry_in = backoff, "transient failure: {message}");
            app.counters.retried.fetch_add(1, Ordering::Relaxed);
            settle(
                app,
                owner,
                &job,
                Settle::Retry {
                    at: now_ms() + backoff as i64 * 1000,
                    error: message,
                },
            )
            .await?;
            app.hub
                .update(&job.video_id, |l| l.stage = "retrying".into());
            announce(app, &job.video_id).await;
        }
        Err(e) => {
            let reason = failure_reason(&e);
            tracing::warn!(job = job.id, video = %job.video_id, "failed: {e}");
            app.counters.failed.fetch_add(1, Ordering::Relaxed);
            settle(app, owner, &job, Settle::Failed(reason)).await?;
            announce_final(app, &job.video_id).await;
        }
    }
    Ok(())
}

/// What a creator is told: a rejection's own words; otherwise the error
/// without host paths.
fn failure_reason(e: &Error) -> String {
    match e {
        Error::Media(media::MediaError::Rejected { code, reason, .. }) => {
            format!("{}: {reason}", code.as_str())
        }
        Error::Media(_)
        | Error::Io { .. }
        | Error::Objects { .. }
        | Error::Catalog { .. }
        | Error::Task(_)
        | Error::Analytics { .. }
        | Error::Hot { .. }
        | Error::Inference(_) => {
            "the transcode failed on this box; an operator can see why in its log".into()
        }
        Error::Config(_) | Error::Hardware(_) | Error::Api(_) => e.to_string(),
    }
}

async fn settle(app: &Videos, owner: &str, job: &JobRow, outcome: Settle) -> Result<()> {
    let (id, owner) = (job.id, owner.to_owned());
    app.catalog
        .call(move |c| cat::settle(c, id, &owner, outcome))
        .await?;
    Ok(())
}

async fn set_stage(app: &Videos, video_id: &str, stage: &'static str) -> Result<()> {
    let vid = video_id.to_owned();
    app.catalog
        .call(move |c| cat::set_video_stage(c, &vid, stage))
        .await
}

/// Publishes the video's current state to its subscribers.
pub(super) async fn announce(app: &Videos, video_id: &str) {
    let vid = video_id.to_owned();
    let state = app
        .catalog
        .call(move |c| Ok((cat::video(c, &vid)?, cat::job_for_video(c, &vid)?)))
        .await;
    if let Ok((Some(v), job)) = state {
        let live = app.hub.live(video_id);
        app.hub.publish(StatusEvent::snapshot(status_wire(
            &v,
            job.as_ref(),
            live.as_ref(),
        )));
    }
}

async fn announce_final(app: &Videos, video_id: &str) {
    announce(app, video_id).await;
    // The outcome is committed: its owner hears it plays, or why not.
    app.notifications.video_settled(video_id).await;
    // Deleted meanwhile (no row any more): subscribers still get an end.
    if app.hub.live(video_id).is_some() {
        app.hub.publish(deleted_event(video_id));
    }
}

/// After a publication that did not commit: if the video is gone or being
/// deleted, nothing of its ladder may stay.
async fn remove_if_unwanted(app: &Videos, video_id: &str) -> Result<()> {
    let vid = video_id.to_owned();
    let v = app.catalog.call(move |c| cat::video(c, &vid)).await?;
    if v.is_none_or(|v| v.state == "deleting") {
        app.objects
            .delete_prefix(&objects::video_prefix(video_id))
            .await?;
    }
    Ok(())
}

async fn heartbeat(
    app: Arc<Videos>,
    owner: String,
    job_id: i64,
    cancel: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lease = Duration::from_secs(app.config.jobs.lease_secs);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let mut shutdown_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = shutdown.changed(), if shutdown_at.is_none() => {}
        }
        if *shutdown.borrow() {
            let since = *shutdown_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= grace {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        let o = owner.clone();
        match app
            .catalog
            .call(move |c| cat::renew(c, job_id, &o, lease))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Cancelled (video deleted) or taken over: stop now.
                cancel.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(job = job_id, "renewing the lease: {e}"),
        }
    }
}

async fn transcode_and_upload(
    app: &Arc<Videos>,
    job: &JobRow,
    video: &cat::VideoRow,
    scratch: &Path,
    cancel: Arc<AtomicBool>,
    publisher: Arc<Publisher>,
) -> Result<LadderInfo> {
    std::fs::create_dir_all(scratch).map_err(Error::io("creating", scratch.display()))?;
    let input = app
        .objects
        .local_copy(&video.source_key, &scratch.join("source"))
        .await?;
    // A duet, stitch or re-timed upload: the edit stage writes the
    // intermediate the ladder is made from (`remix`).
    let edited = super::remix::edit_stage(app, video, &input, scratch, cancel.clone()).await?;
    let input = edited.clone().unwrap_or(input);
    let out_dir = scratch.join("ladder");
    let opts = media::TranscodeOptions {
        backend: app
            .config
            .transcode
            .backend
            .parse()
            .map_err(|e: hardware::HardwareError| Error::Config(e.to_string()))?,
        rungs: app.config.transcode.rungs.clone(),
        limits: media::Limits {
            max_bytes: app.config.uploads.max_file_size,
            ..Default::default()
        },
        encoder: media::backend::EncoderSettings {
            preset: app.config.transcode.preset.clone(),
            ..Default::default()
        },
        cancel: Some(cancel.clone()),
        // An intermediate is never the top rung as it is.
        remux_source: app.config.transcode.remux_source && edited.is_none(),
        early_rung: app.config.transcode.early_rung,
    };
    let (app2, vid, attempt) = (app.clone(), job.video_id.clone(), job.attempts);
    let out = out_dir.clone();
    let publisher2 = publisher.clone();
    let transcoded = tokio::task::spawn_blocking(move || {
        let progress = |ev: media::ProgressEvent| match ev {
            media::ProgressEvent::Playable {
                dir,
                rungs,
                audio,
                master,
                size,
            } => publisher2.playable(&dir, &rungs, audio.as_deref(), &master, size),
            media::ProgressEvent::AudioFingerprint { fingerprint } => {
                publisher2.audio_fingerprint(&fingerprint)
            }
            ev @ (media::ProgressEvent::Started { .. }
            | media::ProgressEvent::Rung { .. }
            | media::ProgressEvent::Packaging
            | media::ProgressEvent::Completed) => on_progress(&app2, &vid, attempt, ev),
        };
        media::transcode(&input, &out, &opts, &app2.inventory, &progress)
    })
    .await?;
    let ladder = match (transcoded, publisher.take_error()) {
        // Publishing failed and stopped the transcode: that is the error.
        (Err(media::MediaError::Cancelled), Some(e)) => return Err(e),
        (result, _) => result?,
    };

    set_stage(app, &job.video_id, "publishing").await?;
    app.hub
        .update(&job.video_id, |l| l.stage = "publishing".into());
    announce(app, &job.video_id).await;
    if cancel.load(Ordering::Relaxed) {
        return Err(media::MediaError::Cancelled.into());
    }
    publisher.finish(&out_dir).await?;
    let top = ladder.plan.rungs.first();
    Ok(LadderInfo {
        duration_secs: ladder.frames as f64 / ladder.plan.fps(),
        width: top.map_or(0, |r| r.width),
        height: top.map_or(0, |r| r.height),
        renditions: ladder.renditions.iter().map(RenditionInfo::from).collect(),
        placement: ladder.placement.to_string(),
        frames: ladder.frames,
        repairs: ladder.repairs.clone(),
        folders: Vec::new(),
    })
}

fn on_progress(app: &Videos, video_id: &str, attempt: u32, ev: media::ProgressEvent) {
    let live = match ev {
        media::ProgressEvent::Started { rungs, .. } => app.hub.update(video_id, |l| {
            l.stage = "transcoding".into();
            l.rungs = rungs.into_iter().map(|r| (r, 0)).collect();
        }),
        media::ProgressEvent::Rung { rung, percent } => app.hub.update(video_id, |l| {
            l.rungs.insert(rung, percent);
        }),
        media::ProgressEvent::Packaging => {
            app.hub.update(video_id, |l| l.stage = "packaging".into())
        }
        media::ProgressEvent::Completed
        | media::ProgressEvent::Playable { .. }
        | media::ProgressEvent::AudioFingerprint { .. } => return,
    };
    // Playable already (some rungs published): still `ready`, growing.
    let (status, stage) = if live.live_rungs.is_empty() {
        (VideoState::Processing, live.stage.clone())
    } else {
        (VideoState::Ready, GROWING.to_owned())
    };
    app.hub.publish(StatusEvent {
        name: "transcode.progress",
        status: VideoStatus {
            video_id: video_id.to_owned(),
            status,
            percent: live.percent(),
            stage,
            rungs: live.rungs,
            live_rungs: live.live_rungs,
            attempts: attempt,
            error: None,
            updated_at: rfc3339(now_ms()),
        },
    });
}

/// Housekeeping that must happen even after a crash: finish interrupted
/// deletions, expire upload sessions, drop chunks of finished uploads,
/// forget old idempotency keys. Runs at start and then every minute.
async fn janitor(app: Arc<Videos>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sweep(&app).await {
            tracing::warn!("janitor: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

pub async fn sweep(app: &Videos) -> Result<()> {
    for id in app.catalog.call(|c| cat::deleting_videos(c, 100)).await? {
        app.finish_delete(&id).await?;
    }
    let now = now_ms();
    for id in app
        .catalog
        .call(move |c| cat::expired_uploads(c, now, 100))
        .await?
    {
        let uid = id.clone();
        let upload = app
            .catalog
            .call(move |c| {
                cat::set_upload_status(c, &uid, "expired")?;
                cat::upload(c, &uid)
            })
            .await?;
        // A source assembled just before a crash, never turned into a video.
        if let Some(u) = upload {
            let vid = u.video_id.clone();
            if app
                .catalog
                .call(move |c| cat::video(c, &vid))
                .await?
                .is_none()
            {
                app.objects
                    .delete_prefix(&objects::video_prefix(&u.video_id))
                    .await?;
            }
        }
    }
    for id in app.catalog.call(|c| cat::finished_uploads(c, 100)).await? {
        app.objects
            .delete_prefix(&objects::upload_prefix(&id))
            .await?;
        app.catalog
            .call(move |c| cat::forget_chunks(c, &id))
            .await?;
    }
    let day_ago = now - 86_400_000;
    app.catalog
        .call(move |c| cat::expire_keys(c, day_ago))
        .await?;
    Ok(())
}
