//! The `appliance bench …` command line: which benchmark, with what
//! options, and the call that runs it (the benches themselves are in
//! `bench` and the `bench_*` modules, and in the `benches` crate).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::cli;

#[derive(Subcommand)]
pub enum BenchCommand {
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
    /// Audio fingerprint lookups in the sounds index at `sounds`
    /// fingerprints (songs made with ffmpeg, degraded copies as queries,
    /// distractors derived from them) against a brute-force scan.
    Fingerprints {
        #[arg(long, default_value = "benches/results/fingerprints-cpu.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        sounds: usize,
        #[arg(long, default_value_t = 40)]
        songs: usize,
        /// Fingerprints the brute-force anchor scans per query.
        #[arg(long, default_value_t = 2000)]
        scan_sample: usize,
        /// Where the generated songs are kept between runs.
        #[arg(long, default_value = "target/bench-fingerprints")]
        cache: PathBuf,
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
    /// Search over users, sounds and hashtags at 1M of each: the box's
    /// tantivy index vs SQLite (prefix range / FTS5) on the same data and
    /// queries, alternating; p50/p95/p99/max per kind and query type.
    Search {
        #[arg(long, default_value = "benches/results/search-cpu.json")]
        out: PathBuf,
        /// Users, sounds and hashtags generated (each).
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        /// Queries per kind and query type.
        #[arg(long, default_value_t = 300)]
        queries: usize,
        #[arg(long, default_value_t = 21)]
        seed: u64,
        /// Indexing threads for the build.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Indexing memory for the build, MB.
        #[arg(long, default_value_t = 1024)]
        heap_mb: usize,
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
pub enum Source {
    /// Generated with lavfi (moving test pattern + noise): reproducible anywhere.
    Synthetic,
}

pub fn run(which: BenchCommand) -> ExitCode {
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
        BenchCommand::Fingerprints {
            out,
            sounds,
            songs,
            scan_sample,
            cache,
        } => cli::bench::fingerprints(cli::bench_fingerprints::Options {
            sounds,
            songs,
            scan_sample,
            out,
            cache,
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
        BenchCommand::Search {
            out,
            entities,
            queries,
            seed,
            threads,
            heap_mb,
        } => cli::bench::search(cli::bench_search::Options {
            entities,
            queries,
            seed,
            out,
            threads,
            heap_mb,
        }),
        BenchCommand::Plot { files } => cli::bench::plot(&files),
    }
}
