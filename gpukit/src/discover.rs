//! What the box itself would see on this host: NVIDIA libraries, GPUs with
//! their NVDEC/NVENC capabilities, NVRTC, and where a typical job's stages
//! would be placed.

use hardware::{BackendRequest, Inventory, Placement};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Discovery {
    pub inventory: Inventory,
    /// `auto`: what a job gets by default.
    pub placement_auto: Result<Placement, String>,
    /// `nvidia`: refused only when no stage fits a GPU.
    pub placement_nvidia: Result<Placement, String>,
    /// The same lines `appliance doctor` prints.
    pub stages: Vec<String>,
    /// NVRTC, which compiles the pixel kernels at run time.
    pub nvrtc: Option<String>,
    pub nvrtc_version: Option<(i32, i32)>,
}

impl Discovery {
    pub fn gpu_count(&self) -> usize {
        self.inventory.gpus.len()
    }
}

pub fn run() -> Discovery {
    let inventory = Inventory::discover();
    let place = |r| inventory.place(r).map_err(|e| e.to_string());
    let nvrtc = kernels::probe::nvrtc_library();
    let nvrtc_version = nvrtc
        .as_ref()
        .and_then(|_| kernels::ptx::nvrtc_version().ok());
    Discovery {
        placement_auto: place(BackendRequest::Auto),
        placement_nvidia: place(BackendRequest::Nvidia),
        stages: inventory.stage_report(),
        nvrtc,
        nvrtc_version,
        inventory,
    }
}
