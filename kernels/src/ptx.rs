//! NVRTC compilation of `kernels.cu` to PTX, with a disk cache per
//! architecture.
//!
//! The cache key is a SHA-256 of the source, the exact NVRTC options and the
//! NVRTC version, so an upgraded toolkit or an edited kernel never reuses a
//! stale file. Files are written to a temporary name and renamed into place,
//! so concurrent processes only ever see whole files.

use std::io::Write;
use std::path::{Path, PathBuf};

use cudarc::nvrtc::{self, CompileError, CompileOptions};
use sha2::{Digest, Sha256};

use crate::probe;
use crate::{KernelError, Result};

pub use crate::abi::{KernelSignature, KERNELS};

/// The CUDA C source of every kernel.
pub const SOURCE: &str = include_str!("kernels.cu");

/// The architectures the appliance is built and tested for: Turing (T4),
/// Ampere (A10/A40/RTX 30), Ada (L4/L40/RTX 40), Hopper (H100/H200).
pub const ARCHS: [&str; 4] = ["sm_75", "sm_86", "sm_89", "sm_90"];

/// The exact options passed to NVRTC for `arch` (part of the cache key).
///
/// `--fmad=false` and IEEE division/square root keep the GPU's rounding
/// identical to the CPU reference.
pub fn options(arch: &str) -> Vec<String> {
    vec![
        "--ftz=false".into(),
        "--prec-sqrt=true".into(),
        "--prec-div=true".into(),
        "--fmad=false".into(),
        format!("--gpu-architecture={arch}"),
    ]
}

/// Compiles [`SOURCE`] for `arch` (e.g. `"sm_89"`), bypassing the cache.
pub fn compile(arch: &str) -> Result<String> {
    check_arch(arch)?;
    probe::require_nvrtc()?;
    let opts = CompileOptions {
        options: options(arch),
        name: Some("kernels.cu".into()),
        ..Default::default()
    };
    let ptx = nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| KernelError::Compile {
        arch: arch.to_owned(),
        message: compile_message(e),
    })?;
    Ok(ptx.to_src())
}

/// The version of the NVRTC library that will compile, e.g. `(12, 6)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    probe::require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (probed above); both pointers are valid
    // for writes.
    unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| KernelError::Compile {
            arch: String::new(),
            message: format!("nvrtcVersion: {e:?}"),
        })?;
    Ok((major, minor))
}

/// The SM versions NVRTC can target, e.g. `[50, 52, …, 90]`.
pub fn supported_archs() -> Result<Vec<u32>> {
    probe::require_nvrtc()?;
    let fail = |e| KernelError::Compile {
        arch: String::new(),
        message: format!("nvrtcGetSupportedArchs: {e:?}"),
    };
    let mut n = 0;
    // SAFETY: the library is present; `n` is valid for writes.
    unsafe { nvrtc::sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(fail)?;
    let mut archs = vec![0; usize::try_from(n).unwrap_or(0)];
    if !archs.is_empty() {
        // SAFETY: `archs` holds the `n` ints NVRTC said it will write.
        unsafe { nvrtc::sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
            .result()
            .map_err(fail)?;
    }
    Ok(archs
        .into_iter()
        .filter_map(|a| u32::try_from(a).ok())
        .collect())
}

/// The architecture to compile for a device of compute capability
/// `major.minor`: its own when NVRTC knows it, else the newest NVRTC target
/// below it (PTX is JIT-compiled forward by the driver).
pub fn arch_for_device(major: i32, minor: i32) -> Result<String> {
    let supported = supported_archs()?;
    let own = u32::try_from(major * 10 + minor).unwrap_or(0);
    supported
        .iter()
        .copied()
        .filter(|&a| a <= own)
        .max()
        .map(|a| format!("sm_{a}"))
        .ok_or(KernelError::UnsupportedDevice {
            major,
            minor,
            supported,
        })
}

/// Where PTX is cached: `$XDG_CACHE_HOME/video-appliance/ptx`, else
/// `$HOME/.cache/video-appliance/ptx`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("video-appliance").join("ptx"))
}

/// PTX for `arch` from the default cache, compiling (and caching) on a miss.
pub fn load_or_compile(arch: &str) -> Result<String> {
    match default_cache_dir() {
        Some(dir) => load_or_compile_in(&dir, arch),
        None => compile(arch),
    }
}

/// PTX for `arch` from the cache in `dir`, compiling (and caching) on a miss.
/// A cache that cannot be read or written costs a compilation, never an error.
pub fn load_or_compile_in(dir: &Path, arch: &str) -> Result<String> {
    let path = cache_path(dir, arch)?;
    match std::fs::read_to_string(&path) {
        Ok(ptx) if names_every_kernel(&ptx) => return Ok(ptx),
        Ok(_) => tracing::warn!(path = %path.display(), "ignoring incomplete cached PTX"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read cached PTX"),
    }
    let ptx = compile(arch)?;
    if let Err(e) = store(&path, &ptx) {
        tracing::warn!(error = %e, "cannot cache PTX");
    }
    Ok(ptx)
}

/// The file [`load_or_compile_in`] uses for `arch` under `dir` with the
/// NVRTC that is loadable now.
pub fn cache_path(dir: &Path, arch: &str) -> Result<PathBuf> {
    check_arch(arch)?;
    let (major, minor) = nvrtc_version()?;
    let mut h = Sha256::new();
    h.update(b"video-appliance kernels ptx v1\0");
    h.update(SOURCE.as_bytes());
    h.update(b"\0");
    h.update(options(arch).join("\n").as_bytes());
    h.update(format!("\0nvrtc {major}.{minor}").as_bytes());
    let digest = hex::encode(h.finalize());
    Ok(dir.join(format!("kernels-{arch}-{}.ptx", &digest[..20])))
}

/// Whether `ptx` declares an `.entry` for every kernel in [`KERNELS`].
pub fn names_every_kernel(ptx: &str) -> bool {
    KERNELS
        .iter()
        .all(|k| ptx.contains(&format!(".entry {}(", k.name)))
}

fn store(path: &Path, ptx: &str) -> Result<()> {
    let io = |source| KernelError::Cache {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("ptx");
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(ptx.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

fn check_arch(arch: &str) -> Result<()> {
    let digits = arch.strip_prefix("sm_").unwrap_or("");
    let ok = (2..=4).contains(&digits.len())
        && digits
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || (i == digits.len() - 1 && c == 'a'));
    if ok {
        Ok(())
    } else {
        Err(KernelError::Invalid(format!(
            "GPU architecture {arch:?} is not of the form sm_XY"
        )))
    }
}

fn compile_message(e: CompileError) -> String {
    match e {
        CompileError::CompileError { nvrtc, log, .. } => {
            format!("{nvrtc:?}: {}", log.to_string_lossy().trim_end())
        }
        CompileError::CreationError(e) => format!("nvrtcCreateProgram: {e:?}"),
        CompileError::GetLogError(e) => format!("nvrtcGetProgramLog: {e:?}"),
        CompileError::GetPtxError(e) => format!("nvrtcGetPTX: {e:?}"),
        CompileError::DestroyError(e) => format!("nvrtcDestroyProgram: {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        for ok in ["sm_75", "sm_86", "sm_90", "sm_90a", "sm_100", "sm_120"] {
            assert!(check_arch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "sm_",
            "sm_7",
            "compute_75",
            "sm_75 --foo",
            "sm_a0",
            "sm_99999",
        ] {
            assert!(check_arch(bad).is_err(), "{bad}");
        }
    }
}
