//! `appliance`: the one binary of the regional video appliance. This file is
//! the composition root: it parses the command line, discovers the hardware,
//! wires the crates together and turns their errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod analytics;
mod app;
mod catalog;
mod config;
mod doctor;
mod engagement;
mod error;
mod events;
mod fanout;
mod feed_api;
mod feedtools;
mod hot;
mod hub;
mod ingest_bench;
mod jobs;
mod objects;
mod progress;
mod recommend;
mod serve;
mod social;
mod spool;

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
    /// Run the appliance: HTTP API, HLS origin and transcode workers.
    Serve {
        /// Config file (default: ./appliance.toml if present; see appliance.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Make sure a `demo` creator owns a ready video made from this file,
        /// then print its player and playlist URLs.
        #[arg(long)]
        demo: Option<PathBuf>,
    },
    /// Manage accounts directly in the catalog.
    User {
        #[command(subcommand)]
        which: UserCommand,
    },
    /// Generate a synthetic world (users with latent interests, topical
    /// videos, a watch-behaviour model) and its interaction log.
    Simulate {
        /// Directory for videos.jsonl, events.csv and events.jsonl.
        #[arg(long, default_value = "sim")]
        out: PathBuf,
        #[arg(long, default_value_t = 300)]
        users: usize,
        #[arg(long, default_value_t = 2000)]
        videos: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Offline evaluation of the feed against popularity and random
    /// baselines (HR@10, NDCG@10, coverage, diversity) on a log split by
    /// time; simulates a world when no log is given. Prints JSON.
    EvalFeed {
        /// videos.jsonl (as written by `simulate`).
        #[arg(long)]
        videos: Option<PathBuf>,
        /// events.jsonl, or a CSV of user,video,completion,timestamp.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Rank with this trained model instead of the formula.
        #[arg(long)]
        ranker: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also write the report here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        quiet: bool,
    },
    /// Train the ranking model from the box's watch events (or a simulated
    /// log) and write it where the server hot-reloads it (feed.ranker).
    TrainRanker {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Train from a simulated world instead of the catalog: its
        /// videos.jsonl and events.jsonl.
        #[arg(long, requires = "log")]
        videos: Option<PathBuf>,
        #[arg(long, requires = "videos")]
        log: Option<PathBuf>,
        /// Output file (default: feed.ranker).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
    },
    /// Check accelerators (CUDA, NVRTC, NVDEC, NVENC), libraries, model
    /// files, Redis/ClickHouse and disk space; say where each stage runs and
    /// what every missing piece costs. Exit status 1 on a fault.
    Doctor {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks, written as JSON (and a plot) for comparison across machines.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (the only way to create an admin). The password is
    /// the first line of stdin.
    Add {
        username: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Creator)]
        role: RoleArg,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Viewer,
    Creator,
    Admin,
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
        /// `cpu` (vs ffmpeg + libx264) or `nvidia` (vs ffmpeg -hwaccel cuda
        /// … scale_cuda … h264_nvenc); `auto` takes what the host offers.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Candidates scored per second by batch size (formula and model).
    Rank {
        #[arg(long, default_value = "benches/results/rank-cpu.json")]
        out: PathBuf,
    },
    /// Feed latency p50/p99 with concurrent clients at several catalog sizes.
    Feed {
        #[arg(long, default_value = "benches/results/feed-cpu.json")]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Pages per scrolling session.
        #[arg(long, default_value_t = 5)]
        pages: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// Recall@100 against exact search and queries/s, per index type and size.
    Retrieval {
        #[arg(long, default_value = "benches/results/retrieval-cpu.json")]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
    },
    /// Watch events/s accepted over HTTP and the lag until they are in
    /// the rollups, with the stores `--config` names (embedded by default).
    Ingest {
        #[arg(long, default_value = "benches/results/ingest-embedded.json")]
        out: PathBuf,
        /// An appliance.toml naming the stores (e.g. ClickHouse + Redis);
        /// its data_dir is replaced by a scratch directory.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Events per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        #[arg(long, default_value_t = 1000)]
        videos: usize,
    },
    /// Sentences embedded per second by batch size.
    Embed {
        #[arg(long, default_value = "benches/results/embed-cpu.json")]
        out: PathBuf,
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
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
        Command::Serve {
            config,
            listen,
            demo,
        } => run_server(config, listen, demo),
        Command::User {
            which:
                UserCommand::Add {
                    username,
                    role,
                    config,
                },
        } => add_user(config, &username, role),
        Command::Doctor { config, json } => run_doctor(config, json),
        Command::Transcode {
            input,
            out,
            backend,
            rungs,
            preset,
            json,
            quiet,
        } => transcode(input, out, &backend, rungs, preset, json, quiet),
        Command::Simulate {
            out,
            users,
            videos,
            seed,
        } => {
            let cfg = inference::sim::WorldConfig {
                users,
                videos,
                creators: (videos / 8).max(1),
                seed,
                ..Default::default()
            };
            match feedtools::simulate(&cfg, &out) {
                Ok((v, e)) => {
                    println!("wrote {v} videos and {e} watch events to {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Command::EvalFeed {
            videos,
            log,
            ranker,
            config,
            out,
            seed,
            quiet,
        } => {
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
        Command::TrainRanker {
            config,
            videos,
            log,
            out,
            quiet,
        } => {
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
        Command::Bench {
            which: BenchCommand::Rank { out },
        } => bench_done(benches::feed::rank(&out), &out),
        Command::Bench {
            which:
                BenchCommand::Feed {
                    out,
                    sizes,
                    clients,
                    pages,
                    secs,
                },
        } => bench_done(
            benches::feed::feed(&sizes, clients, pages, secs, &out),
            &out,
        ),
        Command::Bench {
            which: BenchCommand::Retrieval { out, sizes },
        } => bench_done(benches::feed::retrieval(&sizes, &out), &out),
        Command::Bench {
            which:
                BenchCommand::Ingest {
                    out,
                    config,
                    clients,
                    batch,
                    secs,
                    videos,
                },
        } => {
            let o = ingest_bench::Options {
                config,
                clients,
                batch,
                secs,
                videos,
                out: out.clone(),
            };
            match ingest_bench::run(&o).and_then(|r| {
                benches::write_json(&o.out, &r).map_err(|e| error::Error::Task(e.to_string()))?;
                Ok(r)
            }) {
                Ok(r) => {
                    feedtools::print_json(&r);
                    eprintln!("wrote {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Command::Bench {
            which: BenchCommand::Embed { out, model_dir },
        } => bench_done(benches::feed::embed(&model_dir, &out), &out),
        Command::Bench {
            which:
                BenchCommand::Encode {
                    out,
                    seconds,
                    runs,
                    preset,
                    source: Source::Synthetic,
                    backend,
                },
        } => {
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
    }
}

fn bench_done<T: serde::Serialize>(r: benches::Result<T>, out: &std::path::Path) -> ExitCode {
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

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn report(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        eprintln!("  caused by: {s}");
        src = s.source();
    }
    ExitCode::FAILURE
}

fn run_server(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    demo: Option<PathBuf>,
) -> ExitCode {
    let mut config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return report(&e),
    };
    match rt.block_on(serve::serve(config, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn run_doctor(config: Option<PathBuf>, json: bool) -> ExitCode {
    let config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let r = doctor::run(&config, hardware::Inventory::discover());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("serialisable")
        );
    } else {
        print!("{}", r.render());
    }
    if r.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn add_user(config: Option<PathBuf>, username: &str, role: RoleArg) -> ExitCode {
    let config = match config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    // From stdin only: a password in argv or the environment leaks into
    // process listings and shell history.
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        return report(&e);
    }
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let role = match role {
        RoleArg::Viewer => api::wire::Role::Viewer,
        RoleArg::Creator => api::wire::Role::Creator,
        RoleArg::Admin => api::wire::Role::Admin,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return report(&e),
    };
    match rt.block_on(serve::add_user(config, username, &password, role)) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => report(&e),
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
