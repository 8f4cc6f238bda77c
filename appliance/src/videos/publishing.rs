//! Progressive publishing: a video is playable as soon as the transcode's
//! first rung (and the audio) is complete, and its master playlist gains
//! the other rungs as they finish.
//!
//! Each [`media::ProgressEvent::Playable`] arrives on a transcode thread,
//! which waits while [`Publisher::playable`] uploads the rungs it has not
//! uploaded before, then the master that lists them, then commits the
//! ladder so far (`catalog::publish_playable`: `ready`, stage `growing`,
//! only while the job is still ours). A rung's files are uploaded once and
//! never change under their URLs; only the master is replaced (served with
//! a one-second cache lifetime while the ladder grows). [`Publisher::finish`]
//! uploads what is left (poster, storyboard, download) and the final
//! master; the job then commits with `catalog::publish`.
//!
//! A job resumed after a crash finds its video already `growing`: the rungs
//! it lists stay as they were uploaded, and only the others are uploaded.
//!
//! The audio's fingerprint arrives before the first `Playable`
//! ([`Publisher::audio_fingerprint`]): the copyright check and the video's
//! sound (`crate::sounds`) run then, while the transcode waits; a `block`
//! match stops the transcode before anything is uploaded.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::wire::GROWING;
use bytes::Bytes;

use super::Videos;
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, VideoRow};
use crate::store::{objects, LadderInfo, RenditionInfo};

pub(super) struct Publisher {
    app: Arc<Videos>,
    job_id: i64,
    owner: String,
    video_id: String,
    rt: tokio::runtime::Handle,
    cancel: Arc<AtomicBool>,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Directories of the ladder (rungs, `audio`) already in the store.
    uploaded: HashSet<String>,
    /// Whether leftovers of an earlier attempt were cleared (or there were
    /// none to clear: the video was already growing).
    cleared: bool,
    /// Why publishing stopped the transcode, when it did.
    error: Option<Error>,
    /// Seconds from the job's start to its first playable master.
    first_playable: Option<f64>,
    /// Why the copyright check refused the video, when it did.
    blocked: Option<String>,
}

impl Publisher {
    /// For a job on `video`; `cancel` stops its transcode.
    pub fn new(
        app: Arc<Videos>,
        job_id: i64,
        owner: &str,
        video: &VideoRow,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let mut state = State::default();
        if video.state == "ready" && video.stage == GROWING {
            state.cleared = true;
            if let Some(info) = video
                .ladder
                .as_deref()
                .and_then(|l| serde_json::from_str::<LadderInfo>(l).ok())
            {
                // The folders the published master points to.
                let names: Vec<String> = info.renditions.into_iter().map(|r| r.name).collect();
                app.hub.update(&video.id, |l| l.live_rungs = names.clone());
                state.uploaded.extend(info.folders);
            }
        }
        Self {
            app,
            job_id,
            owner: owner.to_owned(),
            video_id: video.id.clone(),
            rt: tokio::runtime::Handle::current(),
            cancel,
            started: Instant::now(),
            state: Mutex::new(state),
        }
    }

    /// Seconds from the job's start to its first playable master, if any.
    pub fn first_playable(&self) -> Option<f64> {
        self.lock().first_playable
    }

    /// Why the copyright check refused the video (the transcode was
    /// stopped before anything was published), if it did.
    pub fn blocked(&self) -> Option<String> {
        self.lock().blocked.clone()
    }

