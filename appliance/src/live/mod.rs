//! Live channels in the server: RTSP cameras pulled into live HLS ladders
//! (`media::live`), served by the origin under `/live/{id}/`, supervised
//! here — created, listed, stopped, started again with the box — and
//! recorded to VOD (`recording`). Implements `api::Live`.
//!
//! May call: `store` (the channel rows; the catalog's users for
//! ownership), `videos` (publishing a recording as a ready video).
//!
//! Invariants:
//! - a channel's row is written before its ingest starts, and marked
//!   stopped before its ingest stops, so a crash of the box at any point
//!   brings back exactly the channels that were meant to run;
//! - a running channel holds its share of the live capacity (`capacity`)
//!   until it stops; one that does not fit is refused (409) with the numbers;
//! - the camera URL's credentials are stored in the catalog and given to
//!   the ingest only: every answer and log line shows the redacted URL;
//! - when the box goes down, channels are suspended (last segment
//!   published, playlists left open); only a stop ends them with
//!   `EXT-X-ENDLIST`;
//! - a channel's files live in `<data_dir>/live/<id>/`, served as written
//!   (the origin's grammar admits nothing else).

mod capacity;
mod files;
mod recording;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::wire::*;
use api::{ApiError, ApiResult};
use media::live::{Channel, ChannelOptions, ChannelState, IngestOptions, LadderConfig};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog, ChannelRow};
use crate::store::new_id;
use crate::videos::Videos;
use capacity::Capacity;
use settings::Config;

/// A channel this process is running.
struct Running {
    /// Taken out exactly once, by the stop or the shutdown, whoever else
    /// holds this entry for a moment (a status read).
    channel: Mutex<Option<Channel>>,
    stats: Arc<media::live::LiveStats>,
    /// The GPU sessions and memory the channel holds (none on the CPU).
    _gpu: Option<hardware::Reservation>,
    /// (when, frames in) at the last sample, and the rate since the one before.
    sample: Mutex<(Instant, u64, f64)>,
}

pub struct Live {
    config: Arc<Config>,
    catalog: Catalog,
    videos: Arc<Videos>,
    root: PathBuf,
    capacity: Capacity,
    running: Mutex<HashMap<String, Arc<Running>>>,
}

/// A per-channel metric family: name, type, help, and its value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&media::live::LiveSnapshot) -> u64,
);

