//! Accelerator discovery, capabilities and placement.
//!
//! `hardware` answers one question for the rest of the appliance: *which engine
//! runs each stage of a job on this host?* It discovers what the host has at
//! start-up ([`Inventory::discover`]) and turns a backend request into a
//! per-stage [`Placement`] ([`Inventory::place`]).
//!
//! This build discovers the CPU only: every inventory it reports has no GPUs,
//! so `auto` places every stage on the CPU and an explicit `nvidia` request is
//! refused with [`HardwareError::BackendUnavailable`]. NVIDIA discovery
//! (probing `libcuda`, `libnvcuvid`, `libnvidia-encode`, NVML before touching
//! them) fills [`Inventory::gpus`] without changing this API.

use std::fmt;
use std::str::FromStr;

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
}

/// What a caller asked for on the command line or in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendRequest {
    /// The fastest engine the inventory offers for each stage.
    #[default]
    Auto,
    Cpu,
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
    /// An NVIDIA GPU, by its index in [`Inventory::gpus`].
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

/// One NVIDIA GPU and the engines it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub name: String,
    pub compute_capability: (u32, u32),
    pub memory_bytes: u64,
    pub has_nvdec: bool,
    pub has_nvenc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub cpu: Cpu,
    pub gpus: Vec<Gpu>,
}

impl Inventory {
    /// Reads what this host offers. Never fails: a host with nothing but a CPU
    /// is a valid appliance.
    pub fn discover() -> Self {
        Self {
            cpu: Cpu::discover(),
            gpus: Vec::new(),
        }
    }

    /// Turns a request into a per-stage placement, or says why it cannot be met.
    pub fn place(&self, request: BackendRequest) -> Result<Placement, HardwareError> {
        match request {
            BackendRequest::Auto | BackendRequest::Cpu => Ok(Placement::CPU),
            BackendRequest::Nvidia => {
                let reason = if self.gpus.is_empty() {
                    "no NVIDIA GPU was found (this build probes the CPU only; use --backend cpu or auto)"
                        .to_owned()
                } else {
                    "NVIDIA decode/encode backends are not part of this build".to_owned()
                };
                Err(HardwareError::BackendUnavailable {
                    requested: request,
                    reason,
                })
            }
        }
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

    fn cpu_only() -> Inventory {
        Inventory {
            cpu: Cpu {
                model: "test".into(),
                logical_cores: 2,
            },
            gpus: vec![],
        }
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
    fn discovery_finds_at_least_one_core() {
        let inv = Inventory::discover();
        assert!(inv.cpu.logical_cores >= 1);
    }
}
