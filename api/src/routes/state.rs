//! What every handler shares (`Ctx`: the service and the origin's policy)
//! and the configuration the router is built from. A leaf: the resource
//! modules and `routes` itself import it, it imports none of them.

use std::time::Duration;

use bytes::Bytes;

/// Cache lifetimes the operator may tune (`[origin]` in `appliance.toml`).
#[derive(Debug, Clone, Copy)]
pub struct OriginPolicy {
    /// VOD playlists and posters: cached this long, then revalidated (304).
    pub playlist_max_age: Duration,
    /// 404s for unknown or unpublished files.
    pub not_found_max_age: Duration,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self {
            playlist_max_age: Duration::from_secs(300),
            not_found_max_age: Duration::from_secs(10),
        }
    }
}

/// Request-body ceilings per kind of route; anything larger is a 413 before
/// the handler runs.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub json: usize,
    /// One upload chunk (the session's chunk size plus slack).
    pub chunk: usize,
    /// A whole single-shot upload (`POST /videos`).
    pub single_shot: usize,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub origin: OriginPolicy,
    pub limits: BodyLimits,
    /// hls.js for the `/play/{id}` page; without it the page relies on
    /// native HLS (Safari).
    pub hls_js: Option<Bytes>,
}

pub(crate) struct Ctx<S> {
    pub(crate) svc: S,
    pub(crate) origin: OriginPolicy,
    pub(crate) hls_js: Option<Bytes>,
}

pub const PREFIX: &str = "/api/v1";
/// Hex SHA-256 of a chunk's bytes, checked before the chunk is stored.
pub const CHUNK_DIGEST_HEADER: &str = "x-chunk-sha256";
