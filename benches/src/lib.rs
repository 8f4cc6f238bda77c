//! Benchmarks that compare the appliance with the tools people use today,
//! run by `appliance bench …` and written as JSON under `benches/results/`.
//!
//! - [`encode`]: the CPU media engine vs the `ffmpeg` CLI on the same 1080p
//!   source → 4-rung HLS ladder, alternating runs, with PSNR of every rung.

//! - [`live`]: live RTSP channels per box and live latency, the appliance
//!   vs `ffmpeg -f hls`, alternating.
//! - [`feed`]: retrieval recall/QPS by index type, candidates ranked per
//!   second by batch size, feed latency under concurrent load at 10k–1M
//!   videos.
//! - [`embed`]: sentence embeddings per second by batch size, the candle
//!   CPU path vs PyTorch (sentence-transformers), alternating.
//!
//! Every result is written by [`write_report`]: `<out>.json` and its plot
//! beside it, `<out>.svg` and `<out>.png`, drawn by [`plot`] from the JSON
//! alone (so `appliance bench plot` redraws any committed result).

pub mod embed;
pub mod encode;
pub mod feed;
pub mod live;
mod machine;
pub mod plot;

pub use machine::Machine;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error(transparent)]
    Media(#[from] media::MediaError),
    #[error(transparent)]
    Hardware(#[from] hardware::HardwareError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inference(#[from] inference::InferenceError),
    #[error("could not read {what} from the output of `{command}`")]
    Parse { what: &'static str, command: String },
    #[error("plot: {0}")]
    Plot(String),
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// The `p` quantile (0–1) of sorted samples; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Writes a result as pretty JSON, creating its directory.
pub fn write_json<T: serde::Serialize>(out: &std::path::Path, value: &T) -> Result<()> {
    let io = |op: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| BenchError::Io { op, path, source }
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let mut json = serde_json::to_vec_pretty(value).unwrap_or_default();
    json.push(b'\n');
    std::fs::write(out, json).map_err(io("writing", out))
}

/// Writes a bench's report: `out` (JSON) and its plot beside it, same stem,
/// `.svg` and `.png` (see [`plot`]). Returns the plot's two paths.
pub fn write_report<T: serde::Serialize>(
    out: &std::path::Path,
    value: &T,
) -> Result<[std::path::PathBuf; 2]> {
    let json = serde_json::to_value(value)
        .map_err(|e| BenchError::Plot(format!("the report is not JSON: {e}")))?;
    write_json(out, &json)?;
    plot::write_beside(out, &json)?;
    Ok(plot::paths_beside(out))
}
