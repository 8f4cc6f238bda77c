//! The catalog: users, tokens, upload sessions, videos, the job queue and
//! idempotency keys, in one SQLite file (WAL, `synchronous=FULL`: a
//! committed row survives a crash of the process or the host). The schema
//! is owned here and migrated with `PRAGMA user_version`.
//!
//! All access goes through `Catalog::call`, which runs a closure on the
//! blocking pool with the one connection (SQLite serialises writers anyway;
//! every statement here is an indexed point lookup or a bounded page).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users(id),
    video_id     TEXT NOT NULL UNIQUE,
    filename     TEXT NOT NULL,
    file_size    INTEGER NOT NULL,
    mime_type    TEXT NOT NULL,
    chunk_size   INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    status       TEXT NOT NULL,          -- open | completed | cancelled | expired | rejected
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX uploads_expiry ON uploads(status, expires_at);
CREATE TABLE upload_chunks (
    upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    n         INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    PRIMARY KEY (upload_id, n)
);
CREATE TABLE videos (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    hashtags    TEXT NOT NULL,           -- JSON array
    sound_id    TEXT,
    visibility  TEXT NOT NULL,
    state       TEXT NOT NULL,           -- processing | ready | failed | deleting
    stage       TEXT NOT NULL,
    failure     TEXT,
    source_key  TEXT NOT NULL,
    source_name TEXT NOT NULL,
    ladder      TEXT,                    -- JSON, once ready
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX videos_owner ON videos(owner_id, created_at DESC, id DESC);
CREATE INDEX videos_state ON videos(state);
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id      TEXT NOT NULL,
    state         TEXT NOT NULL,         -- queued | running | succeeded | failed | cancelled
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_after     INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_expires INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, run_after);
CREATE INDEX jobs_video ON jobs(video_id);
CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,                 -- NULL while the first request runs
    body        BLOB,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
"#;

