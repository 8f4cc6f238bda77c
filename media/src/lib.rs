//! The media engine: probe and validate inputs, plan the HLS ladder, decode
//! once and scale/encode every rung in parallel on the backend `hardware`
//! placed each stage on, package CMAF + HLS playlists, and pick a poster.
//!
//! Entry point: [`transcode`]. Everything that touches libav* lives here (and
//! in later NVIDIA backends); callers see plain Rust types and [`MediaError`].

mod audio;
mod avio;
pub mod backend;
pub mod cmaf;
mod download;
pub mod edit;
mod encode_pass;
mod error;
pub mod extras;
pub mod fingerprint;
mod frames;
mod graph_src;
pub mod ladder;
pub mod live;
mod package;
pub mod plan;
pub mod playlist;
pub mod probe;
pub mod remux;
mod repair;
pub mod still;
mod storyboard;
pub mod thumbnail;
mod transcode;

pub use error::{Location, MediaError, RejectCode, Result};
pub use fingerprint::{fingerprint_file, AudioFingerprint};
pub use plan::{LadderPlan, Rung};
pub use probe::{probe, Limits, SourceInfo};
pub use transcode::{
    gpu_fallbacks, transcode, workload, LadderOutput, ProgressEvent, RenditionSummary,
    TranscodeOptions,
};

/// Initialises libav* once per process. FFmpeg's own logging is silenced
/// unless `FFMPEG_LOG` asks for it (error, warning, info, debug): failures
/// reach callers as typed errors with context instead.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        use ffmpeg_next::util::log::{set_level, Level};
        set_level(match std::env::var("FFMPEG_LOG").as_deref() {
            Ok("error") => Level::Error,
            Ok("warning") => Level::Warning,
            Ok("info") => Level::Info,
            Ok("debug") => Level::Debug,
            _ => Level::Quiet,
        });
    });
}
