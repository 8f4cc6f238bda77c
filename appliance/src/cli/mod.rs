//! The commands of the `appliance` binary, one file each; `main.rs` only
//! parses the command line and calls them. They turn errors into exit
//! codes and messages; the work is the domains'.
//!
//! May call: every domain and the composition root (`app`).

pub mod bench;
pub mod bench_command;
pub mod bench_feed_http;
pub mod bench_fingerprints;
mod bench_ingest;
pub mod bench_origin;
pub mod bench_publish;
pub mod bench_search;
pub mod doctor;
pub mod feed;
pub mod ingest_rtsp;
pub mod jobs;
pub mod logging;
pub mod serve;
pub mod transcode;
pub mod user;

use std::process::ExitCode;

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Prints an error and its causes; the exit code for a failure.
pub fn report(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        eprintln!("  caused by: {s}");
        src = s.source();
    }
    ExitCode::FAILURE
}
