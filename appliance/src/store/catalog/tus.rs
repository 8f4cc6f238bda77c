//! What a tus upload adds to its upload session (`tus_uploads`), and the
//! one transaction that records the chunks a `PATCH` stored.

use rusqlite::{params, Connection, OptionalExtension};

use super::uploads::{insert_upload, record_chunk, ChunkRow, UploadRow};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct TusRow {
    /// JSON of the video's metadata, what `complete` is given.
    pub meta: String,
    /// `Upload-Metadata` as sent.
    pub metadata: Option<String>,
}

/// The session and its tus row together, so no upload is half a tus one.
pub fn insert_tus_upload(c: &mut Connection, u: &UploadRow, tus: &TusRow) -> Result<()> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("creating a tus upload"))?;
    insert_upload(&tx, u)?;
    tx.execute(
        "INSERT INTO tus_uploads (upload_id, meta, metadata) VALUES (?1, ?2, ?3)",
        params![u.id, tus.meta, tus.metadata],
    )
    .map_err(Error::catalog("creating a tus upload"))?;
    tx.commit().map_err(Error::catalog("creating a tus upload"))
}

/// The tus part of an upload; `None` for a session of the chunked API.
pub fn tus_upload(c: &Connection, upload_id: &str) -> Result<Option<TusRow>> {
    c.query_row(
        "SELECT meta, metadata FROM tus_uploads WHERE upload_id = ?1",
        [upload_id],
        |r| {
            Ok(TusRow {
                meta: r.get(0)?,
                metadata: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(Error::catalog("reading a tus upload"))
}

/// Records stored chunks (full ones and at most one partial one) in one
/// transaction: the upload's offset moves once, to where they end.
pub fn record_chunks(c: &mut Connection, upload_id: &str, chunks: &[ChunkRow]) -> Result<()> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("recording chunks"))?;
    for chunk in chunks {
        record_chunk(&tx, upload_id, chunk)?;
    }
    tx.commit().map_err(Error::catalog("recording chunks"))
}