/// Version 2: what the feed learns from and needs to rebuild its state.
const SCHEMA_V2: &str = r#"
CREATE TABLE video_embeddings (
    video_id   TEXT PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    model      TEXT NOT NULL,
    vector     BLOB NOT NULL,            -- little-endian f32
    created_at INTEGER NOT NULL
);
CREATE TABLE watch_events (
    event_id    TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    video_id    TEXT NOT NULL,
    watch_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    completed   INTEGER NOT NULL,
    liked       INTEGER NOT NULL,
    shared      INTEGER NOT NULL,
    source      TEXT NOT NULL,
    ts          INTEGER NOT NULL,        -- client clock, ms
    received_at INTEGER NOT NULL
);
CREATE TABLE follows (
    follower_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    followee_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE TABLE interests (
    user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    interests  TEXT NOT NULL,            -- JSON array
    updated_at INTEGER NOT NULL
);
"#;

/// Version 3: engagement (likes, saves, shares, threaded comments), the
/// counters shown on videos, and the record of applied counter flushes.
/// Watch events move to the spool and the analytics store: rows left in
/// `watch_events` by version 2 are handed to the spool at start-up
/// (`legacy_watches`) and the table is dropped when it is empty.
const SCHEMA_V3: &str = r#"
CREATE INDEX IF NOT EXISTS follows_followee ON follows(followee_id, created_at DESC, follower_id);
CREATE INDEX IF NOT EXISTS follows_follower ON follows(follower_id, created_at DESC, followee_id);
CREATE TABLE likes (
    video_id   TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (video_id, user_id)
) WITHOUT ROWID;
CREATE TABLE saves (
    video_id   TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (video_id, user_id)
) WITHOUT ROWID;
CREATE INDEX saves_user ON saves(user_id, created_at DESC);
CREATE TABLE shares (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id   TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    channel    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX shares_video ON shares(video_id, channel);
CREATE TABLE comments (
    id          TEXT PRIMARY KEY,
    video_id    TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    parent_id   TEXT REFERENCES comments(id) ON DELETE CASCADE,
    body        TEXT NOT NULL,
    reply_count INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
-- Pages follow rowid (insertion order, unique even within a millisecond),
-- which every index carries last.
CREATE INDEX comments_thread ON comments(video_id, parent_id);
CREATE INDEX comments_replies ON comments(parent_id);
CREATE TABLE video_stats (
    video_id TEXT PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    views    INTEGER NOT NULL DEFAULT 0,
    likes    INTEGER NOT NULL DEFAULT 0,
    comments INTEGER NOT NULL DEFAULT 0,
    shares   INTEGER NOT NULL DEFAULT 0,
    saves    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE counter_flushes (
    id         TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
"#;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
}

impl Catalog {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(Error::catalog("opening"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(Error::catalog("configuring"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(Error::catalog("reading the schema version"))?;
        match version {
            0 => conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA} {SCHEMA_V2} {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(Error::catalog("creating the schema"))?,
            1 => conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA_V2} {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(Error::catalog("migrating the schema to version 3"))?,
            2 => conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(Error::catalog("migrating the schema to version 3"))?,
            SCHEMA_VERSION => {}
            newer => {
                return Err(Error::Config(format!(
                    "{} has schema version {newer}, newer than this binary's {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }
}

// ------------------------------------------------------------------ users

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        role: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const USER_COLS: &str = "id, username, password_hash, role, created_at";

/// `false` if the username is taken.
pub fn insert_user(c: &Connection, u: &UserRow) -> Result<bool> {
    let n = c
        .execute(
            "INSERT INTO users (id, username, password_hash, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
            params![u.id, u.username, u.password_hash, u.role, u.created_at],
        )
        .map_err(Error::catalog("inserting a user"))?;
    Ok(n == 1)
}

pub fn user_by_name(c: &Connection, username: &str) -> Result<Option<UserRow>> {
    c.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
        [username],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("reading a user"))
}

pub fn user_by_id(c: &Connection, id: &str) -> Result<Option<UserRow>> {
    c.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
        [id],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("reading a user"))
}

pub fn insert_token(c: &Connection, hash: &str, user_id: &str, expires_at: i64) -> Result<()> {
    c.execute(
        "INSERT INTO tokens (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash, user_id, now_ms(), expires_at],
    )
    .map_err(Error::catalog("storing a token"))?;
    Ok(())
}

/// The user a (hashed) token belongs to, if it has not expired.
pub fn user_by_token(c: &Connection, hash: &str) -> Result<Option<UserRow>> {
    c.query_row(
        "SELECT u.id, u.username, u.password_hash, u.role, u.created_at
         FROM tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.expires_at > ?2",
        params![hash, now_ms()],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("checking a token"))
}

// ---------------------------------------------------------------- uploads

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
    c.execute(
        "UPDATE uploads SET status = ?2 WHERE id = ?1",
        params![id, status],
    )
    .map_err(Error::catalog("updating an upload"))?;
    Ok(())
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

// ----------------------------------------------------------------- videos

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
        }
    }
}

const VIDEO_COLS: &str =
    "id, owner_id, title, description, hashtags, sound_id, visibility, state, \
                          stage, failure, source_key, source_name, ladder, created_at, updated_at";

fn video_row(r: &Row<'_>) -> rusqlite::Result<VideoRow> {
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
    })
}

pub fn insert_video(c: &Connection, v: &VideoRow) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO videos ({VIDEO_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
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
            v.updated_at
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

pub fn set_video_stage(c: &Connection, id: &str, stage: &str) -> Result<()> {
    c.execute(
        "UPDATE videos SET stage = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'processing'",
        params![id, stage, now_ms()],
    )
    .map_err(Error::catalog("updating a video"))?;
    Ok(())
}

pub fn fail_video(c: &Connection, id: &str, reason: &str) -> Result<()> {
    c.execute(
        "UPDATE videos SET state = 'failed', stage = 'failed', failure = ?2, updated_at = ?3
         WHERE id = ?1 AND state = 'processing'",
        params![id, reason, now_ms()],
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

// ------------------------------------------------------------------- jobs

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub video_id: String,
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_expires: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const JOB_COLS: &str = "id, video_id, state, attempts, max_attempts, run_after, lease_owner, \
                        lease_expires, last_error, created_at, updated_at";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        video_id: r.get(1)?,
        state: r.get(2)?,
        attempts: r.get(3)?,
        max_attempts: r.get(4)?,
        run_after: r.get(5)?,
        lease_owner: r.get(6)?,
        lease_expires: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

pub fn enqueue(c: &Connection, video_id: &str, max_attempts: u32) -> Result<i64> {
    let now = now_ms();
    c.execute(
        "INSERT INTO jobs (video_id, state, attempts, max_attempts, run_after, created_at, updated_at)
         VALUES (?1, 'queued', 0, ?2, ?3, ?3, ?3)",
        params![video_id, max_attempts, now],
    )
    .map_err(Error::catalog("enqueueing a job"))?;
    Ok(c.last_insert_rowid())
}

/// Takes the next due job — queued and due, or running under a lease that
/// ran out (its process died) — and leases it to `owner`.
pub fn claim(c: &Connection, owner: &str, lease: Duration) -> Result<Option<JobRow>> {
    let now = now_ms();
    c.query_row(
        &format!(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires = ?2,
                 attempts = attempts + 1, updated_at = ?3
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = 'queued' AND run_after <= ?3)
                            OR (state = 'running' AND lease_expires < ?3)
                         ORDER BY run_after, id LIMIT 1)
             RETURNING {JOB_COLS}"
        ),
        params![owner, now + lease.as_millis() as i64, now],
        job_row,
    )
    .optional()
    .map_err(Error::catalog("claiming a job"))
}

/// Extends a lease; false if the job is no longer ours (cancelled, or
/// taken over after our lease ran out).
pub fn renew(c: &Connection, id: i64, owner: &str, lease: Duration) -> Result<bool> {
    let now = now_ms();
    let n = c
        .execute(
            "UPDATE jobs SET lease_expires = ?3, updated_at = ?4
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner, now + lease.as_millis() as i64, now],
        )
        .map_err(Error::catalog("renewing a lease"))?;
    Ok(n == 1)
}

/// Ends a job we hold: `failed` (also fails the video) or back to `queued`
/// for a retry at `run_after`. No-op if the job is no longer ours.
pub fn settle(c: &mut Connection, id: i64, owner: &str, outcome: Settle) -> Result<bool> {
    let now = now_ms();
    let tx = c.transaction().map_err(Error::catalog("settling a job"))?;
    let video_id: Option<String> = tx
        .query_row(
            "SELECT video_id FROM jobs WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![id, owner],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::catalog("settling a job"))?;
    let Some(video_id) = video_id else {
        return Ok(false);
    };
    match outcome {
        Settle::Failed(reason) => {
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, last_error = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, reason, now],
            )
            .map_err(Error::catalog("settling a job"))?;
            fail_video(&tx, &video_id, &reason)?;
        }
        Settle::Retry { at, error } => {
            tx.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, run_after = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, at, error, now],
            )
            .map_err(Error::catalog("settling a job"))?;
            tx.execute(
                "UPDATE videos SET stage = 'retrying', updated_at = ?2 WHERE id = ?1 AND state = 'processing'",
                params![video_id, now],
            )
            .map_err(Error::catalog("settling a job"))?;
        }
        Settle::Release => {
            // Shutdown: give the attempt back, run again at once on restart.
            tx.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, run_after = ?2,
                     attempts = MAX(attempts - 1, 0), updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(Error::catalog("releasing a job"))?;
        }
    }
    tx.commit().map_err(Error::catalog("settling a job"))?;
    Ok(true)
}

pub enum Settle {
    Failed(String),
    Retry { at: i64, error: String },
    Release,
}

/// The commit point of a transcode: if (and only if) we still hold the job
/// and the video is still wanted, the video becomes `ready` with its ladder
/// and the job `succeeded`, in one transaction.
pub fn publish(
    c: &mut Connection,
    job_id: i64,
    owner: &str,
    video_id: &str,
    ladder: &str,
) -> Result<bool> {
    let now = now_ms();
    let tx = c.transaction().map_err(Error::catalog("publishing"))?;
    let held = tx
        .execute(
            "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, last_error = NULL, updated_at = ?3
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![job_id, owner, now],
        )
        .map_err(Error::catalog("publishing"))?;
    let wanted = tx
        .execute(
            "UPDATE videos SET state = 'ready', stage = 'done', failure = NULL, ladder = ?2, updated_at = ?3
             WHERE id = ?1 AND state = 'processing'",
            params![video_id, ladder, now],
        )
        .map_err(Error::catalog("publishing"))?;
    if held == 1 && wanted == 1 {
        tx.commit().map_err(Error::catalog("publishing"))?;
        Ok(true)
    } else {
        Ok(false)
    }
}

pub fn job_for_video(c: &Connection, video_id: &str) -> Result<Option<JobRow>> {
    c.query_row(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE video_id = ?1 ORDER BY id DESC LIMIT 1"),
        [video_id],
        job_row,
    )
    .optional()
    .map_err(Error::catalog("reading a job"))
}

pub fn recent_jobs(c: &Connection, limit: u32) -> Result<Vec<JobRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs ORDER BY id DESC LIMIT ?1"
        ))
        .map_err(Error::catalog("listing jobs"))?;
    let rows = st
        .query_map([limit], job_row)
        .map_err(Error::catalog("listing jobs"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing jobs"))
}

/// Jobs by state, for the queue-depth metric.
pub fn job_counts(c: &Connection) -> Result<Vec<(String, u64)>> {
    let mut st = c
        .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .map_err(Error::catalog("counting jobs"))?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::catalog("counting jobs"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("counting jobs"))
}

/// Puts a video back to `processing` with a fresh job (reprocess).
pub fn requeue_video(c: &mut Connection, video_id: &str, max_attempts: u32) -> Result<bool> {
    let now = now_ms();
    let tx = c.transaction().map_err(Error::catalog("requeueing"))?;
    let n = tx
        .execute(
            "UPDATE videos SET state = 'processing', stage = 'queued', failure = NULL, updated_at = ?2
             WHERE id = ?1 AND state IN ('ready', 'failed')",
            params![video_id, now],
        )
        .map_err(Error::catalog("requeueing"))?;
    tx.execute(
        "DELETE FROM video_embeddings WHERE video_id = ?1",
        [video_id],
    )
    .map_err(Error::catalog("requeueing"))?;
    if n == 0 {
        return Ok(false);
    }
    enqueue(&tx, video_id, max_attempts)?;
    tx.commit().map_err(Error::catalog("requeueing"))?;
    Ok(true)
}

// ------------------------------------------------------------ idempotency

/// fingerprint, status, body, created_at
type KeyRow = (String, Option<u16>, Option<Vec<u8>>, i64);

#[derive(Debug)]
pub enum KeyState {
    New,
    InFlight,
    Done { status: u16, body: Vec<u8> },
    OtherRequest,
}

/// Claims `(scope, key)` for a request with `fingerprint`. A claim left
/// in flight longer than `stale` (its process died) may be taken over.
pub fn claim_key(
    c: &mut Connection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    stale: Duration,
) -> Result<KeyState> {
    let now = now_ms();
    let tx = c.transaction().map_err(Error::catalog("idempotency"))?;
    let existing: Option<KeyRow> = tx
        .query_row(
            "SELECT fingerprint, status, body, created_at FROM idempotency WHERE scope = ?1 AND key = ?2",
            params![scope, key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(Error::catalog("idempotency"))?;
    let state = match existing {
        Some((fp, _, _, _)) if fp != fingerprint => KeyState::OtherRequest,
        Some((_, Some(status), body, _)) => KeyState::Done {
            status,
            body: body.unwrap_or_default(),
        },
        Some((_, None, _, created)) if now - created < stale.as_millis() as i64 => {
            KeyState::InFlight
        }
        Some(_) | None => {
            tx.execute(
                "INSERT INTO idempotency (scope, key, fingerprint, status, body, created_at)
                 VALUES (?1, ?2, ?3, NULL, NULL, ?4)
                 ON CONFLICT (scope, key) DO UPDATE SET created_at = excluded.created_at",
                params![scope, key, fingerprint, now],
            )
            .map_err(Error::catalog("idempotency"))?;
            KeyState::New
        }
    };
    tx.commit().map_err(Error::catalog("idempotency"))?;
    Ok(state)
}

pub fn finish_key(c: &Connection, scope: &str, key: &str, status: u16, body: &[u8]) -> Result<()> {
    c.execute(
        "UPDATE idempotency SET status = ?3, body = ?4 WHERE scope = ?1 AND key = ?2",
        params![scope, key, status, body],
    )
    .map_err(Error::catalog("idempotency"))?;
    Ok(())
}

pub fn drop_key(c: &Connection, scope: &str, key: &str) -> Result<()> {
    c.execute(
        "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND status IS NULL",
        params![scope, key],
    )
    .map_err(Error::catalog("idempotency"))?;
    Ok(())
}

pub fn expire_keys(c: &Connection, older_than: i64) -> Result<usize> {
    c.execute(
        "DELETE FROM idempotency WHERE created_at < ?1",
        [older_than],
    )
    .map_err(Error::catalog("idempotency"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let conn = Arc::try_unwrap(cat.conn)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap();
        (dir, conn)
    }

    fn seed(c: &Connection) {
        insert_user(
            c,
            &UserRow {
                id: "u1".into(),
                username: "ann".into(),
                password_hash: "x".into(),
                role: "creator".into(),
                created_at: 1,
            },
        )
        .unwrap();
        insert_video(
            c,
            &VideoRow {
                id: "v1".into(),
                owner_id: "u1".into(),
                title: "t".into(),
                description: String::new(),
                hashtags: vec!["a".into()],
                sound_id: None,
                visibility: "public".into(),
                state: "processing".into(),
                stage: "queued".into(),
                failure: None,
                source_key: "videos/v1/source".into(),
                source_name: "a.mp4".into(),
                ladder: None,
                created_at: 1,
                updated_at: 1,
            },
        )
        .unwrap();
    }

    #[test]
    fn a_job_is_leased_once_and_taken_over_when_its_lease_runs_out() {
        let (_d, mut c) = catalog_conn();
        seed(&c);
        let id = enqueue(&c, "v1", 3).unwrap();
        let a = claim(&c, "a", Duration::from_millis(50)).unwrap().unwrap();
        assert_eq!((a.id, a.attempts), (id, 1));
        assert!(claim(&c, "b", Duration::from_secs(60)).unwrap().is_none());
        std::thread::sleep(Duration::from_millis(80));
        let b = claim(&c, "b", Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!((b.id, b.attempts), (id, 2));
        // The first owner lost it: it can neither renew nor publish.
        assert!(!renew(&c, id, "a", Duration::from_secs(1)).unwrap());
        assert!(!publish(&mut c, id, "a", "v1", "{}").unwrap());
        assert!(publish(&mut c, id, "b", "v1", "{}").unwrap());
        assert_eq!(video(&c, "v1").unwrap().unwrap().state, "ready");
    }

    #[test]
    fn a_deleted_video_is_never_published() {
        let (_d, mut c) = catalog_conn();
        seed(&c);
        let id = enqueue(&c, "v1", 3).unwrap();
        claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
        assert!(begin_delete(&mut c, "v1").unwrap());
        assert!(!renew(&c, id, "a", Duration::from_secs(1)).unwrap());
        assert!(!publish(&mut c, id, "a", "v1", "{}").unwrap());
        assert_eq!(video(&c, "v1").unwrap().unwrap().state, "deleting");
    }

    #[test]
    fn retries_and_failures() {
        let (_d, mut c) = catalog_conn();
        seed(&c);
        let id = enqueue(&c, "v1", 3).unwrap();
        claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
        let later = now_ms() + 60_000;
        assert!(settle(
            &mut c,
            id,
            "a",
            Settle::Retry {
                at: later,
                error: "disk".into()
            }
        )
        .unwrap());
        assert!(
            claim(&c, "a", Duration::from_secs(60)).unwrap().is_none(),
            "not due yet"
        );
        c.execute("UPDATE jobs SET run_after = 0", []).unwrap();
        claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
        assert!(settle(&mut c, id, "a", Settle::Failed("bad input".into())).unwrap());
        let v = video(&c, "v1").unwrap().unwrap();
        assert_eq!(
            (v.state.as_str(), v.failure.as_deref()),
            ("failed", Some("bad input"))
        );
    }

    #[test]
    fn idempotency_keys() {
        let (_d, mut c) = catalog_conn();
        let stale = Duration::from_secs(300);
        assert!(matches!(
            claim_key(&mut c, "s", "k", "f", stale).unwrap(),
            KeyState::New
        ));
        assert!(matches!(
            claim_key(&mut c, "s", "k", "f", stale).unwrap(),
            KeyState::InFlight
        ));
        assert!(matches!(
            claim_key(&mut c, "s", "k", "g", stale).unwrap(),
            KeyState::OtherRequest
        ));
        finish_key(&c, "s", "k", 201, b"{}").unwrap();
        match claim_key(&mut c, "s", "k", "f", stale).unwrap() {
            KeyState::Done { status, body, .. } => {
                assert_eq!((status, body), (201, b"{}".to_vec()))
            }
            KeyState::New | KeyState::InFlight | KeyState::OtherRequest => panic!("not replayed"),
        }
        assert!(matches!(
            claim_key(&mut c, "other", "k", "g", stale).unwrap(),
            KeyState::New
        ));
    }

    #[test]
    fn comments_in_one_millisecond_page_in_insertion_order() {
        let (_d, mut c) = catalog_conn();
        seed(&c);
        let mk = |id: &str, parent: Option<&str>| CommentRow {
            id: id.into(),
            video_id: "v1".into(),
            user_id: "u1".into(),
            username: String::new(),
            parent_id: parent.map(Into::into),
            body: id.into(),
            reply_count: 0,
            created_at: 1000,
            seq: 0,
        };
        // Ids sort opposite to insertion: order must not come from them.
        for id in ["c", "b", "a"] {
            insert_comment(&mut c, &mk(id, None)).unwrap();
        }
        for id in ["z", "y"] {
            insert_comment(&mut c, &mk(id, Some("c"))).unwrap();
        }
        let first = comments_page(&c, "v1", None, None, 2).unwrap();
        let ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "newest first");
        let rest = comments_page(&c, "v1", None, Some(first[1].seq), 2).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].id.as_str(), rest[0].reply_count), ("c", 2));
        let replies = comments_page(&c, "v1", Some("c"), None, 10).unwrap();
        let ids: Vec<&str> = replies.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["z", "y"], "oldest first");
    }

    #[test]
    fn paging_user_videos() {
        let (_d, c) = catalog_conn();
        seed(&c);
        let page = videos_of(&c, "u1", false, None, 10).unwrap();
        assert_eq!(page.len(), 1);
        assert!(videos_of(&c, "u1", true, None, 10).unwrap().is_empty());
        assert!(videos_of(&c, "u1", false, Some((1, "v1".into())), 10)
            .unwrap()
            .is_empty());
    }
}

// ------------------------------------------------------------------ feed

/// Ready public videos that have no embedding yet, oldest first.
pub fn unembedded_videos(c: &Connection, limit: u32) -> Result<Vec<VideoRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VIDEO_COLS} FROM videos v WHERE state = 'ready' AND visibility = 'public'
             AND NOT EXISTS (SELECT 1 FROM video_embeddings e WHERE e.video_id = v.id)
             ORDER BY updated_at LIMIT ?1"
        ))
        .map_err(Error::catalog("listing videos to embed"))?;
    let rows = st
        .query_map([limit], video_row)
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
            let blob: Vec<u8> = r.get(15)?;
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

