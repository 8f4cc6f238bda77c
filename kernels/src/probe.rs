//! Whether NVIDIA's shared libraries can be loaded, without loading them
//! through `cudarc` (which panics when a library is absent).
//!
//! Both probes try the same candidate names, in the same order, as `cudarc`'s
//! own loader, so a `Some` here means `cudarc` will find the library too.

use crate::{KernelError, Result};

/// The name under which NVRTC loads (e.g. `libnvrtc.so.12`), if it does.
pub fn nvrtc_library() -> Option<String> {
    first_loadable(&candidates(&["nvrtc"]))
}

/// The name under which the CUDA driver loads (e.g. `libcuda.so`), if it does.
pub fn cuda_driver_library() -> Option<String> {
    first_loadable(&candidates(&["cuda", "nvcuda"]))
}

pub(crate) fn require_nvrtc() -> Result<()> {
    match nvrtc_library() {
        Some(_) => Ok(()),
        None => Err(KernelError::NvrtcMissing {
            searched: candidates(&["nvrtc"]),
        }),
    }
}

pub(crate) fn require_cuda_driver() -> Result<()> {
    match cuda_driver_library() {
        Some(_) => Ok(()),
        None => Err(KernelError::DriverMissing {
            searched: candidates(&["cuda", "nvcuda"]),
        }),
    }
}

fn candidates(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| cudarc::get_lib_name_candidates(n))
        .collect()
}

fn first_loadable(candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .find(|name| {
            // SAFETY: loading runs the library's initialisers; these are NVIDIA's
            // own libraries, which cudarc loads the same way, and the handle is
            // dropped (dlclose) straight away.
            unsafe { libloading::Library::new(name.as_str()) }.is_ok()
        })
        .cloned()
}
