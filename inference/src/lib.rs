//! Recommendation: content embeddings (all-MiniLM-L6-v2 run by candle),
//! user embeddings, the FAISS video and user indexes, candidate generation,
//! the ranking model and its training, diversity re-ranking, cold start,
//! the world simulator and the offline evaluation.
//!
//! Invariants: no HTTP, no database; state comes in through [`Engine`]
//! calls and persistence is the caller's. FAISS and candle are the only
//! native code, each behind its own module ([`index`], [`embed`], [`rank`]).

pub mod baselines;
pub mod device;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod index;
pub mod rank;
pub mod rerank;
pub mod session;
pub mod sim;

pub use embed::{Embedder, DIM};
pub use engine::{
    Engine, EngineConfig, FeedItem, FeedKind, FeedPage, Reason, Source, VideoDoc, Watch,
};
pub use error::{InferenceError, Result};
pub use experiment::{Experiment, Impression, Variant};
pub use index::{IndexKind, VectorIndex};
pub use rank::{RankModel, Ranker};