/// `true` if the row changed (a repeated follow is not a second follow).
pub fn set_follow(c: &Connection, follower: &str, followee: &str, on: bool) -> Result<bool> {
    let n = if on {
        c.execute(
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
            params![follower, followee, now_ms()],
        )
    } else {
        c.execute(
            "DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2",
            params![follower, followee],
        )
    }
    .map_err(Error::catalog("updating a follow"))?;
    Ok(n == 1)
}

pub fn all_follows(c: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = c
        .prepare("SELECT follower_id, followee_id FROM follows")
        .map_err(Error::catalog("loading follows"))?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::catalog("loading follows"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading follows"))
}

pub fn set_interests(c: &Connection, user: &str, interests: &[String]) -> Result<()> {
    c.execute(
        "INSERT INTO interests (user_id, interests, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET interests = excluded.interests, updated_at = excluded.updated_at",
        params![user, serde_json::to_string(interests).unwrap_or_else(|_| "[]".into()), now_ms()],
    )
    .map_err(Error::catalog("storing interests"))?;
    Ok(())
}

pub fn all_interests(c: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let mut st = c
        .prepare("SELECT user_id, interests FROM interests")
        .map_err(Error::catalog("loading interests"))?;
    let rows = st
        .query_map([], |r| {
            let raw: String = r.get(1)?;
            Ok((r.get(0)?, serde_json::from_str(&raw).unwrap_or_default()))
        })
        .map_err(Error::catalog("loading interests"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading interests"))
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

// ------------------------------------------------------------- engagement

/// Likes and saves: one row per (video, user), so a repeat is not a second.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    Like,
    Save,
}

impl Flag {
    fn table(self) -> &'static str {
        match self {
            Self::Like => "likes",
            Self::Save => "saves",
        }
    }
}

/// `true` if the row changed.
pub fn set_flag(c: &Connection, flag: Flag, video: &str, user: &str, on: bool) -> Result<bool> {
    let t = flag.table();
    let n = if on {
        c.execute(
            &format!(
                "INSERT OR IGNORE INTO {t} (video_id, user_id, created_at) VALUES (?1, ?2, ?3)"
            ),
            params![video, user, now_ms()],
        )
    } else {
        c.execute(
            &format!("DELETE FROM {t} WHERE video_id = ?1 AND user_id = ?2"),
            params![video, user],
        )
    }
    .map_err(Error::catalog("updating a like or save"))?;
    Ok(n == 1)
}

/// (liked, saved) of `user` on `video`.
pub fn viewer_flags(c: &Connection, video: &str, user: &str) -> Result<(bool, bool)> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM likes WHERE video_id = ?1 AND user_id = ?2),
                EXISTS (SELECT 1 FROM saves WHERE video_id = ?1 AND user_id = ?2)",
        params![video, user],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(Error::catalog("reading engagement"))
}

