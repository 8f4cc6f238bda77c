//! `gpukit`: the GPU bring-up kit's checks, in a binary that links no FFmpeg
//! and loads every NVIDIA library with `dlopen`, so it starts on any x86-64
//! Linux host and says plainly when there is no GPU.
//!
//! `scripts/gpu-bundle` builds it with its clips and references;
//! `scripts/gpu-check --bundle DIR` runs it (and `gpukit-models`) on the GPU
//! host. See ARCHITECTURE.md, "The GPU bring-up kit".

mod clips;
mod conformance;
mod discover;
mod error;
mod nvdec;
mod reference;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::error::{KitError, Result};

#[derive(Parser)]
#[command(
    name = "gpukit",
    about = "GPU checks of the video appliance, without FFmpeg"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What the box sees: NVIDIA libraries, GPUs, NVDEC/NVENC, placement.
    Discover,
    /// Every pixel kernel on GPU 0 against its CPU reference.
    Kernels,
    /// NVDEC + fused ladder scale on every clip in DIR against its reference.
    Nvdec {
        #[arg(long)]
        clips: PathBuf,
    },
    /// Everything above, as one JSON report.
    All {
        #[arg(long)]
        clips: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Bundle time, CPU only: describe CLIP from FFmpeg's raw decode of it.
    Reference {
        #[arg(long)]
        clip: PathBuf,
        #[arg(long)]
        codec: String,
        #[arg(long)]
        bit_depth: u8,
        #[arg(long)]
        width: u32,
        #[arg(long)]
        height: u32,
        /// Raw `nv12` (8-bit) or `p010le` (10-bit) frames; `-` for stdin.
        #[arg(long, default_value = "-")]
        raw: PathBuf,
        /// Frames to keep whole for PSNR, e.g. `0,60`.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        samples: Vec<usize>,
    },
}

/// The whole run, as `scripts/gpu-check` stores it.
#[derive(Serialize)]
struct Report {
    /// `passed`, `failed`, or `no-gpu`.
    status: &'static str,
    discovery: discover::Discovery,
    kernels: Option<Result<conformance::KernelReport, String>>,
    nvdec: Option<Result<Vec<nvdec::ClipReport>, String>>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpukit: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| KitError::Json {
        path: "stdout".into(),
        source,
    })?;
    println!("{text}");
    Ok(())
}

/// Says so and returns `true` when there is no GPU to check.
fn no_gpu(d: &discover::Discovery) -> bool {
    if d.gpu_count() > 0 {
        return false;
    }
    let why = if d.inventory.notes.is_empty() {
        "the driver reports no device".to_owned()
    } else {
        d.inventory.notes.join("; ")
    };
    eprintln!("gpukit: no NVIDIA GPU ({why}); the GPU checks are skipped");
    true
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Discover => {
            let d = discover::run();
            no_gpu(&d);
            print_json(&d)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Kernels => {
            if no_gpu(&discover::run()) {
                return Ok(ExitCode::SUCCESS);
            }
            let r = conformance::run(0)?;
            print_json(&r)?;
            Ok(verdict(r.passed))
        }
        Command::Nvdec { clips } => {
            let d = discover::run();
            if no_gpu(&d) {
                return Ok(ExitCode::SUCCESS);
            }
            let r = nvdec::run(&clips, &d.inventory, 0)?;
            print_json(&r)?;
            Ok(verdict(r.iter().all(|c| c.status != "failed")))
        }
        Command::All { clips, out } => all(&clips, &out),
        Command::Reference {
            clip,
            codec,
            bit_depth,
            width,
            height,
            raw,
            samples,
        } => {
            let c = reference::run(&reference::Args {
                clip: &clip,
                codec: &codec,
                bit_depth,
                width,
                height,
                raw: &raw,
                samples: &samples,
            })?;
            eprintln!(
                "{}: {} frames, {} kept",
                c.file,
                c.identity_sha256.len(),
                c.samples.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn all(clips: &std::path::Path, out: &std::path::Path) -> Result<ExitCode> {
    eprintln!("== discovery");
    let discovery = discover::run();
    for line in &discovery.stages {
        eprintln!("  {line}");
    }
    let mut report = Report {
        status: "no-gpu",
        kernels: None,
        nvdec: None,
        discovery,
    };
    if !no_gpu(&report.discovery) {
        eprintln!("== kernels against the CPU reference");
        report.kernels = Some(conformance::run(0).map_err(|e| e.to_string()));
        // Saved before NVDEC runs: a crash there (it once aborted on the
        // H200) must not take the kernels' results with it.
        report.status = "incomplete";
        save(&report, out)?;
        eprintln!("== NVDEC + fused scale against the CPU decode and resize");
        report.nvdec =
            Some(nvdec::run(clips, &report.discovery.inventory, 0).map_err(|e| e.to_string()));
        let kernels_ok = matches!(&report.kernels, Some(Ok(k)) if k.passed);
        let nvdec_ok = matches!(&report.nvdec,
            Some(Ok(c)) if c.iter().all(|c| c.status != "failed"));
        report.status = if kernels_ok && nvdec_ok {
            "passed"
        } else {
            "failed"
        };
    }
    save(&report, out)?;
    eprintln!("gpukit: {} ({})", report.status, out.display());
    Ok(verdict(report.status != "failed"))
}

fn save(report: &Report, out: &std::path::Path) -> Result<()> {
    let text = serde_json::to_vec_pretty(report).map_err(|source| KitError::Json {
        path: out.to_owned(),
        source,
    })?;
    std::fs::write(out, text).map_err(KitError::io(out))
}
