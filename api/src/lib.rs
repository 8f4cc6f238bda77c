//! The HTTP contract of the appliance: routes, wire types, the one mapping
//! from errors to HTTP statuses and the spec's error shape
//! (`{"error":{"code","message","details"}}`), the HLS origin's HTTP
//! semantics, and the generated OpenAPI document. It is the only crate that
//! knows HTTP.
//!
//! The work behind the routes is one trait per domain of the box
//! (`Accounts`, `Uploads`, `Videos`, `Origin`, `Feed`, `Engagement`,
//! `Analytics`, `Ops`, `Idempotency`, in `service`); `Service` only says
//! where each domain's implementation lives, and the composition root
//! (`appliance`) implements it.
//!
//! `routes` has one module per resource (`accounts`, `uploads`, `videos`,
//! `feed`, `engagement`, `analytics`, `ops`, `player`, `origin`), each with
//! its handlers, their OpenAPI annotations and a `router()` of its routes;
//! `routes::extract` holds the shared extractors and helpers,
//! `routes::openapi` the document, and `routes` itself composes the
//! routers under one set of layers.

pub mod chunks;
pub mod conn;
pub mod cursor;
pub mod error;
pub mod http_stats;
pub mod linger;
pub mod playback;
mod routes;
pub mod service;
pub mod tus;
pub mod wire;

/// The router `router()` builds, for callers that hold it until `serve`.
pub use axum::Router;
pub use conn::{ConnPolicy, ConnStats};
pub use error::{ApiError, ApiResult, ErrorCode};
pub use http_stats::HttpStats;
pub use routes::origin;
pub use routes::origin::OriginPolicy;
pub use routes::{
    openapi, router, serve, Auth, BodyLimits, MaybeAuth, RouterConfig, CHUNK_DIGEST_HEADER, PREFIX,
};
pub use service::{
    Accounts, Analytics, Engagement, Feed, Idempotency, IdempotencyBegin, Live, Ops, Origin,
    OriginLookup, OriginMeta, Playback, Remixes, Search, Service, Uploads, Videos, Webhooks,
};