pub fn insert_share(c: &Connection, video: &str, user: &str, channel: &str) -> Result<i64> {
    c.execute(
        "INSERT INTO shares (video_id, user_id, channel, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![video, user, channel, now_ms()],
    )
    .map_err(Error::catalog("recording a share"))?;
    Ok(c.last_insert_rowid())
}

pub fn share_channels(c: &Connection, video: &str) -> Result<Vec<(String, u64)>> {
    let mut st = c
        .prepare_cached(
            "SELECT channel, COUNT(*) FROM shares WHERE video_id = ?1 GROUP BY channel ORDER BY channel",
        )
        .map_err(Error::catalog("reading shares"))?;
    let rows = st
        .query_map([video], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .map_err(Error::catalog("reading shares"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading shares"))
}

#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: String,
    pub video_id: String,
    pub user_id: String,
    pub username: String,
    pub parent_id: Option<String>,
    pub body: String,
    pub reply_count: u64,
    pub created_at: i64,
    /// Position in insertion order (the page cursor).
    pub seq: i64,
}

const COMMENT_COLS: &str =
    "c.id, c.video_id, c.user_id, COALESCE(u.username, ''), c.parent_id, c.body, c.reply_count, c.created_at, c.rowid";

fn comment_row(r: &Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        id: r.get(0)?,
        video_id: r.get(1)?,
        user_id: r.get(2)?,
        username: r.get(3)?,
        parent_id: r.get(4)?,
        body: r.get(5)?,
        reply_count: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        seq: r.get(8)?,
    })
}

