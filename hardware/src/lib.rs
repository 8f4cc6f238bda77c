//! Accelerator discovery, capabilities and placement.
//!
//! `hardware` answers one question for the rest of the appliance: *which engine
//! runs each stage of a job on this host?* It discovers what the host has at
//! start-up ([`Inventory::discover`]: CPU, NVIDIA libraries, GPUs with their
//! NVDEC/NVENC capabilities) and turns a backend request plus a job's shape into
//! a per-stage [`Placement`], bounded by encode sessions and GPU memory
//! ([`Inventory::reserve`]).
//!
//! Every NVIDIA library is probed with `dlopen` before anything touches it, so
//! a host without them (CI, laptops) gets a CPU-only inventory, never a panic.

pub mod nvidia;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HardwareError {
    #[error("backend `{requested}` is not available on this host: {reason}")]
    BackendUnavailable {
        requested: BackendRequest,
        reason: String,
    },
    #[error("unknown backend `{0}` (expected one of: auto, cpu, nvidia)")]
    UnknownBackend(String),
    /// A CUDA, NVDEC or kernel call failed on the GPU.
    #[error("GPU: {op}: {reason}")]
    Device { op: &'static str, reason: String },
}

/// What a caller asked for on the command line or in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendRequest {
    /// The fastest engine the inventory offers for each stage.
    #[default]
    Auto,
    Cpu,
    /// The GPU for every stage a GPU can run; stages no GPU offers (encode on
    /// an H100) stay on the CPU. Refused when no stage can run on a GPU.
    Nvidia,
}

impl FromStr for BackendRequest {
    type Err = HardwareError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "nvidia" | "gpu" | "cuda" => Ok(Self::Nvidia),
            _ => Err(HardwareError::UnknownBackend(s.to_owned())),
        }
    }
}

impl fmt::Display for BackendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Nvidia => "nvidia",
        })
    }
}

/// The engine a single stage runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Cpu,
    /// An NVIDIA GPU, by its index in [`Inventory::gpus`] (the CUDA ordinal).
    Nvidia(usize),
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Nvidia(i) => write!(f, "nvidia:{i}"),
        }
    }
}

/// Where each stage of one transcoding job runs. Stages are placed
/// independently because engines are: an H100 decodes (NVDEC) but cannot
/// encode (no NVENC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub decode: Engine,
    pub scale: Engine,
    pub encode: Engine,
}

impl Placement {
    pub const CPU: Placement = Placement {
        decode: Engine::Cpu,
        scale: Engine::Cpu,
        encode: Engine::Cpu,
    };

    pub fn uses_gpu(&self) -> bool {
        [self.decode, self.scale, self.encode]
            .iter()
            .any(|e| matches!(e, Engine::Nvidia(_)))
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decode={} scale={} encode={}",
            self.decode, self.scale, self.encode
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub model: String,
    pub logical_cores: usize,
}

/// One codec an engine handles, with its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodecCaps {
    pub codec: String,
    pub bit_depth: u8,
    pub max_width: u32,
    pub max_height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeCaps {
    /// NVDEC engines on the chip, where the driver says.
    pub engines: Option<u32>,
    pub codecs: Vec<CodecCaps>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodeCaps {
    /// NVENC engines on the chip, where the driver says.
    pub engines: Option<u32>,
    /// Concurrent sessions the driver allows; `None` = bounded by memory only.
    pub max_sessions: Option<u32>,
    pub codecs: Vec<CodecCaps>,
}

/// One NVIDIA GPU and the engines it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// CUDA device ordinal.
    pub index: usize,
    pub name: String,
    pub compute_capability: (u32, u32),
    pub memory_bytes: u64,
    pub pci_bus_id: Option<String>,
    /// NVML sees this device (utilisation metrics available).
    pub nvml: bool,
    pub nvdec: Option<DecodeCaps>,
    pub nvdec_problem: Option<String>,
    pub nvenc: Option<EncodeCaps>,
    pub nvenc_problem: Option<String>,
}

impl Gpu {
    /// `sm_90` etc.: the architecture kernels are compiled for.
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// The shape of one job, which decides what an engine can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Input codec as FFmpeg names it (`h264`, `hevc`, `vp9`, `av1`).
    pub codec: String,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
    /// The source needs turning upright (the GPU decoder does not rotate).
    pub rotated: bool,
    /// Output sizes, largest first.
    pub rungs: Vec<(u32, u32)>,
}

impl Workload {
    /// A typical upload (1080p H.264 to a four-rung ladder), for showing what
    /// the host would do without a job at hand.
    pub fn typical() -> Self {
        Self {
            codec: "h264".into(),
            bit_depth: 8,
            width: 1920,
            height: 1080,
            rotated: false,
            rungs: vec![(1920, 1080), (1280, 720), (854, 480), (640, 360)],
        }
    }

