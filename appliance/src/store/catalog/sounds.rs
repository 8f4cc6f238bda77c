//! Sounds, the copyright library's reference tracks and the matches found
//! against them (schema v9). A sound's and a reference's fingerprint is a
//! BLOB of little-endian Chromaprint items; `sounds::index` is rebuilt from
//! these rows at start. Usage counts only ready public videos, through
//! `videos_sound (sound_id, created_at, id)`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::videos::{video_row, VIDEO_COLS};
use super::VideoRow;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct SoundRow {
    pub id: String,
    pub title: String,
    pub owner_id: Option<String>,
    pub origin_video_id: Option<String>,
    pub duration_ms: i64,
    pub created_at: i64,
}

const SOUND_COLS: &str = "id, title, owner_id, origin_video_id, duration_ms, created_at";

fn sound_row(r: &Row<'_>) -> rusqlite::Result<SoundRow> {
    Ok(SoundRow {
        id: r.get(0)?,
        title: r.get(1)?,
        owner_id: r.get(2)?,
        origin_video_id: r.get(3)?,
        duration_ms: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// A new sound, and `video_id` (its first video) linked to it, in one
/// transaction.
pub fn insert_sound(c: &Connection, s: &SoundRow, fingerprint: &[u8]) -> Result<()> {
    super::atomically(c, || {
        c.execute(
            &format!("INSERT INTO sounds ({SOUND_COLS}, fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                s.id,
                s.title,
                s.owner_id,
                s.origin_video_id,
                s.duration_ms,
                s.created_at,
                fingerprint
            ],
        )
        .map_err(Error::catalog("creating a sound"))?;
        if let Some(v) = &s.origin_video_id {
            set_video_sound(c, v, &s.id)?;
        }
        Ok(())
    })
}

pub fn sound(c: &Connection, id: &str) -> Result<Option<SoundRow>> {
    c.query_row(
        &format!("SELECT {SOUND_COLS} FROM sounds WHERE id = ?1"),
        [id],
        sound_row,
    )
    .optional()
    .map_err(Error::catalog("reading a sound"))
}

pub fn sound_exists(c: &Connection, id: &str) -> Result<bool> {
    c.query_row("SELECT 1 FROM sounds WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(Error::catalog("reading a sound"))
}

/// The fingerprints of some sounds (those found), for verifying matches.
pub fn sound_fingerprints(c: &Connection, ids: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut st = c
        .prepare_cached("SELECT id, fingerprint FROM sounds WHERE id = ?1")
        .map_err(Error::catalog("reading fingerprints"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = st
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(Error::catalog("reading fingerprints"))?
        {
            out.push(row);
        }
    }
    Ok(out)
}

/// A page of every sound's id and fingerprint in insertion order (`rowid`
/// after `after`), for rebuilding the index.
pub fn sound_fingerprints_after(
    c: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, String, Vec<u8>)>> {
    let mut st = c
        .prepare_cached(
            "SELECT rowid, id, fingerprint FROM sounds WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )
        .map_err(Error::catalog("loading fingerprints"))?;
    let rows = st
        .query_map(params![after, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(Error::catalog("loading fingerprints"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading fingerprints"))
}

/// Links a video to a sound.
pub fn set_video_sound(c: &Connection, video_id: &str, sound_id: &str) -> Result<()> {
    c.execute(
        "UPDATE videos SET sound_id = ?2 WHERE id = ?1",
        params![video_id, sound_id],
    )
    .map_err(Error::catalog("linking a video to its sound"))?;
    Ok(())
}

/// Ready public videos using a sound.
pub fn sound_usage(c: &Connection, id: &str) -> Result<i64> {
    c.query_row(
        "SELECT COUNT(*) FROM videos WHERE sound_id = ?1 AND state = 'ready' AND visibility = 'public'",
        [id],
        |r| r.get(0),
    )
    .map_err(Error::catalog("counting a sound's videos"))
}

/// A page of the ready public videos using a sound, newest first.
pub fn sound_videos(
    c: &Connection,
    id: &str,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<VideoRow>> {
    let (after_t, after_id) = after.unwrap_or((0, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos
             WHERE sound_id = ?1 AND state = 'ready' AND visibility = 'public'
             AND (?3 = '' OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("listing a sound's videos"))?;
    let rows = st
        .query_map(params![id, after_t, after_id, limit], video_row)
        .map_err(Error::catalog("listing a sound's videos"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing a sound's videos"))
}

/// Sounds by how many ready public videos made since `since` use them,
/// most first (ties: newer sound first), with that count and the sound's
/// whole usage; `offset` rows skipped.
pub fn trending_sounds(
    c: &Connection,
    since: i64,
    offset: u32,
    limit: u32,
) -> Result<Vec<(SoundRow, i64, i64)>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {cols}, recent.n,
                (SELECT COUNT(*) FROM videos u WHERE u.sound_id = s.id
                   AND u.state = 'ready' AND u.visibility = 'public')
             FROM (SELECT sound_id, COUNT(*) AS n FROM videos
                   WHERE sound_id IS NOT NULL AND state = 'ready' AND visibility = 'public'
                     AND created_at >= ?1
                   GROUP BY sound_id) AS recent
             JOIN sounds s ON s.id = recent.sound_id
             ORDER BY recent.n DESC, s.created_at DESC, s.id DESC LIMIT ?2 OFFSET ?3",
            cols = "s.id, s.title, s.owner_id, s.origin_video_id, s.duration_ms, s.created_at"
        ))
        .map_err(Error::catalog("ranking sounds"))?;
    let rows = st
        .query_map(params![since, limit, offset], |r| {
            Ok((sound_row(r)?, r.get(6)?, r.get(7)?))
        })
        .map_err(Error::catalog("ranking sounds"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("ranking sounds"))
}

#[derive(Debug, Clone)]
pub struct ReferenceRow {
    pub id: String,
    pub title: String,
    pub policy: String,
    pub duration_ms: i64,
    pub created_by: Option<String>,
    pub created_at: i64,
}

const REFERENCE_COLS: &str = "id, title, policy, duration_ms, created_by, created_at";

fn reference_row(r: &Row<'_>) -> rusqlite::Result<ReferenceRow> {
    Ok(ReferenceRow {
        id: r.get(0)?,
        title: r.get(1)?,
        policy: r.get(2)?,
        duration_ms: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub fn insert_reference(c: &Connection, r: &ReferenceRow, fingerprint: &[u8]) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO reference_audio ({REFERENCE_COLS}, fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            r.id,
            r.title,
            r.policy,
            r.duration_ms,
            r.created_by,
            r.created_at,
            fingerprint
        ],
    )
    .map_err(Error::catalog("adding reference audio"))?;
    Ok(())
}

/// Every reference with its fingerprint (the library is small: an
/// operator's list of tracks), for the reference index.
pub fn all_references(c: &Connection) -> Result<Vec<(ReferenceRow, Vec<u8>)>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {REFERENCE_COLS}, fingerprint FROM reference_audio ORDER BY created_at, id"
        ))
        .map_err(Error::catalog("loading reference audio"))?;
    let rows = st
        .query_map([], |r| Ok((reference_row(r)?, r.get(6)?)))
        .map_err(Error::catalog("loading reference audio"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading reference audio"))
}

pub fn references_page(
    c: &Connection,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<ReferenceRow>> {
    let (at, id) = after.unwrap_or((0, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {REFERENCE_COLS} FROM reference_audio
             WHERE (?2 = '' OR created_at < ?1 OR (created_at = ?1 AND id < ?2))
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))
        .map_err(Error::catalog("listing reference audio"))?;
    let rows = st
        .query_map(params![at, id, limit], reference_row)
        .map_err(Error::catalog("listing reference audio"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing reference audio"))
}

/// Deletes a reference (its recorded matches go with it). False if there
/// was none.
pub fn delete_reference(c: &Connection, id: &str) -> Result<bool> {
    super::atomically(c, || {
        c.execute("DELETE FROM audio_matches WHERE reference_id = ?1", [id])
            .map_err(Error::catalog("deleting reference audio"))?;
        let n = c
            .execute("DELETE FROM reference_audio WHERE id = ?1", [id])
            .map_err(Error::catalog("deleting reference audio"))?;
        Ok(n > 0)
    })
}

#[derive(Debug, Clone)]
pub struct AudioMatchRow {
    pub video_id: String,
    pub reference_id: String,
    pub reference_title: String,
    pub policy: String,
    pub offset_ms: i64,
    pub reference_offset_ms: i64,
    pub duration_ms: i64,
    pub confidence: f64,
    pub created_at: i64,
}

/// Records (or refreshes, on a job's retry) a match of a video's audio.
pub fn record_match(c: &Connection, m: &AudioMatchRow) -> Result<()> {
    c.execute(
        "INSERT INTO audio_matches (video_id, reference_id, policy, offset_ms, reference_offset_ms,
            duration_ms, confidence, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (video_id, reference_id) DO UPDATE SET policy = excluded.policy,
            offset_ms = excluded.offset_ms, reference_offset_ms = excluded.reference_offset_ms,
            duration_ms = excluded.duration_ms, confidence = excluded.confidence,
            created_at = excluded.created_at",
        params![
            m.video_id,
            m.reference_id,
            m.policy,
            m.offset_ms,
            m.reference_offset_ms,
            m.duration_ms,
            m.confidence,
            m.created_at
        ],
    )
    .map_err(Error::catalog("recording an audio match"))?;
    Ok(())
}

/// Recorded matches, newest first; after (created_at, video id, reference
/// id).
pub fn matches_page(
    c: &Connection,
    after: Option<(i64, String, String)>,
    limit: u32,
) -> Result<Vec<AudioMatchRow>> {
    let (at, vid, rid) = after.unwrap_or((0, String::new(), String::new()));
    let mut st = c
        .prepare_cached(
            "SELECT m.video_id, m.reference_id, r.title, m.policy, m.offset_ms,
                m.reference_offset_ms, m.duration_ms, m.confidence, m.created_at
             FROM audio_matches m JOIN reference_audio r ON r.id = m.reference_id
             WHERE (?2 = '' OR m.created_at < ?1
                OR (m.created_at = ?1 AND (m.video_id < ?2
                    OR (m.video_id = ?2 AND m.reference_id < ?3))))
             ORDER BY m.created_at DESC, m.video_id DESC, m.reference_id DESC LIMIT ?4",
        )
        .map_err(Error::catalog("listing audio matches"))?;
    let rows = st
        .query_map(params![at, vid, rid, limit], |r| {
            Ok(AudioMatchRow {
                video_id: r.get(0)?,
                reference_id: r.get(1)?,
                reference_title: r.get(2)?,
                policy: r.get(3)?,
                offset_ms: r.get(4)?,
                reference_offset_ms: r.get(5)?,
                duration_ms: r.get(6)?,
                confidence: r.get(7)?,
                created_at: r.get(8)?,
            })
        })
        .map_err(Error::catalog("listing audio matches"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing audio matches"))
}
