//! Sentence embeddings per second, the appliance's candle path (all-MiniLM-
//! L6-v2 on the CPU, `inference::Embedder`) vs PyTorch CPU through
//! sentence-transformers (`scripts/bench/embed_torch.py`, two threads), on
//! the same texts: the simulated catalog's video texts, as the feed embeds
//! them. Per batch size the two alternate for several rounds (a noisy
//! neighbour hits both alike) and the report keeps the medians. The Python
//! side stays up between runs, so no run pays for importing torch. Without
//! a working PyTorch stack the report says why and carries candle alone.
//!
//! The plot (sentences/s per batch size, the two side by side) is written
//! next to the JSON, same name, `.svg` and `.png` (see [`crate::plot`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::{BenchError, Machine, Result};

pub const BATCHES: [usize; 4] = [1, 8, 32, 64];

pub struct Config {
    pub model_dir: PathBuf,
    pub out: PathBuf,
    /// Alternating candle/PyTorch rounds per batch size.
    pub rounds: usize,
    /// How many of the catalog's video texts each run embeds.
    pub texts: usize,
    pub python: String,
    pub script: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct EmbedRow {
    pub batch: usize,
    /// Median over the rounds.
    pub candle_sentences_per_sec: f64,
    pub torch_sentences_per_sec: Option<f64>,
    /// candle ÷ PyTorch: above 1, the appliance is faster.
    pub candle_over_torch: Option<f64>,
    pub candle_runs: Vec<f64>,
    pub torch_runs: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct Torch {
    pub torch: String,
    pub sentence_transformers: String,
    pub threads: u64,
    /// Cosine between the two sides' embeddings of the first texts: the
    /// same model either way.
    pub min_cosine_vs_candle: f64,
}

#[derive(Debug, Serialize)]
pub struct EmbedReport {
    pub machine: Machine,
    pub model: String,
    pub candle: String,
    /// PyTorch's versions, or `None` with `torch_missing` saying why.
    pub torch: Option<Torch>,
    pub torch_missing: Option<String>,
    pub texts: usize,
    pub rounds: usize,
    pub rows: Vec<EmbedRow>,
}

/// The Python side, serving runs over stdin/stdout.
struct TorchServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    command: String,
}

impl TorchServer {
    /// Starts the script and waits for its ready line (its versions).
    fn start(cfg: &Config, texts: &Path) -> Result<(Self, Value)> {
        let command = format!("{} {} --serve", cfg.python, cfg.script.display());
        let failed = |detail: String| BenchError::Command {
            command: command.clone(),
            detail,
        };
        let mut child = Command::new(&cfg.python)
            .arg(&cfg.script)
            .arg("--model-dir")
            .arg(&cfg.model_dir)
            .arg("--texts")
            .arg(texts)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("no pipes to the child".into()));
        };
        let command = command.clone();
        let mut server = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            command,
        };
        let ready = server.reply()?;
        if let Some(e) = ready.get("error").and_then(Value::as_str) {
            return Err(BenchError::Command {
                command: server.command.clone(),
                detail: e.to_string(),
            });
        }
        Ok((server, ready))
    }

    fn reply(&mut self) -> Result<Value> {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line);
        if read.map_or(true, |n| n == 0) {
            return Err(BenchError::Command {
                command: self.command.clone(),
                detail: "exited without answering (its stderr is above)".into(),
            });
        }
        serde_json::from_str(&line).map_err(|_| BenchError::Parse {
            what: "a JSON reply",
            command: self.command.clone(),
        })
    }

    fn ask(&mut self, request: Value) -> Result<Value> {
        writeln!(self.stdin, "{request}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| BenchError::Command {
                command: self.command.clone(),
                detail: e.to_string(),
            })?;
        self.reply()
    }

    /// Sentences per second at `batch` over all the texts.
    fn run(&mut self, batch: usize) -> Result<f64> {
        let r = self.ask(serde_json::json!({ "batch": batch }))?;
        match (r["sentences"].as_f64(), r["seconds"].as_f64()) {
            (Some(n), Some(s)) if s > 0.0 => Ok(n / s),
            _ => Err(BenchError::Parse {
                what: "sentences and seconds",
                command: self.command.clone(),
            }),
        }
    }

    fn embeddings(&mut self, n: usize) -> Result<Vec<Vec<f32>>> {
        let r = self.ask(serde_json::json!({ "embed": n }))?;
        serde_json::from_value(r["embeddings"].clone()).map_err(|_| BenchError::Parse {
            what: "embeddings",
            command: self.command.clone(),
        })
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        // The script only ever waits on stdin: end it, and reap it so no
        // zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    crate::percentile(&runs, 0.5)
}