    /// Device memory a stage needs, estimated from NVIDIA's sample pipelines:
    /// the decoder's surface pool (20 at source size) and its output copies,
    /// four pooled frames per rung for the scaler, and per NVENC session its
    /// reference and output buffers (≈ 10 frames) plus a fixed overhead.
    fn memory(&self, stage: Stage) -> u64 {
        const MIB: u64 = 1 << 20;
        // NV12: 1.5 bytes a pixel; P010 sources twice that.
        let frame = |w: u32, h: u32| u64::from(w) * u64::from(h) * 3 / 2;
        let src = frame(self.width, self.height) * if self.bit_depth > 8 { 2 } else { 1 };
        match stage {
            Stage::Decode => 24 * src + 64 * MIB,
            Stage::Scale => self.rungs.iter().map(|&(w, h)| 4 * frame(w, h)).sum(),
            Stage::Encode => self
                .rungs
                .iter()
                .map(|&(w, h)| 10 * frame(w, h) + 48 * MIB)
                .sum(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Decode,
    Scale,
    Encode,
}

/// What running jobs hold on each GPU.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GpuLoad {
    pub encode_sessions: u32,
    pub decode_sessions: u32,
    pub memory_bytes: u64,
}

/// Share of a GPU's memory the placement policy hands out; the rest is left
/// to the driver, the feed's models and other processes.
const MEMORY_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub cpu: Cpu,
    pub gpus: Vec<Gpu>,
    pub libraries: Vec<nvidia::Library>,
    pub driver_version: Option<String>,
    /// Why something expected is missing (no driver, old driver, …).
    pub notes: Vec<String>,
    #[serde(skip)]
    load: Arc<Mutex<Vec<GpuLoad>>>,
}

impl PartialEq for Inventory {
    fn eq(&self, other: &Self) -> bool {
        self.cpu == other.cpu
            && self.gpus == other.gpus
            && self.libraries == other.libraries
            && self.driver_version == other.driver_version
    }
}

/// A placement with the sessions and memory it holds; released on drop.
#[derive(Debug)]
pub struct Reservation {
    pub placement: Placement,
    held: Vec<(usize, GpuLoad)>,
    load: Arc<Mutex<Vec<GpuLoad>>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut load = self.load.lock();
        for (gpu, h) in &self.held {
            let l = &mut load[*gpu];
            l.encode_sessions -= h.encode_sessions;
            l.decode_sessions -= h.decode_sessions;
            l.memory_bytes -= h.memory_bytes;
        }
    }
}

impl Inventory {
    /// Reads what this host offers. Never fails: a host with nothing but a CPU
    /// is a valid appliance.
    pub fn discover() -> Self {
        let found = nvidia::discover();
        Self::from_parts(
            Cpu::discover(),
            found.gpus,
            nvidia::libraries(),
            found.driver_version,
            found.notes,
        )
    }

    pub fn from_parts(
        cpu: Cpu,
        gpus: Vec<Gpu>,
        libraries: Vec<nvidia::Library>,
        driver_version: Option<String>,
        notes: Vec<String>,
    ) -> Self {
        let load = Arc::new(Mutex::new(vec![GpuLoad::default(); gpus.len()]));
        Self {
            cpu,
            gpus,
            libraries,
            driver_version,
            notes,
            load,
        }
    }

    /// What running jobs hold on each GPU now.
    pub fn load(&self) -> Vec<GpuLoad> {
        self.load.lock().clone()
    }

    /// The placement a typical job would get now (for `doctor` and
    /// `/ops/inventory`); holds nothing.
    pub fn place(&self, request: BackendRequest) -> Result<Placement, HardwareError> {
        self.reserve(request, &Workload::typical())
            .map(|r| r.placement)
    }

