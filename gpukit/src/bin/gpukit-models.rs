//! `gpukit-models`: the feed's models on CUDA and on the CPU, side by side in
//! one process: all-MiniLM-L6-v2 embeddings (sentences/s, and agreement with
//! PyTorch on the same weights) and the ranker (candidates/s).
//!
//! Built with candle's CUDA backend, so it links NVIDIA's CUDA libraries;
//! `scripts/gpu-check` runs it only where they load (PyTorch's wheels carry
//! them on the GPU host).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use candle_core::Device;
use clap::{Parser, Subcommand};
use inference::rank::{Example, Features, RankModel, FEATURES};
use inference::Embedder;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "gpukit-models",
    about = "The feed's models, CUDA against the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes COUNT video texts (the simulator's captions, hashtags, sounds),
    /// one per line: the sentences both this and PyTorch embed.
    Sentences {
        #[arg(long, default_value_t = 2048)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Embeddings and ranking on each device; JSON to OUT.
    Bench {
        /// config.json, tokenizer.json, model.safetensors.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        sentences: PathBuf,
        /// PyTorch's report on the same model and sentences.
        #[arg(long)]
        torch: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

/// What `gpukit/torch_embed.py` writes.
#[derive(Deserialize)]
struct TorchReport {
    device: String,
    batch: usize,
    sentences_per_sec: f64,
    /// Unit-norm embeddings of the first sentences.
    embeddings: Vec<Vec<f32>>,
}

#[derive(Serialize)]
struct EmbedRow {
    device: String,
    batch: usize,
    /// Median over the rounds.
    sentences_per_sec: f64,
    rounds: Vec<f64>,
}

#[derive(Serialize)]
struct RankRow {
    device: String,
    batch: usize,
    candidates_per_sec: f64,
}

#[derive(Serialize)]
struct Report {
    cuda: std::result::Result<String, String>,
    sentences: usize,
    embed: Vec<EmbedRow>,
    /// Lowest cosine similarity between CUDA and CPU embeddings.
    cuda_vs_cpu_min_cosine: Option<f64>,
    torch: Option<TorchSummary>,
    rank: Vec<RankRow>,
    passed: bool,
}

#[derive(Serialize)]
struct TorchSummary {
    device: String,
    batch: usize,
    sentences_per_sec: f64,
    /// Lowest cosine similarity between PyTorch's and candle's embeddings of
    /// the same sentences (candle on CUDA when it opened, else the CPU).
    min_cosine: f64,
}

/// Agreement below this is a failed check (float32 on both sides).
const MIN_COSINE: f64 = 0.9999;
const BATCH: usize = 32;
const ROUNDS: usize = 3;

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Sentences { count, out } => sentences(count, &out).map(|()| true),
        Command::Bench {
            model,
            sentences,
            torch,
            out,
        } => bench(&model, &sentences, torch.as_deref(), &out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gpukit-models: {e}");
            ExitCode::from(2)
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn sentences(count: usize, out: &Path) -> Result<()> {
    let world = inference::sim::World::generate(&inference::sim::WorldConfig::default());
    let texts: Vec<String> = world
        .video_texts()
        .into_iter()
        .map(|t| t.replace('\n', " "))
        .cycle()
        .take(count)
        .collect();
    std::fs::write(out, texts.join("\n") + "\n").map_err(|e| format!("{}: {e}", out.display()))
}

fn bench(model: &Path, sentences: &Path, torch: Option<&Path>, out: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(sentences).map_err(|e| format!("{}: {e}", sentences.display()))?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let cuda = Device::new_cuda(0).map_err(|e| e.to_string());
    let mut devices = vec![("cpu".to_owned(), Device::Cpu)];
    match &cuda {
        Ok(d) => devices.push(("cuda:0".to_owned(), d.clone())),
        Err(e) => eprintln!("gpukit-models: CUDA device 0 did not open ({e}); CPU only"),
    }
    let cuda = cuda.map(|_| "cuda:0".to_owned());

    let embedders = devices
        .iter()
        .map(|(name, d)| Embedder::load_on(model, d.clone()).map_err(|e| format!("{name}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let probe: Vec<&str> = texts.iter().copied().take(64).collect();
    let mut first = Vec::new();
    for e in &embedders {
        // Also the warm-up: CUDA kernels load and cuBLAS initialises here.
        first.push(e.embed_all(&probe, BATCH).map_err(|e| e.to_string())?);
    }
    let mut rounds = vec![Vec::new(); devices.len()];
    for _ in 0..ROUNDS {
        for (i, e) in embedders.iter().enumerate() {
            let t = Instant::now();
            e.embed_all(&texts, BATCH).map_err(|e| e.to_string())?;
            rounds[i].push(texts.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    let embed: Vec<EmbedRow> = devices
        .iter()
        .zip(rounds)
        .map(|((name, _), r)| EmbedRow {
            device: name.clone(),
            batch: BATCH,
            sentences_per_sec: median(&r),
            rounds: r,
        })
        .collect();
    for row in &embed {
        eprintln!(
            "  embed {} batch {}: {:.0} sentences/s",
            row.device, row.batch, row.sentences_per_sec
        );
    }
    let cuda_vs_cpu_min_cosine = (first.len() > 1).then(|| min_cosine(&first[0], &first[1]));
    let best = first.last().cloned().unwrap_or_default();
    let torch = match torch {
        Some(p) => {
            let raw = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let t: TorchReport =
                serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", p.display()))?;
            let n = t.embeddings.len().min(best.len());
            Some(TorchSummary {
                min_cosine: min_cosine(&t.embeddings[..n], &best[..n]),
                device: t.device,
                batch: t.batch,
                sentences_per_sec: t.sentences_per_sec,
            })
        }
        None => None,
    };

    let rank = rank_rows(&devices)?;
    let passed = cuda.is_ok()
        && cuda_vs_cpu_min_cosine.is_some_and(|c| c >= MIN_COSINE)
        && torch.as_ref().is_none_or(|t| t.min_cosine >= MIN_COSINE);
    let report = Report {
        cuda,
        sentences: texts.len(),
        embed,
        cuda_vs_cpu_min_cosine,
        torch,
        rank,
        passed,
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(passed)
}

/// The ranker trained as the box trains it (on the CPU), then scored on each
/// device, alternating, at growing batch sizes.
fn rank_rows(devices: &[(String, Device)]) -> Result<Vec<RankRow>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: deterministic features without another dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    };
    let examples: Vec<Example> = (0..5000)
        .map(|_| {
            let mut f: Features = [0.0; FEATURES];
            f.iter_mut().for_each(|x| *x = next());
            Example {
                positive: f[0] + f[1] > 1.0,
                features: f,
                weight: 1.0,
            }
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("gpukit-rank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("ranker.safetensors");
    inference::rank::train(&examples, 50, &path).map_err(|e| e.to_string())?;
    let models = devices
        .iter()
        .map(|(_, d)| RankModel::load_on(&path, d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = Vec::new();
    for batch in [100usize, 1_000, 10_000, 100_000] {
        let feats: Vec<Features> = examples
            .iter()
            .cycle()
            .take(batch)
            .map(|e| e.features)
            .collect();
        for ((name, _), m) in devices.iter().zip(&models) {
            m.score(&feats).map_err(|e| e.to_string())?; // warm-up
            let t = Instant::now();
            let mut scored = 0usize;
            while t.elapsed() < Duration::from_millis(400) {
                scored += m.score(&feats).map_err(|e| e.to_string())?.len();
            }
            rows.push(RankRow {
                device: name.clone(),
                batch,
                candidates_per_sec: scored as f64 / t.elapsed().as_secs_f64(),
            });
            eprintln!(
                "  rank {name} batch {batch}: {:.0} candidates/s",
                rows.last().map_or(0.0, |r| r.candidates_per_sec)
            );
        }
    }
    Ok(rows)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

fn min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(1e-12)
        })
        .fold(1.0, f64::min)
}