impl Live {
    pub fn new(config: Arc<Config>, catalog: Catalog, videos: Arc<Videos>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            root: config.storage.data_dir.join("live"),
            capacity: Capacity::new(config.live.cpu_units_per_core, cores),
            config,
            catalog,
            videos,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Places the channel's stages (the configured backend, as for
    /// transcodes) and reserves its GPU work and CPU share, or says why not.
    fn reserve(&self, row: &ChannelRow) -> ApiResult<Option<hardware::Reservation>> {
        let request: hardware::BackendRequest = self
            .config
            .transcode
            .backend
            .parse()
            .map_err(|e: hardware::HardwareError| ApiError::internal(e))?;
        let work = media::live::workload(&row.rungs);
        let reservation = self
            .videos
            .inventory
            .reserve(request, &work)
            .map_err(|e| ApiError::conflict(format!("no room for this channel: {e}")))?;
        let placement = reservation.placement;
        self.capacity
            .reserve(&row.id, capacity::units_placed(&work, placement))
            .map_err(ApiError::conflict)?;
        Ok((placement != hardware::Placement::CPU).then_some(reservation))
    }

    /// Starts the channel's ingest and ladder under its reservation.
    fn start(&self, row: &ChannelRow, gpu: Option<hardware::Reservation>) -> ApiResult<()> {
        let url = url::Url::parse(&row.url)
            .map_err(|e| ApiError::validation(format!("the camera URL does not parse: {e}")))?;
        let placement = gpu
            .as_ref()
            .map_or(hardware::Placement::CPU, |r| r.placement);
        let mut ingest = IngestOptions::new(url);
        ingest.udp = row.transport == "udp";
        ingest.watchdog = Duration::from_secs(self.config.live.watchdog_secs);
        let opts = ChannelOptions {
            ingest,
            dir: self.dir_of(&row.id),
            ladder: LadderConfig {
                rungs: row.rungs.clone(),
                preset: self.config.live.preset.clone(),
                placement,
            },
            record: row.record,
        };
        let channel = match Channel::start(opts) {
            Ok(c) => c,
            Err(e) => {
                self.capacity.release(&row.id);
                return Err(ApiError::internal(e));
            }
        };
        let running = Arc::new(Running {
            _gpu: gpu,
            stats: Arc::clone(channel.stats()),
            channel: Mutex::new(Some(channel)),
            sample: Mutex::new((Instant::now(), 0, 0.0)),
        });
        self.running.lock().insert(row.id.clone(), running);
        tracing::info!(channel = %row.id, camera = %shown_url(&row.url), %placement, "live channel started");
        Ok(())
    }

    /// Starts every channel the catalog says should run, samples their
    /// input rates, and suspends them all at shutdown.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let me = Arc::clone(self);
        vec![tokio::spawn(async move {
            match me.catalog.call(|c| cat::running_channels(c)).await {
                Ok(rows) => {
                    for row in rows {
                        if let Err(e) = me.reserve(&row).and_then(|gpu| me.start(&row, gpu)) {
                            me.capacity.release(&row.id);
                            // The row stays `running`: the reason is in the log
                            // and the channel's status says it is not live.
                            tracing::warn!(channel = %row.id, error = %e.message, "live channel not restarted");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the live channels"),
            }
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = tick.tick() => me.sample(),
                    _ = shutdown.changed() => break,
                }
            }
            let all: Vec<(String, Arc<Running>)> = me.running.lock().drain().collect();
            for (id, running) in all {
                me.capacity.release(&id);
                let channel = running.channel.lock().take();
                if let Some(channel) = channel {
                    if let Err(e) = channel.suspend().await {
                        tracing::warn!(channel = %id, error = %e, "live channel did not close cleanly");
                    }
                }
            }
        })]
    }

    fn sample(&self) {
        for r in self.running.lock().values() {
            let frames = r.stats.snapshot().frames_in;
            let mut s = r.sample.lock();
            let secs = s.0.elapsed().as_secs_f64();
            if secs > 0.5 {
                *s = (
                    Instant::now(),
                    frames,
                    (frames.saturating_sub(s.1)) as f64 / secs,
                );
            }
        }
    }

    /// Channels running and the capacity they hold, for `/metrics`.
    /// The channels running in this process: id, state and the last error.
    pub fn running(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .running
            .lock()
            .iter()
            .map(|(id, r)| {
                let snap = r.stats.snapshot();
                let state = serde_json::to_value(snap.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let state = match snap.last_error {
                    Some(e) => format!("{state} (last error: {e})"),
                    None => state,
                };
                (id.clone(), state)
            })
            .collect();
        out.sort();
        out
    }

    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let (held, total) = self.capacity.usage();
        out.push_str("# HELP appliance_live_capacity_units Live encoding capacity (720p30 rungs), held and total.\n");
        out.push_str("# TYPE appliance_live_capacity_units gauge\n");
        out.push_str(&format!(
            "appliance_live_capacity_units{{kind=\"held\"}} {held}\n"
        ));
        out.push_str(&format!(
            "appliance_live_capacity_units{{kind=\"total\"}} {total}\n"
        ));
        let running = self.running.lock();
        let families: [Family; 5] = [
            (
                "appliance_live_frames_in_total",
                "counter",
                "Frames received from the camera.",
                |s| s.frames_in,
            ),
            (
                "appliance_live_bytes_in_total",
                "counter",
                "Bytes of video received from the camera.",
                |s| s.bytes_in,
            ),
            (
                "appliance_live_segments_total",
                "counter",
                "Segments published.",
                |s| s.segments,
            ),
            (
                "appliance_live_reconnects_total",
                "counter",
                "Reconnections to the camera.",
                |s| s.reconnects,
            ),
            (
                "appliance_live_latency_ms",
                "gauge",
                "Last segment's delay after its last frame was captured.",
                |s| s.latency_ms,
            ),
        ];
        let snaps: Vec<(String, media::live::LiveSnapshot)> = running
            .iter()
            .map(|(id, r)| (id.clone(), r.stats.snapshot()))
            .collect();
        for (name, kind, help, get) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (id, s) in &snaps {
                out.push_str(&format!("{name}{{channel=\"{id}\"}} {}\n", get(s)));
            }
        }
        out
    }