    /// Places each stage of one job and holds its sessions and memory until
    /// the returned reservation drops.
    ///
    /// Policy: decode on the GPU whose NVDEC takes the input (codec, depth,
    /// size; not for rotated sources) with room in memory; encode on the GPU
    /// whose NVENC takes the top rung with a free session and room, preferring
    /// the decoding GPU; scale on the GPU that holds the frames (the encoder's,
    /// else the decoder's). Everything else runs on the CPU. `cpu` places all
    /// on the CPU; `nvidia` is refused only when no stage fits a GPU.
    pub fn reserve(
        &self,
        request: BackendRequest,
        work: &Workload,
    ) -> Result<Reservation, HardwareError> {
        let mut load = self.load.lock();
        let mut placement = Placement::CPU;
        let mut held: Vec<(usize, GpuLoad)> = Vec::new();
        let mut reasons = Vec::new();
        if request != BackendRequest::Cpu {
            let mut budget: Vec<u64> = self
                .gpus
                .iter()
                .zip(load.iter())
                .map(|(g, l)| {
                    ((g.memory_bytes as f64 * MEMORY_SHARE) as u64).saturating_sub(l.memory_bytes)
                })
                .collect();
            let mut take = |gpu: usize, stage: Stage, budget: &mut Vec<u64>| {
                let bytes = work.memory(stage);
                budget[gpu] -= bytes;
                let entry = match held.iter_mut().find(|(g, _)| *g == gpu) {
                    Some((_, e)) => e,
                    None => {
                        held.push((gpu, GpuLoad::default()));
                        &mut held.last_mut().expect("pushed").1
                    }
                };
                entry.memory_bytes += bytes;
                match stage {
                    Stage::Decode => entry.decode_sessions += 1,
                    Stage::Encode => entry.encode_sessions += work.rungs.len() as u32,
                    Stage::Scale => {}
                }
            };
            let (top_w, top_h) = work
                .rungs
                .first()
                .copied()
                .unwrap_or((work.width, work.height));
            let decoders: Vec<usize> = self
                .gpus
                .iter()
                .filter(|g| {
                    g.nvdec.as_ref().is_some_and(|c| {
                        c.supports(&work.codec, work.bit_depth, work.width, work.height)
                    })
                })
                .map(|g| g.index)
                .collect();
            if self.gpus.is_empty() {
                reasons.push("no NVIDIA GPU was found (use --backend cpu or auto)".to_owned());
            } else if work.rotated {
                reasons.push("NVDEC does not rotate; a rotated source decodes on the CPU".into());
            } else if decoders.is_empty() {
                reasons.push(format!(
                    "no GPU's NVDEC decodes {} {}-bit at {}x{}",
                    work.codec, work.bit_depth, work.width, work.height
                ));
            }
            let dec_bytes = work.memory(Stage::Decode) + work.memory(Stage::Scale);
            let enc_bytes = work.memory(Stage::Encode);
            let mut fitting_decoders: Vec<usize> = if work.rotated {
                Vec::new()
            } else {
                decoders.clone()
            };
            fitting_decoders.retain(|&g| budget[g] >= dec_bytes);
            if fitting_decoders.is_empty() && !decoders.is_empty() && !work.rotated {
                reasons.push("every NVDEC-capable GPU is out of memory for another job".into());
            }
            let sessions = work.rungs.len() as u32;
            let encoders: Vec<usize> = self
                .gpus
                .iter()
                .filter(|g| {
                    g.nvenc
                        .as_ref()
                        .is_some_and(|c| c.supports("h264", top_w, top_h))
                })
                .map(|g| g.index)
                .collect();
            if !self.gpus.is_empty() && encoders.is_empty() {
                reasons
                    .push("no GPU has a usable NVENC for H.264 (H100/H200/A100 have none)".into());
            }
            let fitting_encoders: Vec<usize> = encoders
                .iter()
                .copied()
                .filter(|&g| {
                    let free = self.gpus[g]
                        .nvenc
                        .as_ref()
                        .and_then(|c| c.max_sessions)
                        .is_none_or(|max| load[g].encode_sessions + sessions <= max);
                    free && budget[g] >= enc_bytes
                })
                .collect();
            if fitting_encoders.is_empty() && !encoders.is_empty() {
                reasons.push("every NVENC-capable GPU is out of encode sessions or memory".into());
            }
            // Frames do not move between GPUs: the whole job on one GPU when
            // one can take it; else NVENC (the costliest stage on a CPU) with
            // CPU decode and scale; else NVDEC with its fused scale and CPU
            // encode.
            let best = |list: &mut dyn Iterator<Item = usize>, budget: &[u64]| {
                list.max_by_key(|&g| budget[g])
            };
            let whole = best(
                &mut fitting_encoders.iter().copied().filter(|g| {
                    fitting_decoders.contains(g) && budget[*g] >= dec_bytes + enc_bytes
                }),
                &budget,
            );
            if let Some(g) = whole {
                placement = Placement {
                    decode: Engine::Nvidia(g),
                    scale: Engine::Nvidia(g),
                    encode: Engine::Nvidia(g),
                };
                take(g, Stage::Decode, &mut budget);
                take(g, Stage::Scale, &mut budget);
                take(g, Stage::Encode, &mut budget);
            } else if let Some(g) = best(&mut fitting_encoders.iter().copied(), &budget) {
                placement.encode = Engine::Nvidia(g);
                take(g, Stage::Encode, &mut budget);
            } else if let Some(g) = best(&mut fitting_decoders.iter().copied(), &budget) {
                placement.decode = Engine::Nvidia(g);
                placement.scale = Engine::Nvidia(g);
                take(g, Stage::Decode, &mut budget);
                take(g, Stage::Scale, &mut budget);
            }
        }
        if request == BackendRequest::Nvidia && !placement.uses_gpu() {
            return Err(HardwareError::BackendUnavailable {
                requested: request,
                reason: if reasons.is_empty() {
                    "no GPU can take this job now".into()
                } else {
                    reasons.join("; ")
                },
            });
        }
        for (g, h) in &held {
            let l = &mut load[*g];
            l.encode_sessions += h.encode_sessions;
            l.decode_sessions += h.decode_sessions;
            l.memory_bytes += h.memory_bytes;
        }
        Ok(Reservation {
            placement,
            held,
            load: Arc::clone(&self.load),
        })
    }

