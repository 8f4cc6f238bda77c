//! The HTTP contract of the appliance: routes, wire types, the one mapping
//! from errors to HTTP statuses and the spec's error shape
//! (`{"error":{"code","message","details"}}`), the HLS origin's HTTP
//! semantics, and the generated OpenAPI document. It is the only crate that
//! knows HTTP; the work behind each route is the `Service` trait, which the
//! composition root (`appliance`) implements.

pub mod error;
pub mod origin;
mod router;
pub mod service;
pub mod wire;

pub use error::{ApiError, ApiResult, ErrorCode};
pub use origin::OriginPolicy;
pub use router::{
    openapi, router, serve, Auth, BodyLimits, MaybeAuth, RouterConfig, CHUNK_DIGEST_HEADER, PREFIX,
};
pub use service::{IdempotencyBegin, OriginLookup, OriginMeta, Service};
