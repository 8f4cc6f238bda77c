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
    /// Live RTSP channels sustained in real time and live latency: the
    /// appliance vs ffmpeg, 720p30 H.264 cameras → 720/480/360 HLS.
    Live {
        #[arg(long, default_value = "benches/results/live-cpu.json")]
        out: PathBuf,
        /// GStreamer RTSP server script (the camera).
        #[arg(long, default_value = "tests/rtsp/serve.py")]
        server: PathBuf,
        #[arg(long, default_value_t = 8)]
        max_channels: usize,
        #[arg(long, default_value_t = 8)]
        warmup_secs: u64,
        #[arg(long, default_value_t = 16)]
        measure_secs: u64,
        #[arg(long, default_value = "veryfast")]
        preset: String,
    },
    /// Candidates scored per second by batch size (formula and model).
    Rank {
        #[arg(long, default_value = "benches/results/rank-cpu.json")]
        out: PathBuf,
    },
    /// Feed latency p50/p99 with concurrent clients at several catalog
    /// sizes: in the engine (closed loop), or with --http through the real
    /// server under open-loop load at fixed rates.
    Feed {
        /// Default: benches/results/feed-cpu.json, or feed-http-cpu.json
        /// with --http.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Pages per scrolling session.
        #[arg(long, default_value_t = 5)]
        pages: usize,
        /// Seconds of load (per rate with --http).
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Over HTTP through the server, open loop.
        #[arg(long)]
        http: bool,
        /// With --http: offered page requests per second, all clients together.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200,400")]
        rates: Vec<f64>,
        /// With --http: signed-in viewers the sessions are drawn from.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// With --http: an appliance.toml for the server (its data_dir is
        /// replaced by a scratch directory).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Recall@100 against exact search and queries/s, per index type and size.
    Retrieval {
        #[arg(long, default_value = "benches/results/retrieval-cpu.json")]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
    },
    /// Watch events/s accepted over HTTP and the lag until they are
    /// queryable in the rollups, sampled every 500 ms, with the stores
    /// `--config` names (embedded by default): a closed-loop burst, then
    /// open-loop runs at fixed rates. JSON and its plot (`.svg`, `.png`).
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
        /// Seconds of the closed-loop burst (0: none).
        #[arg(long, default_value_t = 15)]
        secs: u64,
        /// Open-loop runs, each RATE:SECS (events/s for that long).
        #[arg(long, value_delimiter = ',', default_value = "165000:15,100000:30")]
        paced: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        videos: usize,
        /// A previous report to keep in this one under `before`.
        #[arg(long)]
        before: Option<PathBuf>,
        /// What else ran on the machine meanwhile (for the report).
        #[arg(long, default_value = "nothing else noted")]
        note: String,
    },
    /// Time from `complete` to first playable and to the whole ladder,
    /// through the real server, for phone-like H.264 uploads and a HEVC
    /// one, beside the ffmpeg CLI making the whole ladder (alternating).
    Publish {
        #[arg(long, default_value = "benches/results/publish-cpu.json")]
        out: PathBuf,
        /// Lengths of the H.264 uploads, in seconds.
        #[arg(long, value_delimiter = ',', default_value = "10,60,180")]
        seconds: Vec<u32>,
        /// Length of the HEVC upload (0: none).
        #[arg(long, default_value_t = 60)]
        hevc_seconds: u32,
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Where the generated uploads are kept between runs.
        #[arg(long, default_value = "target/bench-publish")]
        cache: PathBuf,
        /// Run the server with `transcode.early_rung = false` (uploads that
        /// are not remuxed: one pass for every rung).
        #[arg(long)]
        one_pass: bool,
    },
    /// The HLS origin against nginx serving the same files statically
    /// (wrk on loopback, alternating): a media segment and a playlist.
    Origin {
        #[arg(long, default_value = "benches/results/origin-cpu.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, value_delimiter = ',', default_value = "64,512")]
        connections: Vec<usize>,
        /// Size of the media segment, in MB.
        #[arg(long, default_value_t = 3)]
        segment_mb: usize,
    },
    /// Sentences embedded per second by batch size: candle (CPU) vs
    /// PyTorch through sentence-transformers, alternating.
    Embed {
        #[arg(long, default_value = "benches/results/embed-cpu.json")]
        out: PathBuf,
        #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
        model_dir: PathBuf,
        /// Alternating candle/PyTorch rounds per batch size.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Video texts embedded per run.
        #[arg(long, default_value_t = 512)]
        texts: usize,
        /// The Python with torch and sentence-transformers.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value = "scripts/bench/embed_torch.py")]
        torch_script: PathBuf,
    },
    /// Redraw the plot of results already written (.svg and .png beside
    /// each JSON, same name) from the JSON alone; the kind of bench is told
    /// from its fields. E.g. `appliance bench plot benches/results/*.json`.
    Plot {
        /// The results' JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Source {
    /// Generated with lavfi (moving test pattern + noise): reproducible anywhere.
    Synthetic,
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
        Command::Bench { which } => bench(which),
    }
}

