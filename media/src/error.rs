use std::path::PathBuf;

use serde::Serialize;

/// Why an input was refused. The code is stable and machine-readable (the API
/// maps it to an HTTP status); the accompanying reason is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectCode {
    /// Not a media file, a container or codec outside the allow-list, or no video.
    UnsupportedFormat,
    FileTooLarge,
    DurationLimit,
    ResolutionLimit,
    /// Recognised but unreadable: empty, truncated, damaged, no decodable frame.
    CorruptMedia,
    /// DRM/CENC-protected input: refused rather than half-processed.
    EncryptedMedia,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            Self::FileTooLarge => "FILE_TOO_LARGE",
            Self::DurationLimit => "DURATION_LIMIT",
            Self::ResolutionLimit => "RESOLUTION_LIMIT",
            Self::CorruptMedia => "CORRUPT_MEDIA",
            Self::EncryptedMedia => "ENCRYPTED_MEDIA",
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the input something went wrong: enough to find the packet again
/// with `ffprobe -show_packets`. Backends do not know the file they work on;
/// they leave this empty and the pipeline fills it in ([`MediaError::located`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub stream: Option<usize>,
    /// Seconds from the start of the stream, when known.
    pub timestamp: Option<f64>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(s) = self.stream {
            write!(f, ", stream #{s}")?;
        }
        if let Some(t) = self.timestamp {
            write!(f, ", at {t:.3}s")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input is not acceptable; the client can show `reason`.
    #[error("{code}: {reason} ({})", file.display())]
    Rejected {
        file: PathBuf,
        code: RejectCode,
        reason: String,
    },

    /// A codec, filter or muxer call failed on input that passed validation.
    #[error("{op} failed ({at}): {source}")]
    Ffmpeg {
        op: &'static str,
        at: Location,
        #[source]
        source: ffmpeg_next::Error,
    },

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The caller asked for something impossible (e.g. an unknown rung).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error(transparent)]
    Backend(hardware::HardwareError),

    /// Our own output did not have the shape we wrote (a bug, or a full disk).
    #[error("packaging {}: {reason}", path.display())]
    Packaging { path: PathBuf, reason: String },

    #[error("{stage} worker stopped unexpectedly: {reason}")]
    Worker { stage: String, reason: String },

    /// A GPU stage failed (driver, NVDEC, NVENC, kernels). The job is rerun
    /// on the CPU, so callers see this only from a GPU-only request.
    #[error("GPU: {op}: {reason}")]
    Device { op: &'static str, reason: String },

    /// The caller cancelled the job (`TranscodeOptions::cancel`).
    #[error("cancelled")]
    Cancelled,
}

impl MediaError {
    /// A libav* failure with no location yet (see [`MediaError::located`]).
    pub(crate) fn ffmpeg(op: &'static str, source: ffmpeg_next::Error) -> Self {
        Self::Ffmpeg {
            op,
            at: Location::default(),
            source,
        }
    }

    pub(crate) fn ffmpeg_at(op: &'static str, at: Location, source: ffmpeg_next::Error) -> Self {
        Self::Ffmpeg { op, at, source }
    }

    /// Gives a libav* failure the location the caller knows, unless it
    /// already has one.
    pub(crate) fn located(mut self, at: impl FnOnce() -> Location) -> Self {
        if let Self::Ffmpeg { at: here, .. } = &mut self {
            if here.file.as_os_str().is_empty() {
                *here = at();
            }
        }
        self
    }

    pub(crate) fn rejected(
        file: &std::path::Path,
        code: RejectCode,
        reason: impl Into<String>,
    ) -> Self {
        Self::Rejected {
            file: file.to_owned(),
            code,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// The rejection code, if this error is a refusal of the input.
    pub fn reject_code(&self) -> Option<RejectCode> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            Self::Ffmpeg { .. }
            | Self::Io { .. }
            | Self::InvalidRequest(_)
            | Self::Backend(_)
            | Self::Packaging { .. }
            | Self::Worker { .. }
            | Self::Device { .. }
            | Self::Cancelled => None,
        }
    }

    /// Whether running the same job again may succeed: faults of the host
    /// (I/O, a crashed worker thread, a short write while packaging), not of
    /// the input or the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io { .. }
            | Self::Packaging { .. }
            | Self::Worker { .. }
            | Self::Device { .. } => true,
            Self::Rejected { .. }
            | Self::Ffmpeg { .. }
            | Self::InvalidRequest(_)
            | Self::Backend(_)
            | Self::Cancelled => false,
        }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// A GPU failure inside `hardware` is a device error here, as one raised by
/// media's own GPU code is; other hardware errors (placement) stay as they
/// are.
impl From<hardware::HardwareError> for MediaError {
    fn from(e: hardware::HardwareError) -> Self {
        match e {
            hardware::HardwareError::Device { op, reason } => Self::Device { op, reason },
            other @ (hardware::HardwareError::BackendUnavailable { .. }
            | hardware::HardwareError::UnknownBackend(_)) => Self::Backend(other),
        }
    }
}
