//! Where the box keeps its state: the catalog (SQLite, one table family per
//! file under `catalog/`) and the object store (local directory or S3) that
//! holds sources, chunks and published ladders; plus `view`, the catalog's
//! rows in the API's shapes and the rule of who may see a video, shared by
//! every domain that returns videos.
//!
//! May call: nothing of the box's domains (only `config` and `error`).
//! Invariants: the catalog has one writer connection (every write goes
//! through `Catalog::call`) and a few read-only connections for reads that
//! must not queue behind writes (`Catalog::read`); a committed row survives
//! a crash; object keys are built only by the functions in `objects`.

pub mod catalog;
pub mod objects;
mod view;

pub use catalog::Catalog;
pub use objects::Objects;
pub use view::{may_see, video_state, video_wire, visible_video, LadderInfo, RenditionInfo};

/// A fresh id for anything the catalog stores (users, uploads, videos).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Hex SHA-256, as the catalog stores token hashes and chunk digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
