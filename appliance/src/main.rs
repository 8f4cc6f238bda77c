//! `appliance`: the one binary of the regional video appliance. This file
//! only parses the command line and dispatches to `cli` (one file per
//! command); `app` is the composition root that wires the domains.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod accounts;
mod app;
mod cli;
mod engagement;
mod error;
mod feed;
mod live;
mod notifications;
mod ops;
mod search;
mod sounds;
mod store;
mod videos;
mod webhooks;

/// The commit this binary was built from (`build.rs`), or `unknown`.
pub const BUILD_COMMIT: &str = env!("APPLIANCE_COMMIT");

#[derive(Parser)]
#[command(name = "appliance", version, about = "Regional GPU video appliance")]
struct Cli {
    /// Log lines as text (coloured only at a terminal) or as JSON objects,
    /// one per line, for a log shipper. RUST_LOG filters them.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// Encode every rung, even when the source could be the top rung as
        /// it is (remuxed).
        #[arg(long)]
        no_remux: bool,
        /// Print the result as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// No progress bars (they are also off when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
    /// Pull one RTSP camera into a live HLS ladder in DIR (reconnecting on
    /// its own) until --duration runs out or SIGINT/SIGTERM.
    IngestRtsp(cli::ingest_rtsp::Args),
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
    /// Transcode jobs in the catalog (queued, running and failed, with
    /// reasons, attempts and age), newest first after the running ones.
    Jobs {
        /// The config `serve` runs with (its data directory is read).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Failed jobs only.
        #[arg(long, conflicts_with = "all")]
        failed: bool,
        /// Jobs in every state (succeeded and cancelled too).
        #[arg(long)]
        all: bool,
        /// Jobs shown at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON (`{"items": [...], "counts": {...}}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generate a synthetic world (users with latent interests, topical
    /// videos, a watch-behaviour model) and its interaction log.
    Simulate {
        /// Directory for videos.jsonl, events.csv and events.jsonl.
        #[arg(long, default_value = "sim")]
        out: PathBuf,
        #[arg(long)]
        users: Option<usize>,
        #[arg(long)]
        videos: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// A log shaped like real ones (long-tailed popularity and activity,
        /// arrivals over time, popularity- and position-driven choices,
        /// drifting interests); also writes curves.svg. --users/--videos
        /// default to 1500/3000 then.
        #[arg(long)]
        realistic: bool,
    },
    /// Offline evaluation of the feed against baselines (popularity,
    /// recent popularity, item-kNN, EASE, random) under a time split and
    /// leave-last-out, per cohort of history (HR@10, NDCG@10, coverage,
    /// diversity); simulates a world when no log is given. Prints JSON.
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
        /// Also write the report here (and its plot beside it, .svg).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Without --videos/--log: simulate a realistic log (see simulate).
        #[arg(long)]
        realistic: bool,
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
        which: cli::bench_command::BenchCommand,
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
    /// Every account: name, role, when it was made, how many videos it has.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON (`{"items": [...]}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a password (the first line of stdin, same rule as `add`);
    /// every token issued before is revoked.
    Passwd {
        username: String,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server says what its jobs do by default; the tools only warn.
    let default = if matches!(cli.command, Command::Serve { .. }) {
        "warn,appliance=info,media=info,access=info"
    } else {
        "warn"
    };
    cli::logging::init(matches!(cli.log_format, LogFormat::Json), default);
    match cli.command {
        Command::Serve {
            config,
            listen,
            demo,
        } => cli::serve::run(config, listen, demo),
        Command::User {
            which:
                UserCommand::Add {
                    username,
                    role,
                    config,
                },
        } => {
            let role = match role {
                RoleArg::Viewer => api::wire::Role::Viewer,
                RoleArg::Creator => api::wire::Role::Creator,
                RoleArg::Admin => api::wire::Role::Admin,
            };
            cli::user::add(config, &username, role)
        }
        Command::User {
            which: UserCommand::List { config, json },
        } => cli::user::list(config, json),
        Command::User {
            which: UserCommand::Passwd { username, config },
        } => cli::user::passwd(config, &username),
        Command::Jobs {
            config,
            failed,
            all,
            limit,
            json,
        } => cli::jobs::run(cli::jobs::Args {
            config,
            failed,
            all,
            limit,
            json,
        }),
        Command::Doctor { config, json } => cli::doctor::run(config, json),
        Command::IngestRtsp(args) => cli::ingest_rtsp::run(args),
        Command::Transcode {
            input,
            out,
            backend,
            rungs,
            preset,
            no_remux,
            json,
            quiet,
        } => cli::transcode::run(cli::transcode::Args {
            input,
            out,
            backend,
            rungs,
            preset,
            remux_source: !no_remux,
            json,
            quiet,
        }),
        Command::Simulate {
            out,
            users,
            videos,
            seed,
            realistic,
        } => cli::feed::simulate(out, users, videos, seed, realistic),
        Command::EvalFeed {
            videos,
            log,
            ranker,
            config,
            out,
            seed,
            realistic,
            quiet,
        } => cli::feed::eval(videos, log, ranker, config, out, seed, realistic, quiet),
        Command::TrainRanker {
            config,
            videos,
            log,
            out,
            quiet,
        } => cli::feed::train(config, videos, log, out, quiet),
        Command::Bench { which } => cli::bench_command::run(which),
    }
}