    fn wire(&self, row: &ChannelRow) -> LiveChannel {
        let running = self.running.lock().get(&row.id).cloned();
        let snap = running.as_ref().map(|r| r.stats.snapshot());
        let state = match (&snap, row.desired.as_str()) {
            (_, "stopped") => LiveState::Stopped,
            (Some(s), _) => match s.state {
                ChannelState::Connecting => LiveState::Connecting,
                ChannelState::Live => LiveState::Live,
                ChannelState::Reconnecting => LiveState::Reconnecting,
                ChannelState::Stopped => LiveState::Stopped,
            },
            // Meant to run but not running here (refused at boot).
            (None, _) => LiveState::Reconnecting,
        };
        let fps_in = running.as_ref().map_or(0.0, |r| r.sample.lock().2);
        LiveChannel {
            id: row.id.clone(),
            owner_id: row.owner_id.clone(),
            name: row.name.clone(),
            url: shown_url(&row.url),
            rungs: row.rungs.clone(),
            record: row.record,
            transport: if row.transport == "udp" {
                LiveTransport::Udp
            } else {
                LiveTransport::Tcp
            },
            state,
            input: snap.as_ref().and_then(|s| s.input.clone()),
            fps_in: (fps_in * 10.0).round() / 10.0,
            last_frame_at: snap
                .as_ref()
                .filter(|s| s.last_frame_ms > 0)
                .map(|s| rfc3339(s.last_frame_ms as i64)),
            reconnects: snap.as_ref().map_or(0, |s| s.reconnects),
            dropped: snap.as_ref().map_or(0, |s| s.dropped),
            segments: snap.as_ref().map_or(0, |s| s.segments),
            latency_ms: snap
                .as_ref()
                .filter(|s| s.segments > 0)
                .map(|s| s.latency_ms),
            last_error: snap
                .as_ref()
                .and_then(|s| s.last_error.clone())
                .or_else(|| {
                    (row.desired == "running" && running.is_none()).then(|| {
                        "not running on this box (see the log: capacity or start-up failure)".into()
                    })
                }),
            playback_url: format!("/live/{}/master.m3u8", row.id),
            recordings: row.recordings.clone(),
            created_at: rfc3339(row.created_at),
            stopped_at: row.stopped_at.map(rfc3339),
        }
    }

    /// The channel if the caller may manage it; others' channels are 404s.
    async fn owned(&self, caller: &Principal, id: &str) -> ApiResult<ChannelRow> {
        require_creator(caller)?;
        let key = id.to_owned();
        let row = self
            .catalog
            .read(move |c| cat::channel(c, &key))
            .await
            .map_err(ApiError::from)?;
        match row {
            Some(r) if caller.may_manage(&r.owner_id) => Ok(r),
            _ => Err(ApiError::not_found(format!("live channel {id}"))),
        }
    }
}

fn require_creator(p: &Principal) -> ApiResult<()> {
    match p.role {
        Role::Creator | Role::Admin => Ok(()),
        Role::Viewer => Err(ApiError::forbidden("live channels need the creator role")),
    }
}

/// The URL as answers and logs show it: no user name, no password.
fn shown_url(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| "(unparseable URL)".into(),
        |u| media::live::redacted(&u),
    )
}

/// Checks a create request; returns the row to store.
fn validate(caller: &Principal, req: LiveChannelCreate) -> ApiResult<ChannelRow> {
    let name = req.name.trim();
    if name.is_empty() || req.name.chars().count() > 100 {
        return Err(ApiError::validation(
            "name must be 1–100 characters, not all blank",
        ));
    }
    if req.url.chars().count() > 2048 {
        return Err(ApiError::validation("url must be at most 2048 characters"));
    }
    let url = url::Url::parse(&req.url)
        .map_err(|e| ApiError::validation(format!("url does not parse: {e}")))?;
    // retina speaks RTSP over TCP or UDP, not over TLS (rtsps).
    if url.scheme() != "rtsp" || url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::validation(format!(
            "url must be rtsp://host[:port]/path (rtsps is not supported; got {})",
            media::live::redacted(&url)
        )));
    }
    let requested = req.rungs.unwrap_or_else(|| vec![720, 480, 360]);
    if requested.is_empty() || requested.len() > 4 {
        return Err(ApiError::validation("rungs must list 1–4 heights"));
    }
    let mut rungs = media::plan::wanted_rungs(&requested)
        .map_err(|e| ApiError::validation(format!("rungs: {e}")))?;
    rungs.sort_unstable_by(|a, b| b.cmp(a));
    rungs.dedup();
    Ok(ChannelRow {
        id: new_id(),
        owner_id: caller.user_id.clone(),
        name: name.to_owned(),
        url: req.url,
        rungs,
        record: req.record,
        transport: match req.transport {
            Some(LiveTransport::Udp) => "udp".into(),
            _ => "tcp".into(),
        },
        desired: "running".into(),
        recordings: Vec::new(),
        created_at: now_ms(),
        stopped_at: None,
    })
}

