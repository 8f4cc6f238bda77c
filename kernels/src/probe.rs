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
    names.iter().flat_map(|n| lib_name_candidates(n)).collect()
}

/// The file names `cudarc`'s loader tries for library `name`, in its order,
/// for the CUDA 12.6 bindings this workspace pins. Written out here because
/// `cudarc` only offers its own list when it loads libraries at run time,
/// and the `gpu` build (candle) switches it to linking them.
pub fn lib_name_candidates(name: &str) -> Vec<String> {
    let (major, minor) = (12, 6);
    vec![
        format!("lib{name}.so"),
        format!("lib{name}64.so"),
        format!("lib{name}64_{major}.so"),
        format!("lib{name}64_{major}{minor}.so"),
        format!("lib{name}64_{major}{minor}_0.so"),
        format!("lib{name}64_{major}0_{minor}.so"),
        format!("lib{name}64_10.so"),
        format!("lib{name}64_11.so"),
        format!("lib{name}64_12.so"),
        format!("lib{name}64_{major}0_0.so"),
        format!("lib{name}64_9.so"),
        format!("lib{name}.so.{major}"),
        format!("lib{name}.so.12"),
        format!("lib{name}.so.11"),
        format!("lib{name}.so.10"),
        format!("lib{name}.so.9"),
        format!("lib{name}.so.1"),
    ]
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

#[cfg(test)]
mod tests {
    /// Where `cudarc` offers its list (run-time loading, the default build),
    /// ours is the same, so a library the probe finds is one `cudarc` loads.
    #[test]
    fn candidates_match_cudarc_where_it_has_them() {
        for name in ["cuda", "nvrtc", "nvcuvid"] {
            assert_eq!(
                super::lib_name_candidates(name),
                cudarc::get_lib_name_candidates(name)
            );
        }
    }
}
