//! Benchmarks that compare the appliance with the tools people use today,
//! run by `appliance bench …` and written as JSON under `benches/results/`.
//!
//! - [`encode`]: the CPU media engine vs the `ffmpeg` CLI on the same 1080p
//!   source → 4-rung HLS ladder, alternating runs, with PSNR of every rung.

//! - [`feed`]: retrieval recall/QPS by index type, candidates ranked per
//!   second by batch size, feed latency under concurrent load at 10k–1M
//!   videos, and sentences embedded per second.

pub mod encode;
pub mod feed;
mod machine;

pub use machine::Machine;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error(transparent)]
    Media(#[from] media::MediaError),
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
}

pub type Result<T> = std::result::Result<T, BenchError>;
