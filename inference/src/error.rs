use std::path::PathBuf;

/// Everything that can go wrong inside recommendation. The feed never shows
/// these to a viewer: `appliance` turns them into a trending fallback.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("model files in {dir}: {reason}")]
    Model { dir: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("vector index: {0}")]
    Faiss(#[from] faiss::error::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {0} index is not loaded yet")]
    IndexUnavailable(&'static str),
    #[error("ranking model: {0}")]
    Ranker(String),
    /// A well-formed model trained on another feature set (an older
    /// release): not broken, only out of date.
    #[error("ranking model {path} has {found} features, this release computes {expected}: run `appliance train-ranker` to retrain it")]
    RankerOutdated {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("malformed feed cursor: {0}")]
    BadCursor(String),
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl InferenceError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = InferenceError> = std::result::Result<T, E>;