    /// One line per stage saying where a typical job runs and why, for people.
    pub fn stage_report(&self) -> Vec<String> {
        let p = self.place(BackendRequest::Auto).unwrap_or(Placement::CPU);
        let gpu_name = |e: Engine| match e {
            Engine::Nvidia(i) => format!("GPU {i} ({})", self.gpus[i].name),
            Engine::Cpu => "CPU".into(),
        };
        let why_cpu = |what: &str| -> String {
            if self.gpus.is_empty() {
                format!("CPU ({what}: no NVIDIA GPU)")
            } else {
                format!("CPU ({what}: no GPU offers it)")
            }
        };
        let line = |stage: &str, e: Engine, engine: &str| match e {
            Engine::Cpu => format!("{stage:<8} {}", why_cpu(engine)),
            Engine::Nvidia(_) => format!("{stage:<8} {} via {engine}", gpu_name(e)),
        };
        vec![
            line("decode", p.decode, "NVDEC"),
            line("scale", p.scale, "CUDA kernels"),
            line("encode", p.encode, "NVENC"),
        ]
    }
}

impl Cpu {
    fn discover() -> Self {
        let logical_cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .and_then(|r| r.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                })
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        Self {
            model,
            logical_cores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> Cpu {
        Cpu {
            model: "test".into(),
            logical_cores: 2,
        }
    }

    fn cpu_only() -> Inventory {
        Inventory::from_parts(cpu(), vec![], vec![], None, vec![])
    }

    fn caps(codec: &str, depth: u8) -> CodecCaps {
        CodecCaps {
            codec: codec.into(),
            bit_depth: depth,
            max_width: 8192,
            max_height: 8192,
        }
    }

    fn gpu(index: usize, name: &str, memory_mib: u64, nvenc: bool) -> Gpu {
        Gpu {
            index,
            name: name.into(),
            compute_capability: (9, 0),
            memory_bytes: memory_mib << 20,
            pci_bus_id: None,
            nvml: false,
            nvdec: Some(DecodeCaps {
                engines: Some(7),
                codecs: vec![caps("h264", 8), caps("hevc", 10)],
            }),
            nvdec_problem: None,
            nvenc: nvenc.then(|| EncodeCaps {
                engines: Some(2),
                max_sessions: nvidia::nvenc::session_limit(name),
                codecs: vec![caps("h264", 8)],
            }),
            nvenc_problem: (!nvenc).then(|| "no usable NVENC".into()),
        }
    }

    fn with(gpus: Vec<Gpu>) -> Inventory {
        Inventory::from_parts(cpu(), gpus, vec![], None, vec![])
    }

    #[test]
    fn an_h100_decodes_and_scales_but_encodes_on_the_cpu() {
        let inv = with(vec![gpu(0, "NVIDIA H100 80GB HBM3", 81920, false)]);
        let p = inv.place(BackendRequest::Auto).unwrap();
        assert_eq!(p.decode, Engine::Nvidia(0));
        assert_eq!(p.scale, Engine::Nvidia(0));
        assert_eq!(p.encode, Engine::Cpu);
        assert_eq!(inv.place(BackendRequest::Nvidia).unwrap(), p);
        assert_eq!(inv.place(BackendRequest::Cpu).unwrap(), Placement::CPU);
    }

    #[test]
    fn an_l4_runs_every_stage_and_keeps_frames_on_one_gpu() {
        let inv = with(vec![
            gpu(0, "NVIDIA H100", 81920, false),
            gpu(1, "NVIDIA L4", 24576, true),
        ]);
        let p = inv.place(BackendRequest::Auto).unwrap();
        // The L4 both decodes and encodes, so the whole job stays on it.
        assert_eq!(
            p,
            Placement {
                decode: Engine::Nvidia(1),
                scale: Engine::Nvidia(1),
                encode: Engine::Nvidia(1)
            }
        );
        let only_l4 = with(vec![gpu(0, "NVIDIA L4", 24576, true)]);
        let p = only_l4.place(BackendRequest::Auto).unwrap();
        assert_eq!(
            p,
            Placement {
                decode: Engine::Nvidia(0),
                scale: Engine::Nvidia(0),
                encode: Engine::Nvidia(0)
            }
        );
    }

    #[test]
    fn session_limits_send_extra_jobs_to_the_cpu_until_released() {
        let inv = with(vec![gpu(0, "NVIDIA GeForce RTX 4090", 24576, true)]);
        let work = Workload::typical(); // 4 sessions; GeForce allows 8
        let a = inv.reserve(BackendRequest::Auto, &work).unwrap();
        let b = inv.reserve(BackendRequest::Auto, &work).unwrap();
        assert_eq!(a.placement.encode, Engine::Nvidia(0));
        assert_eq!(b.placement.encode, Engine::Nvidia(0));
        assert_eq!(inv.load()[0].encode_sessions, 8);
        let c = inv.reserve(BackendRequest::Auto, &work).unwrap();
        assert_eq!(
            c.placement.encode,
            Engine::Cpu,
            "a ninth session is refused by the driver"
        );
        drop((a, c));
        assert_eq!(inv.load()[0].encode_sessions, 4);
        let d = inv.reserve(BackendRequest::Auto, &work).unwrap();
        assert_eq!(d.placement.encode, Engine::Nvidia(0));
        drop((b, d));
        assert_eq!(inv.load()[0], GpuLoad::default());
    }

    #[test]
    fn memory_bounds_placement() {
        // 256 MiB: room for a 360p ladder, not for any stage of a 4K one.
        let inv = with(vec![gpu(0, "NVIDIA T4", 256, true)]);
        let small = Workload {
            width: 640,
            height: 360,
            rungs: vec![(640, 360)],
            ..Workload::typical()
        };
        let big = Workload {
            width: 3840,
            height: 2160,
            rungs: vec![(3840, 2160), (2560, 1440), (1920, 1080), (1280, 720)],
            ..Workload::typical()
        };
        assert!(inv
            .reserve(BackendRequest::Auto, &small)
            .unwrap()
            .placement
            .uses_gpu());
        let err = inv
            .reserve(BackendRequest::Nvidia, &big)
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of memory"), "{err}");
    }

    #[test]
    fn unsupported_inputs_decode_on_the_cpu() {
        let inv = with(vec![gpu(0, "NVIDIA L4", 24576, true)]);
        let vp9 = Workload {
            codec: "vp9".into(),
            ..Workload::typical()
        };
        let p = inv.place_for_test(&vp9);
        assert_eq!(p.decode, Engine::Cpu);
        assert_eq!(
            p.scale,
            Engine::Cpu,
            "GPU scaling is fused into NVDEC decode"
        );
        assert_eq!(p.encode, Engine::Nvidia(0));
        let rotated = Workload {
            rotated: true,
            ..Workload::typical()
        };
        assert_eq!(inv.place_for_test(&rotated).decode, Engine::Cpu);
    }

    #[test]
    fn every_placement_is_one_the_media_backends_run() {
        let inventories = [
            with(vec![gpu(0, "NVIDIA H100", 81920, false)]),
            with(vec![
                gpu(0, "NVIDIA H100", 81920, false),
                gpu(1, "NVIDIA L4", 24576, true),
            ]),
            with(vec![gpu(0, "NVIDIA GeForce RTX 4090", 24576, true)]),
            with(vec![gpu(0, "NVIDIA T4", 256, true)]),
        ];
        let works = [
            Workload::typical(),
            Workload {
                codec: "vp9".into(),
                ..Workload::typical()
            },
            Workload {
                rotated: true,
                ..Workload::typical()
            },
            Workload {
                width: 640,
                height: 360,
                rungs: vec![(640, 360)],
                ..Workload::typical()
            },
        ];
        for inv in &inventories {
            let mut held = Vec::new();
            for w in works.iter().cycle().take(12) {
                let r = inv.reserve(BackendRequest::Auto, w).unwrap();
                let p = r.placement;
                let gpu_decode = matches!(p.decode, Engine::Nvidia(_));
                assert_eq!(gpu_decode, matches!(p.scale, Engine::Nvidia(_)), "{p}");
                if let (Engine::Nvidia(d), Engine::Nvidia(e)) = (p.decode, p.encode) {
                    assert_eq!(d, e, "{p}");
                }
                held.push(r);
            }
        }
    }

    impl Inventory {
        fn place_for_test(&self, w: &Workload) -> Placement {
            self.reserve(BackendRequest::Auto, w).unwrap().placement
        }
    }

    #[test]
    fn the_stage_report_says_why_each_stage_is_on_the_cpu() {
        let lines = cpu_only().stage_report();
        assert_eq!(lines.len(), 3);
        assert!(
            lines
                .iter()
                .all(|l| l.contains("CPU") && l.contains("no NVIDIA GPU")),
            "{lines:?}"
        );
        let h100 = with(vec![gpu(0, "NVIDIA H100", 81920, false)]).stage_report();
        assert!(
            h100[0].contains("GPU 0") && h100[0].contains("NVDEC"),
            "{h100:?}"
        );
        assert!(
            h100[2].contains("CPU") && h100[2].contains("NVENC"),
            "{h100:?}"
        );
    }

    #[test]
    fn auto_and_cpu_place_everything_on_the_cpu() {
        assert_eq!(cpu_only().place(BackendRequest::Auto), Ok(Placement::CPU));
        assert_eq!(cpu_only().place(BackendRequest::Cpu), Ok(Placement::CPU));
    }

    #[test]
    fn nvidia_without_a_gpu_is_a_clear_error() {
        let err = cpu_only().place(BackendRequest::Nvidia).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nvidia") && msg.contains("no NVIDIA GPU"),
            "{msg}"
        );
    }

    #[test]
    fn backend_names_parse_and_unknown_ones_are_rejected() {
        assert_eq!("CPU".parse::<BackendRequest>(), Ok(BackendRequest::Cpu));
        assert_eq!("auto".parse::<BackendRequest>(), Ok(BackendRequest::Auto));
        assert!(matches!(
            "tpu".parse::<BackendRequest>(),
            Err(HardwareError::UnknownBackend(_))
        ));
    }

    #[test]
    fn discovery_never_panics_and_reports_every_library() {
        let inv = Inventory::discover();
        assert!(inv.cpu.logical_cores >= 1);
        let names: Vec<_> = inv.libraries.iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "libcuda",
                "libnvrtc",
                "libnvcuvid",
                "libnvidia-encode",
                "libnvidia-ml"
            ]
        );
        if !nvidia::driver_present() {
            assert!(inv.gpus.is_empty());
            assert!(
                inv.notes.iter().any(|n| n.contains("libcuda")),
                "{:?}",
                inv.notes
            );
        }
    }
}
