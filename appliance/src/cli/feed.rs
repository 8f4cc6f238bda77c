//! `appliance simulate`, `eval-feed` and `train-ranker`: the feed's
//! offline commands (the work is `feed::tools`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::report;
use crate::feed::tools as feedtools;
use settings as config;

/// `appliance simulate`.
pub fn simulate(
    out: PathBuf,
    users: Option<usize>,
    videos: Option<usize>,
    seed: u64,
    realistic: bool,
) -> ExitCode {
    let base = if realistic {
        inference::sim::WorldConfig::realistic()
    } else {
        inference::sim::WorldConfig::default()
    };
    let videos = videos.unwrap_or(base.videos);
    let cfg = inference::sim::WorldConfig {
        users: users.unwrap_or(base.users),
        videos,
        creators: (videos / 8).max(1),
        seed,
        ..base
    };
    match feedtools::simulate(&cfg, &out) {
        Ok((v, e)) => {
            println!("wrote {v} videos and {e} watch events to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `appliance eval-feed`.
#[allow(clippy::too_many_arguments)]
pub fn eval(
    videos: Option<PathBuf>,
    log: Option<PathBuf>,
    ranker: Option<PathBuf>,
    config: Option<PathBuf>,
    out: Option<PathBuf>,
    seed: u64,
    realistic: bool,
    quiet: bool,
) -> ExitCode {
    let model_dir = match config::Config::load(config.as_deref()) {
        Ok(c) => c.feed.model_dir,
        Err(e) => return report(&e),
    };
    let args = feedtools::EvalArgs {
        videos,
        log,
        ranker,
        model_dir,
        out,
        seed,
        realistic,
        quiet,
    };
    match feedtools::eval_feed(&args) {
        Ok(r) => {
            feedtools::print_json(&r);
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}

/// `appliance train-ranker`.
pub fn train(
    config: Option<PathBuf>,
    videos: Option<PathBuf>,
    log: Option<PathBuf>,
    out: Option<PathBuf>,
    quiet: bool,
) -> ExitCode {
    let cfg = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    match feedtools::train_ranker(&cfg, videos.zip(log), out, quiet) {
        Ok((path, r)) => {
            feedtools::print_json(&r);
            eprintln!(
                "wrote {} (a running server picks it up within seconds)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
    }
}
