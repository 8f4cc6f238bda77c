//! `appliance bench …`: every benchmark writes its JSON (the work is the
//! `benches` crate's, and `bench_ingest` here for the event path).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::report;
use super::{bench_feed_http, bench_ingest, bench_origin, bench_publish};
use crate::error;
use crate::feed::tools as feedtools;

/// Prints a bench report and where it was written.
pub fn done<T: serde::Serialize>(r: benches::Result<T>, out: &Path) -> ExitCode {
    match r {
        Ok(report) => {
            feedtools::print_json(&report);
            eprintln!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a bench's report as JSON at `out` and its plot beside it
/// (`.svg`), prints the report and says where it went.
fn with_plot<T: serde::Serialize>(
    result: crate::error::Result<T>,
    out: &Path,
    plot: fn(&T) -> String,
) -> ExitCode {
    let written = result.and_then(|r| {
        benches::write_json(out, &r).map_err(|e| error::Error::Task(e.to_string()))?;
        let svg = out.with_extension("svg");
        std::fs::write(&svg, plot(&r)).map_err(error::Error::io("writing", svg.display()))?;
        Ok(r)
    });
    match written {
        Ok(r) => {
            feedtools::print_json(&r);
            eprintln!("wrote {} and its .svg", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `appliance bench ingest`'s arguments as given (`paced` as `RATE:SECS`).
pub struct IngestArgs {
    pub out: PathBuf,
    pub config: Option<PathBuf>,
    pub clients: usize,
    pub batch: usize,
    pub secs: u64,
    pub paced: Vec<String>,
    pub videos: usize,
    pub before: Option<PathBuf>,
    pub note: String,
}

/// `appliance bench ingest`: JSON and its plot (same name, `.svg`).
pub fn ingest(a: IngestArgs) -> ExitCode {
    let mut paced = Vec::new();
    for p in &a.paced {
        let run = p
            .split_once(':')
            .and_then(|(r, s)| Some((r.trim().parse().ok()?, s.trim().parse().ok()?)));
        match run {
            Some((rate, secs)) if rate > 0 && secs > 0 => paced.push((rate, secs)),
            _ => {
                return report(&error::Error::Config(format!(
                    "--paced {p:?}: expected RATE:SECS, both above zero"
                )))
            }
        }
    }
    let o = bench_ingest::Options {
        config: a.config,
        clients: a.clients,
        batch: a.batch,
        secs: a.secs,
        paced,
        videos: a.videos,
        out: a.out,
        before: a.before,
        note: a.note,
    };
    with_plot(bench_ingest::run(&o), &o.out, bench_ingest::svg)
}

/// `appliance bench feed --http`: JSON and its plot (same name, `.svg`).
pub fn feed_http(o: bench_feed_http::Options) -> ExitCode {
    with_plot(bench_feed_http::run(&o), &o.out, bench_feed_http::svg)
}

/// `appliance bench publish`: JSON and its plot (same name, `.svg`).
pub fn publish(o: bench_publish::Options) -> ExitCode {
    with_plot(bench_publish::run(&o), &o.out, bench_publish::svg)
}

/// `appliance bench origin`: JSON and its plot (same name, `.svg`).
pub fn origin(o: bench_origin::Options) -> ExitCode {
    with_plot(bench_origin::run(&o), &o.out, bench_origin::svg)
}

/// `appliance bench encode`.
pub fn encode(out: PathBuf, seconds: u32, runs: u32, preset: String, backend: String) -> ExitCode {
    let backend = match backend.parse::<hardware::BackendRequest>() {
        Ok(b) => b,
        Err(e) => return report(&e),
    };
    match benches::encode::run(&benches::encode::Config {
        backend,
        seconds,
        runs,
        preset,
        out: out.clone(),
    }) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("serialisable")
            );
            eprintln!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