fn bench(which: BenchCommand) -> ExitCode {
    match which {
        BenchCommand::Live {
            out,
            server,
            max_channels,
            warmup_secs,
            measure_secs,
            preset,
        } => cli::bench::done(
            benches::live::run(&benches::live::Config {
                server_script: server,
                max_channels,
                warmup_secs,
                measure_secs,
                preset,
                out: out.clone(),
            }),
            &out,
        ),
        BenchCommand::Rank { out } => cli::bench::done(benches::feed::rank(&out), &out),
        BenchCommand::Feed {
            out,
            sizes,
            clients,
            pages,
            secs,
            http: true,
            rates,
            users,
            config,
        } => cli::bench::feed_http(cli::bench_feed_http::Options {
            out: out.unwrap_or_else(|| "benches/results/feed-http-cpu.json".into()),
            config,
            sizes,
            rates,
            clients,
            pages,
            users,
            secs,
        }),
        BenchCommand::Feed {
            out,
            sizes,
            clients,
            pages,
            secs,
            ..
        } => {
            let out = out.unwrap_or_else(|| "benches/results/feed-cpu.json".into());
            cli::bench::done(
                benches::feed::feed(&sizes, clients, pages, secs, &out),
                &out,
            )
        }
        BenchCommand::Retrieval { out, sizes } => {
            cli::bench::done(benches::feed::retrieval(&sizes, &out), &out)
        }
        BenchCommand::Ingest {
            out,
            config,
            clients,
            batch,
            secs,
            paced,
            videos,
            before,
            note,
        } => cli::bench::ingest(cli::bench::IngestArgs {
            out,
            config,
            clients,
            batch,
            secs,
            paced,
            videos,
            before,
            note,
        }),
        BenchCommand::Publish {
            out,
            seconds,
            hevc_seconds,
            rounds,
            cache,
            one_pass,
        } => cli::bench::publish(cli::bench_publish::Options {
            out,
            seconds,
            hevc_seconds,
            rounds,
            cache,
            early_rung: !one_pass,
        }),
        BenchCommand::Origin {
            out,
            secs,
            rounds,
            connections,
            segment_mb,
        } => cli::bench::origin(cli::bench_origin::Options {
            secs,
            rounds,
            connections,
            segment_bytes: segment_mb * 1_000_000,
            out,
        }),
        BenchCommand::Embed {
            out,
            model_dir,
            rounds,
            texts,
            python,
            torch_script,
        } => {
            let cfg = benches::embed::Config {
                model_dir,
                out,
                rounds: rounds.max(1),
                texts: texts.max(1),
                python,
                script: torch_script,
            };
            cli::bench::done(benches::embed::embed(&cfg), &cfg.out)
        }
        BenchCommand::Encode {
            out,
            seconds,
            runs,
            preset,
            source: Source::Synthetic,
            backend,
        } => cli::bench::encode(out, seconds, runs, preset, backend),
        BenchCommand::Plot { files } => cli::bench::plot(&files),
    }
}
