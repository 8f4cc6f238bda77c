//! `appliance bench …`: every benchmark writes its JSON and its plot beside
//! it, `.svg` and `.png` (the work is the `benches` crate's, and the
//! `bench_*` modules here for the benches that run the server; the plots are
//! all `benches::plot`'s). `bench plot` redraws them from the JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::report;
use super::{bench_feed_http, bench_ingest, bench_origin, bench_publish, bench_search};
use crate::error;
use crate::feed::tools as feedtools;

/// Says where a report and its plot were written.
fn wrote(out: &Path) {
    let [svg, png] = benches::plot::paths_beside(out);
    eprintln!(
        "wrote {}, {} and {}",
        out.display(),
        svg.display(),
        png.display()
    );
}

/// Prints a bench report (the bench wrote it and its plot) and where it
/// was written.
pub fn done<T: serde::Serialize>(r: benches::Result<T>, out: &Path) -> ExitCode {
    match r {
        Ok(report) => {
            feedtools::print_json(&report);
            wrote(out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a bench's report as JSON at `out` and its plot beside it
/// (`.svg`, `.png`), prints the report and says where it went.
fn with_plot<T: serde::Serialize>(result: crate::error::Result<T>, out: &Path) -> ExitCode {
    let written = result.and_then(|r| {
        benches::write_report(out, &r).map_err(|e| error::Error::Task(e.to_string()))?;
        Ok(r)
    });
    match written {
        Ok(r) => {
            feedtools::print_json(&r);
            wrote(out);
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `appliance bench plot FILE.json…`: redraws each result's plot beside it;
/// fails (after trying every file) if any could not be drawn.
pub fn plot(files: &[PathBuf]) -> ExitCode {
    let mut failed = 0;
    for file in files {
        match benches::plot::replot(file) {
            Ok(p) => {
                let [svg, png] = benches::plot::paths_beside(file);
                eprintln!(
                    "{}: {} → {} and {} ({}×{})",
                    file.display(),
                    p.kind.name(),
                    svg.display(),
                    png.display(),
                    p.width,
                    p.height
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {failed} of {} results not drawn", files.len());
        ExitCode::FAILURE
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

/// `appliance bench ingest`: JSON and its plot (same name, `.svg`, `.png`).
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
    with_plot(bench_ingest::run(&o), &o.out)
}

/// `appliance bench feed --http`: JSON and its plot.
pub fn feed_http(o: bench_feed_http::Options) -> ExitCode {
    with_plot(bench_feed_http::run(&o), &o.out)
}

/// `appliance bench publish`: JSON and its plot.
pub fn publish(o: bench_publish::Options) -> ExitCode {
    with_plot(bench_publish::run(&o), &o.out)
}

/// `appliance bench fingerprints`: JSON and its plot.
pub fn fingerprints(o: super::bench_fingerprints::Options) -> ExitCode {
    with_plot(super::bench_fingerprints::run(&o), &o.out)
}

/// `appliance bench search`: JSON and its plot.
pub fn search(o: bench_search::Options) -> ExitCode {
    with_plot(bench_search::run(&o), &o.out)
}

/// `appliance bench origin`: JSON and its plot.
pub fn origin(o: bench_origin::Options) -> ExitCode {
    with_plot(bench_origin::run(&o), &o.out)
}

/// `appliance bench encode`: JSON and its plot.
pub fn encode(out: PathBuf, seconds: u32, runs: u32, preset: String, backend: String) -> ExitCode {
    let backend = match backend.parse::<hardware::BackendRequest>() {
        Ok(b) => b,
        Err(e) => return report(&e),
    };
    let r = benches::encode::run(&benches::encode::Config {
        backend,
        seconds,
        runs,
        preset,
        out: out.clone(),
    });
    done(r, &out)
}