pub fn comment(c: &Connection, id: &str) -> Result<Option<CommentRow>> {
    c.query_row(
        &format!("SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id WHERE c.id = ?1"),
        [id],
        comment_row,
    )
    .optional()
    .map_err(Error::catalog("reading a comment"))
}

pub fn insert_comment(c: &mut Connection, row: &CommentRow) -> Result<()> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("adding a comment"))?;
    tx.execute(
        "INSERT INTO comments (id, video_id, user_id, parent_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![row.id, row.video_id, row.user_id, row.parent_id, row.body, row.created_at],
    )
    .map_err(Error::catalog("adding a comment"))?;
    if let Some(p) = &row.parent_id {
        tx.execute(
            "UPDATE comments SET reply_count = reply_count + 1 WHERE id = ?1",
            [p],
        )
        .map_err(Error::catalog("adding a comment"))?;
    }
    tx.commit().map_err(Error::catalog("adding a comment"))
}

/// Top-level comments newest first, or the replies to `parent` oldest first,
/// after the `seq` cursor.
pub fn comments_page(
    c: &Connection,
    video: &str,
    parent: Option<&str>,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<CommentRow>> {
    let sql = match parent {
        None => format!(
            "SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id
             WHERE c.video_id = ?1 AND c.parent_id IS NULL AND c.rowid < ?2
             ORDER BY c.rowid DESC LIMIT ?3"
        ),
        Some(_) => format!(
            "SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id
             WHERE c.parent_id = ?1 AND c.rowid > ?2
             ORDER BY c.rowid LIMIT ?3"
        ),
    };
    let mut st = c
        .prepare_cached(&sql)
        .map_err(Error::catalog("reading comments"))?;
    let rows = match parent {
        None => st.query_map(
            params![video, after.unwrap_or(i64::MAX), limit],
            comment_row,
        ),
        Some(p) => st.query_map(params![p, after.unwrap_or(0), limit], comment_row),
    }
    .map_err(Error::catalog("reading comments"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading comments"))
}

/// Followers (`followers = true`) or followees of `user`, newest first,
/// after the `(created_at, id)` cursor: (user id, username, since).
pub fn follows_page(
    c: &Connection,
    user: &str,
    followers: bool,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<(String, String, i64)>> {
    let (me, other) = if followers {
        ("followee_id", "follower_id")
    } else {
        ("follower_id", "followee_id")
    };
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT f.{other}, u.username, f.created_at FROM follows f JOIN users u ON u.id = f.{other}
             WHERE f.{me} = ?1 AND (f.created_at < ?2 OR (f.created_at = ?2 AND f.{other} < ?3) OR ?3 = '' AND f.created_at <= ?2)
             ORDER BY f.created_at DESC, f.{other} DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("reading follows"))?;
    let rows = st
        .query_map(params![user, at, id, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(Error::catalog("reading follows"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading follows"))
}

/// Published videos of `owner`.
pub fn ready_video_count(c: &Connection, owner: &str) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM videos WHERE owner_id = ?1 AND state = 'ready'",
        [owner],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(Error::catalog("counting videos"))
}

/// (followers, following) of `user`.
pub fn follow_counts(c: &Connection, user: &str) -> Result<(u64, u64)> {
    c.query_row(
        "SELECT (SELECT COUNT(*) FROM follows WHERE followee_id = ?1),
                (SELECT COUNT(*) FROM follows WHERE follower_id = ?1)",
        [user],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(Error::catalog("counting follows"))
}

/// The flushed counters of a video.
pub fn video_stats(c: &Connection, video: &str) -> Result<crate::hot::Counts> {
    c.query_row(
        "SELECT views, likes, comments, shares, saves FROM video_stats WHERE video_id = ?1",
        [video],
        |r| {
            Ok(crate::hot::Counts::from_values([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ]))
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
    .map_err(Error::catalog("reading counters"))
}

/// Applies a counter flush once: a flush id seen before is skipped (a
/// flush retried after a crash). Counters of deleted videos are dropped.
pub fn apply_counts(
    c: &mut Connection,
    flush_id: &str,
    counts: &std::collections::HashMap<String, crate::hot::Counts>,
) -> Result<bool> {
    let op = Error::catalog("flushing counters");
    let tx = c
        .transaction()
        .map_err(Error::catalog("flushing counters"))?;
    let fresh = tx
        .execute(
            "INSERT OR IGNORE INTO counter_flushes (id, applied_at) VALUES (?1, ?2)",
            params![flush_id, now_ms()],
        )
        .map_err(Error::catalog("flushing counters"))?
        == 1;
    if fresh {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO video_stats (video_id, views, likes, comments, shares, saves)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM videos WHERE id = ?1)
                 ON CONFLICT (video_id) DO UPDATE SET views = MAX(0, views + excluded.views),
                    likes = MAX(0, likes + excluded.likes), comments = MAX(0, comments + excluded.comments),
                    shares = MAX(0, shares + excluded.shares), saves = MAX(0, saves + excluded.saves)",
            )
            .map_err(Error::catalog("flushing counters"))?;
        for (video, d) in counts {
            let [v, l, cm, sh, sv] = d.values();
            st.execute(params![video, v.max(0), l, cm, sh, sv])
                .map_err(Error::catalog("flushing counters"))?;
        }
        drop(st);
        // Old flush ids are only needed while a crashed flush can come back.
        tx.execute(
            "DELETE FROM counter_flushes WHERE applied_at < ?1",
            params![now_ms() - 7 * 86_400_000],
        )
        .map_err(Error::catalog("flushing counters"))?;
    }
    tx.commit().map_err(op)?;
    Ok(fresh)
}

/// Recounts likes, comments, shares and saves of `videos` from their rows,
/// and sets views where `views` has the truth; returns the videos whose
/// counters were wrong.
pub fn reconcile_counts(
    c: &mut Connection,
    videos: &[String],
    views: &std::collections::HashMap<String, u64>,
) -> Result<usize> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("reconciling counters"))?;
    let mut fixed = 0;
    {
        let mut truth = tx
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM likes WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM comments WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM shares WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM saves WHERE video_id = ?1),
                        EXISTS (SELECT 1 FROM videos WHERE id = ?1)",
            )
            .map_err(Error::catalog("reconciling counters"))?;
        for v in videos {
            let (l, cm, sh, sv, exists): (i64, i64, i64, i64, bool) = truth
                .query_row([v], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(Error::catalog("reconciling counters"))?;
            if !exists {
                continue;
            }
            let now = video_stats(&tx, v)?;
            let views_now = views.get(v).map_or(now.views, |&n| n as i64);
            let want = crate::hot::Counts::from_values([views_now, l, cm, sh, sv]);
            if want != now {
                tx.execute(
                    "INSERT INTO video_stats (video_id, views, likes, comments, shares, saves)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (video_id) DO UPDATE SET views = excluded.views, likes = excluded.likes,
                        comments = excluded.comments, shares = excluded.shares, saves = excluded.saves",
                    params![v, want.views, l, cm, sh, sv],
                )
                .map_err(Error::catalog("reconciling counters"))?;
                fixed += 1;
            }
        }
    }
    tx.commit()
        .map_err(Error::catalog("reconciling counters"))?;
    Ok(fixed)
}
