//! The appliance's one error type, and its translation into the API's error
//! vocabulary (the HTTP statuses themselves are `api`'s business).

use api::{ApiError, ErrorCode};
use media::RejectCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),

    #[error("catalog ({op}): {source}")]
    Catalog {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("object store ({op} {key}): {source}")]
    Objects {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Media(#[from] media::MediaError),

    #[error(transparent)]
    Hardware(#[from] hardware::HardwareError),

    /// A refusal the client should see as is.
    #[error("{0}")]
    Api(#[from] ApiError),

    #[error("background task failed: {0}")]
    Task(String),

    #[error(transparent)]
    Inference(#[from] inference::InferenceError),

    /// The analytics store (embedded or ClickHouse) failed.
    #[error("analytics store ({op}): {message}")]
    Analytics { op: &'static str, message: String },

    /// The hot store (Redis) failed; callers fall back to in-process state.
    #[error("hot store ({op}): {message}")]
    Hot { op: &'static str, message: String },
}

impl From<settings::ConfigError> for Error {
    fn from(e: settings::ConfigError) -> Self {
        Self::Config(e.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn catalog(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Self::Catalog { op, source }
    }

    pub fn objects(
        op: &'static str,
        key: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> Self {
        let key = key.into();
        move |source| Self::Objects { op, key, source }
    }

    pub fn analytics<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Analytics {
            op,
            message: e.to_string(),
        }
    }

    pub fn hot<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Hot {
            op,
            message: e.to_string(),
        }
    }

    pub fn io(
        op: &'static str,
        path: impl std::fmt::Display,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_string();
        move |source| Self::Io { op, path, source }
    }

    /// Whether a job that failed with this error may succeed if run again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Catalog { .. }
            | Self::Objects { .. }
            | Self::Io { .. }
            | Self::Task(_)
            | Self::Analytics { .. }
            | Self::Hot { .. } => true,
            Self::Media(e) => e.is_transient(),
            Self::Config(_) | Self::Hardware(_) | Self::Api(_) | Self::Inference(_) => false,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Api(e) => e,
            Error::Media(m) => match m.reject_code() {
                Some(code) => {
                    let api_code = match code {
                        RejectCode::FileTooLarge => ErrorCode::PayloadTooLarge,
                        RejectCode::UnsupportedFormat
                        | RejectCode::CorruptMedia
                        | RejectCode::EncryptedMedia
                        | RejectCode::DurationLimit
                        | RejectCode::ResolutionLimit => ErrorCode::UnsupportedFormat,
                    };
                    let reason = if let media::MediaError::Rejected { reason, .. } = &m {
                        reason.clone()
                    } else {
                        m.to_string()
                    };
                    ApiError::new(api_code, reason)
                        .with_details(serde_json::json!({ "reason": code.as_str() }))
                }
                None => ApiError::internal(m),
            },
            Error::Inference(inference::InferenceError::BadCursor(why)) => {
                ApiError::invalid("cursor", format!("not one this server issued ({why})"))
            }
            Error::Inference(e @ inference::InferenceError::Invalid(_)) => {
                ApiError::validation(e.to_string())
            }
            other @ (Error::Config(_)
            | Error::Inference(_)
            | Error::Catalog { .. }
            | Error::Objects { .. }
            | Error::Io { .. }
            | Error::Hardware(_)
            | Error::Analytics { .. }
            | Error::Hot { .. }
            | Error::Task(_)) => ApiError::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}
