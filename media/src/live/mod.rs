//! Live: RTSP cameras into live HLS ladders (spec §Media pipeline 9).
//!
//! A channel is two halves joined by a bounded queue:
//! - [`ingest`] (async, on the caller's tokio runtime): `retina` pulls the
//!   camera, reconnects with backoff, watches for stalls, and turns each
//!   connection into a *run* of [`Input`]s (start, Annex B access units,
//!   audio frames, gap);
//! - [`ladder`] (one thread): decodes, scales and encodes every rung with
//!   the upload backends, cuts 2 s CMAF fragments ([`fmp4`]) and publishes
//!   them in the channel's directory ([`window`]: sliding playlists, program
//!   date-time, discontinuities, numbering that survives restarts).
//!
//! When the ladder falls behind, whole GOPs are dropped at the queue (the
//! ingest resumes at the next key frame), so latency never builds up.
//!
//! A recording channel keeps every segment; [`record::export`] turns any
//! span of it into a VOD ladder without re-encoding.
//!
//! Layout of a channel directory: `master.m3u8` (and `variants.json`, what
//! it lists); per rung `720p/index.m3u8`, `720p/init-{run}.mp4`,
//! `720p/{n}.m4s` (and `recorded.jsonl` while recording); `audio/…`
//! likewise; `live.json`.

mod audio;
mod fmp4;
mod ingest;
mod ladder;
mod master;
mod record;
mod window;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

pub use audio::AudioSource;
pub use fmp4::{Fragment, FragmentMuxer};
pub use ingest::{redacted, IngestOptions};
pub use ladder::{Input, Ladder, LadderConfig, VideoInput};
pub use record::{export, Recording};
pub use window::{rfc3339_millis, LiveDir, TARGET_SECS, WINDOW};

use crate::error::{MediaError, Result};

/// The GPU work a channel asks of the inventory (`hardware::Inventory::
/// reserve`): a camera is taken for 1080p H.264 until it connects (the
/// largest common camera stream), rungs 16:9 at the asked heights.
pub fn workload(rungs: &[u32]) -> hardware::Workload {
    hardware::Workload {
        codec: "h264".into(),
        bit_depth: 8,
        width: 1920,
        height: 1080,
        rotated: false,
        rungs: rungs
            .iter()
            .map(|&h| (((f64::from(h) * 16.0 / 9.0 / 2.0).round() * 2.0) as u32, h))
            .collect(),
    }
}

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    Connecting,
    Live,
    Reconnecting,
    Stopped,
}

/// What a channel reports while it runs (shared by both halves).
#[derive(Debug)]
pub struct LiveStats {
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub segments: AtomicU64,
    pub reconnects: AtomicU64,
    /// Access units dropped because the ladder was behind.
    pub dropped: AtomicU64,
    /// Segment published after its last frame was captured (milliseconds).
    pub latency_ms: AtomicU64,
    /// Unix milliseconds of the last frame received.
    pub last_frame_ms: AtomicU64,
    state: Mutex<ChannelState>,
    last_error: Mutex<Option<String>>,
    input: Mutex<Option<String>>,
}

impl Default for LiveStats {
    fn default() -> Self {
        Self {
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            state: Mutex::new(ChannelState::Connecting),
            last_error: Mutex::new(None),
            input: Mutex::new(None),
        }
    }
}

/// A point-in-time copy of [`LiveStats`], for status and progress.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSnapshot {
    pub state: ChannelState,
    pub input: Option<String>,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub segments: u64,
    pub reconnects: u64,
    pub dropped: u64,
    pub latency_ms: u64,
    pub last_frame_ms: u64,
    pub last_error: Option<String>,
}

impl LiveStats {
    pub fn set_state(&self, s: ChannelState) {
        *self.state.lock() = s;
    }

    pub fn set_error(&self, e: String) {
        *self.last_error.lock() = Some(e);
    }

    pub fn set_input(&self, i: String) {
        *self.input.lock() = Some(i);
    }

    pub fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_frame_ms.store(ms, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            state: *self.state.lock(),
            input: self.input.lock().clone(),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            last_frame_ms: self.last_frame_ms.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// One channel: a camera and the directory its ladder is published in.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    pub ingest: IngestOptions,
    pub dir: PathBuf,
    pub ladder: LadderConfig,
    /// Keep every segment for [`export`] (a recording channel).
    pub record: bool,
}

/// Access units the queue holds: about two seconds at 30 fps. Past that the
/// ladder is behind and frames are dropped rather than delayed.
const QUEUE: usize = 64;

/// A running channel; [`Channel::stop`] ends it cleanly.
pub struct Channel {
    stats: Arc<LiveStats>,
    /// Whether the ladder ends its playlists when the input stops.
    end: Arc<std::sync::atomic::AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    ingest: tokio::task::JoinHandle<()>,
    ladder: std::thread::JoinHandle<Result<()>>,
}

impl Channel {
    /// Opens the directory and starts both halves; the ingest runs on the
    /// current tokio runtime.
    pub fn start(opts: ChannelOptions) -> Result<Self> {
        crate::init();
        let mut dir = LiveDir::open(&opts.dir)?;
        dir.set_recording(opts.record);
        let stats = Arc::new(LiveStats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Input>(QUEUE);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let ladder_stats = Arc::clone(&stats);
        let ladder_cfg = opts.ladder.clone();
        let end = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let end_at_stop = Arc::clone(&end);
        let ladder = std::thread::Builder::new()
            .name("live-ladder".into())
            .spawn(move || {
                let mut ladder = Ladder::new(ladder_cfg, dir, Arc::clone(&ladder_stats));
                for input in rx {
                    if let Err(e) = ladder.push(input) {
                        // A broken access unit or a codec failure costs the
                        // current run, not the channel.
                        tracing::warn!(error = %e, "live ladder error; restarting at the next key frame");
                        ladder_stats.set_error(e.to_string());
                        ladder.reset();
                    }
                }
                if end_at_stop.load(Ordering::SeqCst) {
                    ladder.stop()
                } else {
                    ladder.suspend()
                }
            })
            .map_err(|e| MediaError::Worker {
                stage: "live".into(),
                reason: format!("starting the ladder thread: {e}"),
            })?;
        let ingest = tokio::spawn(ingest::run(opts.ingest, tx, Arc::clone(&stats), stop_rx));
        Ok(Self {
            stats,
            end,
            stop,
            ingest,
            ladder,
        })
    }

    pub fn stats(&self) -> &Arc<LiveStats> {
        &self.stats
    }

    /// Stops pulling, closes the last segment and ends the playlists.
    pub async fn stop(self) -> Result<()> {
        self.finish(true).await
    }

    /// Stops pulling and closes the last segment, but leaves the playlists
    /// open (no `EXT-X-ENDLIST`): the box is going down and the channel
    /// comes back with it, after a discontinuity.
    pub async fn suspend(self) -> Result<()> {
        self.finish(false).await
    }

    async fn finish(self, end: bool) -> Result<()> {
        self.end.store(end, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(15), self.ingest).await;
        let ladder = self.ladder;
        tokio::task::spawn_blocking(move || ladder.join())
            .await
            .map_err(|e| MediaError::Worker {
                stage: "live".into(),
                reason: e.to_string(),
            })?
            .map_err(|_| MediaError::Worker {
                stage: "live".into(),
                reason: "the ladder thread panicked".into(),
            })?
    }
}
