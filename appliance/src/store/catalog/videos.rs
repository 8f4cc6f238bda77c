//! Videos: the row, its life (processing → ready | failed → deleting →
//! gone), a creator's pages and public lookups by id.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::now_ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct VideoRow {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub hashtags: Vec<String>,
    pub sound_id: Option<String>,
    pub visibility: String,
    pub state: String,
    pub stage: String,
    pub failure: Option<String>,
    pub source_key: String,
    pub source_name: String,
    pub ladder: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Whether others may duet / stitch it.
    pub duet_enabled: bool,
    pub stitch_enabled: bool,
    /// JSON `api::wire::Remix` of a duet or stitch; its original's id is
    /// `remix_of` (indexed, for the original's remixes).
    pub remix: Option<String>,
    pub remix_of: Option<String>,
    /// The speed the upload is edited to before the ladder (1: as recorded).
    pub speed: f64,
}

impl VideoRow {
    /// A published-looking row with no media behind it (benchmarks that
    /// only need videos to exist).
    pub fn bench(id: &str, owner: &str) -> Self {
        let now = now_ms();
        Self {
            id: id.to_owned(),
            owner_id: owner.to_owned(),
            title: format!("bench {id}"),
            description: String::new(),
            hashtags: vec!["bench".into()],
            sound_id: None,
            visibility: "public".into(),
            state: "ready".into(),
            stage: "done".into(),
            failure: None,
            source_key: String::new(),
            source_name: String::new(),
            ladder: None,
            created_at: now,
            updated_at: now,
            duet_enabled: true,
            stitch_enabled: true,
            remix: None,
            remix_of: None,
            speed: 1.0,
        }
    }
}

pub(super) const VIDEO_COLS: &str =
    "id, owner_id, title, description, hashtags, sound_id, visibility, state, \
                          stage, failure, source_key, source_name, ladder, created_at, updated_at, \
                          duet_enabled, stitch_enabled, remix, remix_of, speed";

pub(super) fn video_row(r: &Row<'_>) -> rusqlite::Result<VideoRow> {
    let hashtags: String = r.get(4)?;
    Ok(VideoRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        title: r.get(2)?,
        description: r.get(3)?,
        hashtags: serde_json::from_str(&hashtags).unwrap_or_default(),
        sound_id: r.get(5)?,
        visibility: r.get(6)?,
        state: r.get(7)?,
        stage: r.get(8)?,
        failure: r.get(9)?,
        source_key: r.get(10)?,
        source_name: r.get(11)?,
        ladder: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        duet_enabled: r.get(15)?,
        stitch_enabled: r.get(16)?,
        remix: r.get(17)?,
        remix_of: r.get(18)?,
        speed: r.get(19)?,
    })
}

pub fn insert_video(c: &Connection, v: &VideoRow) -> Result<()> {
    // A video inserted already published (a live recording) is
    // `video.ready` at once: its webhook deliveries commit with the row.
    super::atomically(c, || {
        insert_video_row(c, v)?;
        if v.state == "ready" {
            let ready = crate::webhooks::Event::VideoReady {
                video_id: &v.id,
                job_id: 0,
            };
            crate::webhooks::record(c, ready)?;
        }
        Ok(())
    })
}

fn insert_video_row(c: &Connection, v: &VideoRow) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO videos ({VIDEO_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        params![
            v.id,
            v.owner_id,
            v.title,
            v.description,
            serde_json::to_string(&v.hashtags).unwrap_or_else(|_| "[]".into()),
            v.sound_id,
            v.visibility,
            v.state,
            v.stage,
            v.failure,
            v.source_key,
            v.source_name,
            v.ladder,
            v.created_at,
            v.updated_at,
            v.duet_enabled,
            v.stitch_enabled,
            v.remix,
            v.remix_of,
            v.speed
        ],
    )
    .map_err(Error::catalog("creating a video"))?;
    Ok(())
}

pub fn video(c: &Connection, id: &str) -> Result<Option<VideoRow>> {
    c.query_row(
        &format!("SELECT {VIDEO_COLS} FROM videos WHERE id = ?1"),
        [id],
        video_row,
    )
    .optional()
    .map_err(Error::catalog("reading a video"))
}

