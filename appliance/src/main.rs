//! `appliance`: the one binary of the regional video appliance. This file is
//! the composition root: it parses the command line, discovers the hardware,
//! wires the crates together and turns their errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod progress;

#[derive(Parser)]
#[command(name = "appliance", version, about = "Regional GPU video appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcode a file into an HLS ladder (CMAF segments + playlists + poster).
    Transcode {
        input: PathBuf,
        /// Output directory (created; an earlier ladder there is replaced).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Rung heights (short side), comma-separated, from 1080,720,480,360.
        #[arg(long, value_delimiter = ',', default_value = "1080,720,480,360")]
        rungs: Vec<u32>,
        /// x264 preset for the CPU encoder.
        #[arg(long, default_value = "veryfast")]
        preset: String,
        /// Print the result as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// No progress bars (they are also off when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
    /// Benchmarks, written as JSON (and a plot) for comparison across machines.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// This engine vs the `ffmpeg` CLI on the same 1080p → 4-rung ladder.
    Encode {
        /// Where to write the JSON result.
        #[arg(long, default_value = "benches/results/encode-cpu.json")]
        out: PathBuf,
        /// Seconds of 1080p source to generate.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Alternating runs of each contender.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        #[arg(long, default_value = "veryfast")]
        preset: String,
        #[arg(long, value_enum, default_value_t = Source::Synthetic)]
        source: Source,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Source {
    /// Generated with lavfi (moving test pattern + noise): reproducible anywhere.
    Synthetic,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Transcode {
            input,
            out,
            backend,
            rungs,
            preset,
            json,
            quiet,
        } => transcode(input, out, &backend, rungs, preset, json, quiet),
        Command::Bench {
            which:
                BenchCommand::Encode {
                    out,
                    seconds,
                    runs,
                    preset,
                    source: Source::Synthetic,
                },
        } => {
            match benches::encode::run(&benches::encode::Config {
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
    }
}

/// Exit code for inputs the engine refuses (as opposed to failures).
const EXIT_REJECTED: u8 = 2;

fn transcode(
    input: PathBuf,
    out: PathBuf,
    backend: &str,
    rungs: Vec<u32>,
    preset: String,
    json: bool,
    quiet: bool,
) -> ExitCode {
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
        encoder: media::backend::EncoderSettings { preset },
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
