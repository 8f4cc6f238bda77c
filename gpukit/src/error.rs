use std::path::PathBuf;

/// Everything the kit can fail on. A GPU check that runs and finds a
/// difference is not an error: it is a failed case in the report.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Hardware(#[from] hardware::HardwareError),
    #[error("kernels: {0}")]
    Kernel(#[from] kernels::KernelError),
    #[error("{0}")]
    Invalid(String),
}

impl KitError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

pub type Result<T, E = KitError> = std::result::Result<T, E>;