/// A page of a user's videos, newest first. `public_only` hides what only
/// the owner may list.
pub fn videos_of(
    c: &Connection,
    owner_id: &str,
    public_only: bool,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<VideoRow>> {
    // An empty id means "from the start".
    let (after_t, after_id) = after.unwrap_or((0, String::new()));
    let filter = if public_only {
        "AND state = 'ready' AND visibility = 'public'"
    } else {
        "AND state <> 'deleting'"
    };
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos WHERE owner_id = ?1 {filter}
             AND (?3 = '' OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("listing videos"))?;
    let rows = st
        .query_map(params![owner_id, after_t, after_id, limit], video_row)
        .map_err(Error::catalog("listing videos"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing videos"))
}

/// A page of the ready, public duets and stitches of `original_id`,
/// newest first (`videos_remix_of`).
pub fn remixes_of(
    c: &Connection,
    original_id: &str,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<VideoRow>> {
    let (after_t, after_id) = after.unwrap_or((0, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos WHERE remix_of = ?1
             AND state = 'ready' AND visibility = 'public'
             AND (?3 = '' OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("listing remixes"))?;
    let rows = st
        .query_map(params![original_id, after_t, after_id, limit], video_row)
        .map_err(Error::catalog("listing remixes"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing remixes"))
}

pub fn set_video_stage(c: &Connection, id: &str, stage: &str) -> Result<()> {
    c.execute(
        "UPDATE videos SET stage = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'processing'",
        params![id, stage, now_ms()],
    )
    .map_err(Error::catalog("updating a video"))?;
    Ok(())
}

/// A job gave up: a video still processing fails; one already playable
/// stays playable with the rungs it has, and says why the rest are missing.
pub fn fail_video(c: &Connection, id: &str, reason: &str) -> Result<()> {
    c.execute(
        "UPDATE videos SET state = 'failed', stage = 'failed', failure = ?2, updated_at = ?3
         WHERE id = ?1 AND state = 'processing'",
        params![id, reason, now_ms()],
    )
    .map_err(Error::catalog("failing a video"))?;
    c.execute(
        "UPDATE videos SET stage = 'done', failure = ?2, updated_at = ?3
         WHERE id = ?1 AND state = 'ready' AND stage = 'growing'",
        params![id, format!("the ladder is incomplete: {reason}"), now_ms()],
    )
    .map_err(Error::catalog("failing a video"))?;
    Ok(())
}

/// Marks a video `deleting` and cancels its jobs, atomically: from here on
/// no worker can publish it. Returns false if there was no such video.
pub fn begin_delete(c: &mut Connection, id: &str) -> Result<bool> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("deleting a video"))?;
    let n = tx
        .execute(
            "UPDATE videos SET state = 'deleting', updated_at = ?2 WHERE id = ?1 AND state <> 'deleting'",
            params![id, now_ms()],
        )
        .map_err(Error::catalog("deleting a video"))?;
    tx.execute(
        "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, updated_at = ?2
         WHERE video_id = ?1 AND state IN ('queued', 'running')",
        params![id, now_ms()],
    )
    .map_err(Error::catalog("cancelling jobs"))?;
    if n == 1 {
        crate::webhooks::record(&tx, crate::webhooks::Event::VideoDeleted { video_id: id })?;
    }
    tx.commit().map_err(Error::catalog("deleting a video"))?;
    Ok(n == 1)
}

pub fn finish_delete(c: &Connection, id: &str) -> Result<()> {
    c.execute(
        "DELETE FROM videos WHERE id = ?1 AND state = 'deleting'",
        [id],
    )
    .map_err(Error::catalog("deleting a video"))?;
    Ok(())
}

pub fn deleting_videos(c: &Connection, limit: u32) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT id FROM videos WHERE state = 'deleting' LIMIT ?1")
        .map_err(Error::catalog("listing deletions"))?;
    let rows = st
        .query_map([limit], |r| r.get(0))
        .map_err(Error::catalog("listing deletions"))?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .map_err(Error::catalog("listing deletions"))
}

/// Public ready videos by id, in the order asked (missing ones dropped).
pub fn public_videos(c: &Connection, ids: &[String]) -> Result<Vec<VideoRow>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos WHERE id = ?1 AND state = 'ready' AND visibility = 'public'"
        ))
        .map_err(Error::catalog("reading videos"))?;
    for id in ids {
        if let Some(v) = st
            .query_row([id], video_row)
            .optional()
            .map_err(Error::catalog("reading videos"))?
        {
            out.push(v);
        }
    }
    Ok(out)
}