pub fn embed(cfg: &Config) -> Result<EmbedReport> {
    let io = |op: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| BenchError::Io { op, path, source }
    };
    let e = inference::Embedder::load(&cfg.model_dir)?;
    let world = inference::sim::World::generate(&inference::sim::WorldConfig::default());
    let texts: Vec<String> = world.video_texts().into_iter().take(cfg.texts).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let list = tempfile::NamedTempFile::new().map_err(io("creating", Path::new("a temp file")))?;
    std::fs::write(list.path(), serde_json::to_vec(&texts).unwrap_or_default())
        .map_err(io("writing", list.path()))?;

    let (mut torch, mut torch_missing, mut torch_info) = (None, None, None);
    match TorchServer::start(cfg, list.path()) {
        Ok((mut server, ready)) => {
            let probe = 64.min(refs.len());
            let theirs = server.embeddings(probe)?;
            let ours = e.embed_all(&refs[..probe], 32)?;
            let min_cosine = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| f64::from(inference::embed::dot(a, b)))
                .fold(1.0, f64::min);
            torch_info = Some(Torch {
                torch: ready["torch"].as_str().unwrap_or("?").into(),
                sentence_transformers: ready["sentence_transformers"]
                    .as_str()
                    .unwrap_or("?")
                    .into(),
                threads: ready["threads"].as_u64().unwrap_or(0),
                min_cosine_vs_candle: min_cosine,
            });
            torch = Some(server);
        }
        Err(err) => {
            eprintln!("PyTorch side unavailable, reporting candle alone: {err}");
            torch_missing = Some(err.to_string());
        }
    }

    // Warm-up: first-touch of the weights and rayon's threads.
    e.embed_all(&refs[..refs.len().min(64)], 32)?;
    let mut rows = Vec::new();
    for batch in BATCHES {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..cfg.rounds {
            let t = Instant::now();
            let n = e.embed_all(&refs, batch)?.len();
            ours.push(n as f64 / t.elapsed().as_secs_f64());
            if let Some(server) = torch.as_mut() {
                theirs.push(server.run(batch)?);
            }
            eprintln!(
                "  batch {batch} round {round}: candle {:.1}/s, PyTorch {}",
                ours[ours.len() - 1],
                theirs.last().map_or("-".into(), |v| format!("{v:.1}/s"))
            );
        }
        let candle = median(ours.clone());
        let torch_median = (!theirs.is_empty()).then(|| median(theirs.clone()));
        rows.push(EmbedRow {
            batch,
            candle_sentences_per_sec: candle,
            torch_sentences_per_sec: torch_median,
            candle_over_torch: torch_median.map(|t| candle / t),
            candle_runs: ours,
            torch_runs: theirs,
        });
    }
    drop(torch);

    let report = EmbedReport {
        machine: Machine::current(),
        model: "all-MiniLM-L6-v2, f32, mean pooling + L2 norm".into(),
        candle: "inference::Embedder on the CPU: packed BERT forward (no padding), gemm + rayon on every core".into(),
        torch: torch_info,
        torch_missing,
        texts: texts.len(),
        rounds: cfg.rounds,
        rows,
    };
    crate::write_report(&cfg.out, &report)?;
    Ok(report)
}
