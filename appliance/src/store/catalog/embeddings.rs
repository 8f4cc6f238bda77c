//! What the feed persists: video embeddings, and the watch events a
//! version-2 catalog still holds (moved to the spool at start).

use rusqlite::{params, Connection};

use super::videos::{video_row, VIDEO_COLS};
use super::{now_ms, VideoRow};
use crate::error::{Error, Result};

/// When the oldest ready public video with no embedding was last updated
/// (ms), if any. One pass over the table (no index walk: most rows are
/// embedded, and a walk by `updated_at` would seek each of them).
pub fn oldest_unembedded(c: &Connection) -> Result<Option<i64>> {
    c.query_row(
        "SELECT MIN(updated_at) FROM videos v NOT INDEXED
         WHERE state = 'ready' AND visibility = 'public'
         AND NOT EXISTS (SELECT 1 FROM video_embeddings e WHERE e.video_id = v.id)",
        [],
        |r| r.get(0),
    )
    .map_err(Error::catalog("finding videos to embed"))
}

/// Ready public videos updated at or after `since` (ms) that have no
/// embedding yet, oldest first (by `videos_updated`, so a sweep reads what
/// changed, not the catalog).
pub fn unembedded_videos(c: &Connection, since: i64, limit: u32) -> Result<Vec<VideoRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos v WHERE updated_at >= ?2
             AND state = 'ready' AND visibility = 'public'
             AND NOT EXISTS (SELECT 1 FROM video_embeddings e WHERE e.video_id = v.id)
             ORDER BY updated_at LIMIT ?1"
        ))
        .map_err(Error::catalog("listing videos to embed"))?;
    let rows = st
        .query_map(params![limit, since], video_row)
        .map_err(Error::catalog("listing videos to embed"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing videos to embed"))
}

pub fn store_embedding(c: &Connection, video_id: &str, model: &str, vector: &[f32]) -> Result<()> {
    let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    c.execute(
        "INSERT INTO video_embeddings (video_id, model, vector, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (video_id) DO UPDATE SET model = excluded.model, vector = excluded.vector",
        params![video_id, model, blob, now_ms()],
    )
    .map_err(Error::catalog("storing an embedding"))?;
    Ok(())
}

/// Every ready public video with its embedding, in embedding order.
pub fn embedded_videos(c: &Connection) -> Result<Vec<(VideoRow, Vec<f32>)>> {
    let cols: String = VIDEO_COLS
        .split(", ")
        .map(|c| format!("v.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = c
        .prepare(&format!(
            "SELECT {cols}, e.vector FROM video_embeddings e JOIN videos v ON v.id = e.video_id
             WHERE v.state = 'ready' AND v.visibility = 'public' ORDER BY e.rowid"
        ))
        .map_err(Error::catalog("loading embeddings"))?;
    let rows = st
        .query_map([], |r| {
            // The vector follows the video's columns.
            let blob: Vec<u8> = r.get(VIDEO_COLS.split(", ").count())?;
            let vector = blob
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((video_row(r)?, vector))
        })
        .map_err(Error::catalog("loading embeddings"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading embeddings"))
}

#[derive(Debug, Clone)]
pub struct WatchRow {
    pub event_id: String,
    pub user_id: String,
    pub video_id: String,
    pub watch_ms: i64,
    pub duration_ms: i64,
    pub completed: bool,
    pub liked: bool,
    pub shared: bool,
    pub source: String,
    pub ts: i64,
}

/// Watch events a version-2 catalog still holds (with each video's owner),
/// oldest first, at most `limit`; `None` once the table is gone.
pub fn legacy_watches(c: &Connection, limit: u32) -> Result<Option<Vec<(i64, WatchRow, String)>>> {
    let exists: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watch_events')",
            [],
            |r| r.get(0),
        )
        .map_err(Error::catalog("reading watch events"))?;
    if !exists {
        return Ok(None);
    }
    let mut st = c
        .prepare(
            "SELECT w.rowid, w.event_id, w.user_id, w.video_id, w.watch_ms, w.duration_ms, w.completed,
                    w.liked, w.shared, w.source, w.ts, COALESCE(v.owner_id, '')
             FROM watch_events w LEFT JOIN videos v ON v.id = w.video_id
             ORDER BY w.rowid LIMIT ?1",
        )
        .map_err(Error::catalog("reading watch events"))?;
    let rows = st
        .query_map(params![limit], |r| {
            Ok((
                r.get(0)?,
                WatchRow {
                    event_id: r.get(1)?,
                    user_id: r.get(2)?,
                    video_id: r.get(3)?,
                    watch_ms: r.get(4)?,
                    duration_ms: r.get(5)?,
                    completed: r.get(6)?,
                    liked: r.get(7)?,
                    shared: r.get(8)?,
                    source: r.get(9)?,
                    ts: r.get(10)?,
                },
                r.get(11)?,
            ))
        })
        .map_err(Error::catalog("reading watch events"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map(Some)
        .map_err(Error::catalog("reading watch events"))
}

/// Forgets legacy watch events up to `rowid` (they are in the spool now);
/// drops the table once it is empty.
pub fn forget_legacy_watches(c: &Connection, rowid: i64) -> Result<()> {
    c.execute("DELETE FROM watch_events WHERE rowid <= ?1", params![rowid])
        .map_err(Error::catalog("forgetting watch events"))?;
    let left: i64 = c
        .query_row("SELECT COUNT(*) FROM watch_events", [], |r| r.get(0))
        .map_err(Error::catalog("forgetting watch events"))?;
    if left == 0 {
        c.execute_batch("DROP TABLE watch_events")
            .map_err(Error::catalog("dropping watch_events"))?;
    }
    Ok(())
}