    /// Vets the audio (copyright check, then the video's sound) before
    /// anything is served. Called on the transcode thread, before the first
    /// `Playable`; blocks until done. A `block` match, or a failure, stops
    /// the transcode.
    pub fn audio_fingerprint(&self, fingerprint: &media::AudioFingerprint) {
        if self.cancel.load(Ordering::Relaxed) {
            return;
        }
        let vetted = self
            .rt
            .block_on(self.app.sounds.vet(&self.video_id, fingerprint));
        match vetted {
            Ok(crate::sounds::Verdict::Clear) => {}
            Ok(crate::sounds::Verdict::Blocked(reason)) => {
                tracing::warn!(video = %self.video_id, "{reason}");
                self.lock().blocked = Some(reason);
                self.cancel.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(video = %self.video_id, "vetting the audio: {e}");
                self.lock().error = Some(e);
                self.cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The failure that stopped the transcode, if publishing stopped it.
    pub fn take_error(&self) -> Option<Error> {
        self.lock().error.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the rungs the staging directory `dir` can play now.
    /// Called on a transcode thread (never a runtime thread); blocks until
    /// the rungs are uploaded and committed. A failure cancels the
    /// transcode and is kept for [`take_error`](Self::take_error).
    pub fn playable(
        &self,
        dir: &Path,
        rungs: &[media::RenditionSummary],
        audio: Option<&str>,
        master: &str,
        size: (u32, u32),
    ) {
        if self.cancel.load(Ordering::Relaxed) {
            return;
        }
        let outcome = self
            .rt
            .block_on(self.publish(dir, rungs, audio, master, size));
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                // The job is no longer ours, or the video was deleted.
                self.cancel.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(video = %self.video_id, "publishing playable rungs: {e}");
                self.lock().error = Some(e);
                self.cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn publish(
        &self,
        dir: &Path,
        rungs: &[media::RenditionSummary],
        audio: Option<&str>,
        master: &str,
        size: (u32, u32),
    ) -> Result<bool> {
        let app = &self.app;
        let prefix = objects::ladder_prefix(&self.video_id);
        let (cleared, uploaded) = {
            let st = self.lock();
            (st.cleared, st.uploaded.clone())
        };
        if !cleared {
            // Leftovers of an attempt that died before anything was
            // playable; nothing under the prefix is served yet.
            app.objects.delete_prefix(&prefix).await?;
            self.lock().cleared = true;
        }
        // Each track's folder (a replaced track has a new one).
        let mut dirs: Vec<String> = rungs
            .iter()
            .filter_map(|r| r.playlist.parent()?.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        dirs.extend(audio.map(str::to_owned));
        for d in dirs.iter().filter(|d| !uploaded.contains(*d)) {
            app.objects
                .upload_dir(&dir.join(d), &format!("{prefix}/{d}"))
                .await?;
            self.lock().uploaded.insert(d.clone());
        }
        app.objects
            .put(
                &format!("{prefix}/{}", media::playlist::MASTER),
                Bytes::copy_from_slice(master.as_bytes()),
            )
            .await?;
        let duration_secs = rungs.first().map_or(0.0, |r| r.duration_secs);
        let info = LadderInfo {
            duration_secs,
            width: size.0,
            height: size.1,
            renditions: rungs.iter().map(RenditionInfo::from).collect(),
            placement: String::new(),
            frames: 0,
            repairs: Vec::new(),
            folders: dirs,
        };
        let (job, owner, vid, json) = (
            self.job_id,
            self.owner.clone(),
            self.video_id.clone(),
            serde_json::to_string(&info).unwrap_or_default(),
        );
        let committed = app
            .catalog
            .call(move |c| cat::publish_playable(c, job, &owner, &vid, &json))
            .await?;
        if !committed {
            return Ok(false);
        }
        app.origin_cache.invalidate(&self.video_id);
        app.feed.ladder_changed(&self.video_id);
        let first = {
            let mut st = self.lock();
            let first = st.first_playable.is_none();
            st.first_playable
                .get_or_insert(self.started.elapsed().as_secs_f64());
            first
        };
        let names: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
        tracing::info!(video = %self.video_id, rungs = ?names, secs = self.started.elapsed().as_secs_f32(), "playable");
        if first {
            app.feed.embed_wake.notify_one();
        }
        app.hub.update(&self.video_id, |l| {
            l.live_rungs = rungs.iter().map(|r| r.name.clone()).collect();
        });
        super::jobs::announce(app, &self.video_id).await;
        Ok(true)
    }

    /// Uploads what the finished ladder in `out_dir` holds beyond the
    /// rungs already published: its top-level files (poster, storyboard,
    /// download), any rung not yet uploaded, and last the final master.
    pub async fn finish(&self, out_dir: &Path) -> Result<()> {
        let app = &self.app;
        let prefix = objects::ladder_prefix(&self.video_id);
        let uploaded = self.lock().uploaded.clone();
        if !self.lock().cleared {
            app.objects.delete_prefix(&prefix).await?;
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(out_dir).map_err(Error::io("listing", out_dir.display()))? {
            let entry = entry.map_err(Error::io("listing", out_dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                if !uploaded.contains(&name) {
                    app.objects
                        .upload_dir(&path, &format!("{prefix}/{name}"))
                        .await?;
                }
            } else if name != media::playlist::MASTER {
                files.push((name, path));
            }
        }
        files.push((
            media::playlist::MASTER.to_owned(),
            out_dir.join(media::playlist::MASTER),
        ));
        for (name, path) in files {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(Error::io("reading", path.display()))?;
            app.objects
                .put(&format!("{prefix}/{name}"), Bytes::from(bytes))
                .await?;
        }
        Ok(())
    }
}
