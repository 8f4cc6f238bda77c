//! Upload sessions and their chunks.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub owner_id: String,
    pub video_id: String,
    pub filename: String,
    pub file_size: u64,
    pub mime_type: String,
    pub chunk_size: u64,
    pub total_chunks: u32,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
}

fn upload_row(r: &Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        video_id: r.get(2)?,
        filename: r.get(3)?,
        file_size: r.get(4)?,
        mime_type: r.get(5)?,
        chunk_size: r.get(6)?,
        total_chunks: r.get(7)?,
        status: r.get(8)?,
        created_at: r.get(9)?,
        expires_at: r.get(10)?,
    })
}

const UPLOAD_COLS: &str = "id, owner_id, video_id, filename, file_size, mime_type, chunk_size, \
                           total_chunks, status, created_at, expires_at";

pub fn insert_upload(c: &Connection, u: &UploadRow) -> Result<()> {
    c.execute(
        &format!("INSERT INTO uploads ({UPLOAD_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            u.id, u.owner_id, u.video_id, u.filename, u.file_size, u.mime_type, u.chunk_size,
            u.total_chunks, u.status, u.created_at, u.expires_at
        ],
    )
    .map_err(Error::catalog("creating an upload"))?;
    Ok(())
}

pub fn upload(c: &Connection, id: &str) -> Result<Option<UploadRow>> {
    c.query_row(
        &format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = ?1"),
        [id],
        upload_row,
    )
    .optional()
    .map_err(Error::catalog("reading an upload"))
}

#[derive(Debug, Clone)]
pub struct ChunkRow {
    pub n: u32,
    pub size: u64,
    pub sha256: String,
}

pub fn chunks(c: &Connection, upload_id: &str) -> Result<Vec<ChunkRow>> {
    let mut st = c
        .prepare_cached("SELECT n, size, sha256 FROM upload_chunks WHERE upload_id = ?1 ORDER BY n")
        .map_err(Error::catalog("listing chunks"))?;
    let rows = st
        .query_map([upload_id], |r| {
            Ok(ChunkRow {
                n: r.get(0)?,
                size: r.get(1)?,
                sha256: r.get(2)?,
            })
        })
        .map_err(Error::catalog("listing chunks"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing chunks"))
}

pub fn chunk(c: &Connection, upload_id: &str, n: u32) -> Result<Option<ChunkRow>> {
    c.query_row(
        "SELECT n, size, sha256 FROM upload_chunks WHERE upload_id = ?1 AND n = ?2",
        params![upload_id, n],
        |r| {
            Ok(ChunkRow {
                n: r.get(0)?,
                size: r.get(1)?,
                sha256: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(Error::catalog("reading a chunk"))
}

/// Records a stored chunk (a re-sent chunk replaces the earlier record).
pub fn record_chunk(c: &Connection, upload_id: &str, chunk: &ChunkRow) -> Result<()> {
    c.execute(
        "INSERT INTO upload_chunks (upload_id, n, size, sha256) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (upload_id, n) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256",
        params![upload_id, chunk.n, chunk.size, chunk.sha256],
    )
    .map_err(Error::catalog("recording a chunk"))?;
    Ok(())
}

pub fn set_upload_status(c: &Connection, id: &str, status: &str) -> Result<()> {
    // An expiry is a webhook event: its deliveries commit with it.
    super::atomically(c, || {
        c.execute(
            "UPDATE uploads SET status = ?2 WHERE id = ?1",
            params![id, status],
        )
        .map_err(Error::catalog("updating an upload"))?;
        if status == "expired" {
            crate::webhooks::record(c, crate::webhooks::Event::UploadExpired { upload_id: id })?;
        }
        Ok(())
    })
}

/// Open sessions past their expiry (bounded batch, for the janitor).
pub fn expired_uploads(c: &Connection, now: i64, limit: u32) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached(
            "SELECT id FROM uploads WHERE status = 'open' AND expires_at <= ?1 LIMIT ?2",
        )
        .map_err(Error::catalog("listing expired uploads"))?;
    let rows = st
        .query_map(params![now, limit], |r| r.get(0))
        .map_err(Error::catalog("listing expired uploads"))?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .map_err(Error::catalog("listing expired uploads"))
}

/// Uploads whose chunks are no longer needed but may still be stored (the
/// process can die between the state change and the deletion).
pub fn finished_uploads(c: &Connection, limit: u32) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached(
            "SELECT DISTINCT u.id FROM uploads u JOIN upload_chunks k ON k.upload_id = u.id
             WHERE u.status IN ('completed', 'cancelled', 'expired', 'rejected') LIMIT ?1",
        )
        .map_err(Error::catalog("listing finished uploads"))?;
    let rows = st
        .query_map(params![limit], |r| r.get(0))
        .map_err(Error::catalog("listing finished uploads"))?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .map_err(Error::catalog("listing finished uploads"))
}

pub fn forget_chunks(c: &Connection, upload_id: &str) -> Result<()> {
    c.execute(
        "DELETE FROM upload_chunks WHERE upload_id = ?1",
        [upload_id],
    )
    .map_err(Error::catalog("forgetting chunks"))?;
    Ok(())
}
