//! `appliance transcode`: one file into an HLS ladder, with progress bars.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::videos::progress;

/// Exit code for inputs the engine refuses (as opposed to failures).
const EXIT_REJECTED: u8 = 2;

pub struct Args {
    pub input: PathBuf,
    pub out: PathBuf,
    pub backend: String,
    pub rungs: Vec<u32>,
    pub preset: String,
    pub remux_source: bool,
    pub json: bool,
    pub quiet: bool,
}

pub fn run(a: Args) -> ExitCode {
    let Args {
        input,
        out,
        backend,
        rungs,
        preset,
        remux_source,
        json,
        quiet,
    } = a;
    let backend = match backend.parse::<hardware::BackendRequest>() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_REJECTED);
        }
    };
    let inventory = hardware::Inventory::discover();
    let opts = media::TranscodeOptions {
        backend,
        rungs,
        encoder: media::backend::EncoderSettings {
            preset,
            ..Default::default()
        },
        remux_source,
        // Nobody plays the ladder before it is whole here: one pass.
        early_rung: false,
        ..Default::default()
    };
    let bars = progress::Bars::new(quiet || json);
    let result = media::transcode(&input, &out, &opts, &inventory, &|e| bars.on_event(&e));
    bars.finish();
    match result {
        Ok(ladder) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ladder).expect("serialisable")
                );
            } else {
                for r in &ladder.renditions {
                    eprintln!(
                        "  {:>6}  {:>4}x{:<4}  {:>6} kb/s peak  {:>6} kb/s avg  {} segments",
                        r.name,
                        r.width,
                        r.height,
                        r.bandwidth / 1000,
                        r.average_bandwidth / 1000,
                        r.segments
                    );
                }
                eprintln!("  poster: {}", ladder.poster.display());
                eprintln!(
                    "  play:   ffplay {}   (or serve the folder and open it in an HLS player)",
                    ladder.master.display()
                );
                println!("{}", ladder.master.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => match e.reject_code() {
            Some(_) => {
                eprintln!("rejected: {e}");
                ExitCode::from(EXIT_REJECTED)
            }
            None => {
                eprintln!("error: {e}");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    eprintln!("  caused by: {s}");
                    src = s.source();
                }
                ExitCode::FAILURE
            }
        },
    }
}
