use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// NVRTC (`libnvrtc.so`) could not be loaded, so kernels cannot be compiled.
    #[error(
        "NVRTC library not found (searched {searched:?}); install the CUDA toolkit's \
         NVRTC or run scripts/setup, and put its directory on LD_LIBRARY_PATH"
    )]
    NvrtcMissing { searched: Vec<String> },
    /// The CUDA driver (`libcuda.so`) could not be loaded: no NVIDIA driver.
    #[error("CUDA driver library not found (searched {searched:?}); no NVIDIA driver installed")]
    DriverMissing { searched: Vec<String> },
    /// NVRTC rejected the source or the options.
    #[error("NVRTC compilation for {arch} failed: {message}")]
    Compile { arch: String, message: String },
    /// No architecture NVRTC can target runs on this device.
    #[error(
        "no NVRTC target for compute capability {major}.{minor} (NVRTC supports {supported:?})"
    )]
    UnsupportedDevice {
        major: i32,
        minor: i32,
        supported: Vec<u32>,
    },
    /// A CUDA driver call failed.
    #[error("CUDA {op} failed: {source}")]
    Driver {
        op: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
    /// A frame, descriptor or size is not one the kernels accept.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The PTX cache could not be read or written.
    #[error("PTX cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

impl KernelError {
    pub(crate) fn driver(op: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Self {
        move |source| Self::Driver { op, source }
    }
}
