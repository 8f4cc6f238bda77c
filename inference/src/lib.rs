//! Recommendation: content embeddings (all-MiniLM-L6-v2 run by candle), user
//! embeddings, the FAISS video and user indexes, candidate generation, the
//! ranking model and its training, diversity re-ranking and cold start.
//!
//! Its work arrives with the "For You" feed issue; until then this crate
//! deliberately holds no code.