impl api::Live for Live {
    async fn create_channel(
        &self,
        caller: &Principal,
        req: LiveChannelCreate,
    ) -> ApiResult<LiveChannel> {
        require_creator(caller)?;
        let row = validate(caller, req)?;
        // Refused before anything is stored when it cannot fit.
        let gpu = self.reserve(&row)?;
        let stored = row.clone();
        if let Err(e) = self
            .catalog
            .call(move |c| cat::insert_channel(c, &stored))
            .await
        {
            self.capacity.release(&row.id);
            return Err(e.into());
        }
        if let Err(e) = self.start(&row, gpu) {
            // Not startable (an internal failure): the row must not bring it
            // back at every boot.
            self.capacity.release(&row.id);
            let id = row.id.clone();
            let _ = self
                .catalog
                .call(move |c| cat::stop_channel(c, &id, now_ms()))
                .await;
            return Err(e);
        }
        Ok(self.wire(&row))
    }

    async fn channels(&self, caller: &Principal, page: PageQuery) -> ApiResult<Page<LiveChannel>> {
        require_creator(caller)?;
        let (limit, after) = page.by_created()?;
        let owner = (!caller.is_admin()).then(|| caller.user_id.clone());
        // One more than the page, to know whether another follows.
        let rows = self
            .catalog
            .read(move |c| cat::channels(c, owner.as_deref(), after, limit + 1))
            .await
            .map_err(ApiError::from)?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |r| api::cursor::created(r.created_at, &r.id),
            |r| self.wire(&r),
        ))
    }

    async fn channel(&self, caller: &Principal, id: &str) -> ApiResult<LiveChannel> {
        let row = self.owned(caller, id).await?;
        Ok(self.wire(&row))
    }

    async fn stop_channel(&self, caller: &Principal, id: &str) -> ApiResult<LiveChannel> {
        let row = self.owned(caller, id).await?;
        let key = id.to_owned();
        let changed = self
            .catalog
            .call(move |c| cat::stop_channel(c, &key, now_ms()))
            .await
            .map_err(ApiError::from)?;
        let running = self.running.lock().remove(id);
        self.capacity.release(id);
        let channel = running.and_then(|r| r.channel.lock().take());
        if let Some(channel) = channel {
            if let Err(e) = channel.stop().await {
                tracing::warn!(channel = %id, error = %e, "live channel did not stop cleanly");
            }
        }
        if changed && row.record {
            match self.record(&row, None, None).await {
                Ok(_) => {}
                // Nothing recorded (a camera that never sent a frame).
                Err(e) if e.code == api::ErrorCode::Conflict => {
                    tracing::info!(channel = %id, reason = %e.message, "no recording to publish");
                }
                Err(e) => {
                    tracing::warn!(channel = %id, error = %e.message, "the recording was not published")
                }
            }
        }
        let row = self.owned(caller, id).await?;
        Ok(self.wire(&row))
    }

    async fn clip(&self, caller: &Principal, id: &str, req: LiveClip) -> ApiResult<Accepted> {
        let row = self.owned(caller, id).await?;
        if !row.record {
            return Err(ApiError::conflict(
                "this channel does not record (create it with record: true)",
            ));
        }
        let (from, to) = recording::span(&req)?;
        let video_id = self.record(&row, Some((from, to)), req.title).await?;
        Ok(Accepted {
            video_id,
            status: VideoState::Ready,
        })
    }

    async fn live_lookup(&self, channel_id: &str, path: &str) -> ApiResult<api::OriginLookup> {
        files::lookup(&self.dir_of(channel_id), path).await
    }

    async fn live_read(
        &self,
        channel_id: &str,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> ApiResult<bytes::Bytes> {
        files::read(&self.dir_of(channel_id), path, range).await
    }
}
