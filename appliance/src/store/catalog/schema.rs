//! The catalog's schema and its migrations (`PRAGMA user_version`): a
//! fresh file gets every version at once, an older one the versions it
//! lacks, a newer one is refused.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

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

/// Version 4: live channels. `url` holds the camera's credentials (the
/// catalog file is the box's secret store, mode 0600 like the data dir);
/// `desired` is what a restart of the box brings back (`running` channels
/// are started again).
const SCHEMA_V4: &str = r#"
CREATE TABLE live_channels (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    rungs       TEXT NOT NULL,
    record      INTEGER NOT NULL,
    transport   TEXT NOT NULL,
    desired     TEXT NOT NULL,
    recordings  TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    stopped_at  INTEGER
);
CREATE INDEX live_channels_owner ON live_channels(owner_id, created_at);
"#;

/// Version 5: videos by last update, so the feed's sweep for videos to
/// embed reads what changed since its last sweep instead of the catalog.
const SCHEMA_V5: &str = r#"
CREATE INDEX videos_updated ON videos(updated_at);
"#;

/// Version 6: webhooks and notifications. A delivery row is written in
/// the transaction that makes its event happen (or before the event is
/// acknowledged), so a crash loses none; `(webhook_id, event_id)` is
/// unique, so an event is queued once per endpoint however often it is
/// announced. Notifications page by id (insertion order).
const SCHEMA_V6: &str = r#"
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,          -- JSON array of event names
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id    TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    event         TEXT NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL,       -- pending | delivered | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    last_status   INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries(webhook_id, id);
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,          -- follower | reply | likes | video_ready | video_failed
    actor_id   TEXT,
    video_id   TEXT,
    comment_id TEXT,
    body       TEXT NOT NULL,          -- JSON: what the kind needs to be shown
    dedupe     TEXT,                   -- one notification per key (a like milestone)
    created_at INTEGER NOT NULL,
    read_at    INTEGER,
    UNIQUE (user_id, dedupe)
);
CREATE INDEX notifications_user ON notifications(user_id, id);
CREATE INDEX notifications_unread ON notifications(user_id, read_at);
"#;

/// Version 7: webhook delivery leases and the attempt log. A delivery is
/// claimed by one process at a time (`lease_owner`; `next_attempt` is the
/// lease's end while it is held, so a crashed sender's delivery comes due
/// again); `retry_until` ends its automatic retries (0: the configured
/// window from `created_at`, which the outbox cannot know) and `round_start` is
/// the attempt count when the current round (the first, or a manual
/// redelivery) began, which the backoff counts from. Each POST is one
/// `webhook_attempts` row, written when it starts (an attempt whose
/// process died stays without an outcome).
const SCHEMA_V7: &str = r#"
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN retry_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN round_start INTEGER NOT NULL DEFAULT 0;
CREATE TABLE webhook_attempts (
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER,               -- NULL: in flight, or its process died
    status      INTEGER,               -- the receiver's HTTP status, if it answered
    error       TEXT,
    manual      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (delivery_id, n)
);
CREATE INDEX webhooks_created ON webhooks(created_at, id);
"#;

/// Version 8: tus uploads. A tus upload is an `uploads` row like any
/// other, plus what its creation said that `complete` will need when the
/// last byte arrives (the video's metadata, as JSON) and the
/// `Upload-Metadata` header as sent (`HEAD` returns it). Its bytes are
/// `upload_chunks` rows: full chunks, then at most one partial chunk whose
/// row grows with each `PATCH` (see `videos::tus`).
const SCHEMA_V8: &str = r#"
CREATE TABLE tus_uploads (
    upload_id TEXT PRIMARY KEY REFERENCES uploads(id) ON DELETE CASCADE,
    meta      TEXT NOT NULL,           -- JSON: title, description, hashtags, soundId, visibility
    metadata  TEXT                     -- Upload-Metadata as sent
);
"#;

/// Version 9: sounds and audio fingerprints. A sound is a catalog entity
/// made from a video's original audio or an admin's reference track; its
/// fingerprint (Chromaprint items, little-endian `u32`s) is what uploads'
/// audio is matched against (`sounds::index`, rebuilt from these rows at
/// start). `reference_audio` is the copyright library (`policy` block |
/// flag | allow); `audio_matches` records each reference an upload's audio
/// matched, for review (`GET /ops/flags`).
const SCHEMA_V9: &str = r#"
CREATE TABLE sounds (
    id              TEXT PRIMARY KEY,
    title           TEXT NOT NULL,
    owner_id        TEXT,                -- the creator whose original audio it is
    origin_video_id TEXT,                -- the video it was first heard in
    duration_ms     INTEGER NOT NULL,
    fingerprint     BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX sounds_created ON sounds(created_at DESC, id DESC);
CREATE INDEX videos_sound ON videos(sound_id, created_at DESC, id DESC);
CREATE TABLE reference_audio (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    policy      TEXT NOT NULL,           -- block | flag | allow
    duration_ms INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    created_by  TEXT,
    created_at  INTEGER NOT NULL
);
CREATE TABLE audio_matches (
    video_id            TEXT NOT NULL,
    reference_id        TEXT NOT NULL REFERENCES reference_audio(id) ON DELETE CASCADE,
    policy              TEXT NOT NULL,   -- the reference's policy when matched
    offset_ms           INTEGER NOT NULL,-- where in the upload the match starts
    reference_offset_ms INTEGER NOT NULL,-- where in the reference it starts
    duration_ms         INTEGER NOT NULL,
    confidence          REAL NOT NULL,   -- 0–1
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (video_id, reference_id)
);
CREATE INDEX audio_matches_created ON audio_matches(created_at DESC, video_id);
"#;

/// Version 10: remixes and edits. A duet or stitch is an ordinary video
/// whose `remix` (JSON: kind duet | stitch, originalId, clipStart,
/// clipEnd) links it to its original; an original says whether it may be
/// remixed. `speed` is the playback rate the upload was edited to (0.5, 1,
/// 2 or 3).
const SCHEMA_V10: &str = r#"
ALTER TABLE videos ADD COLUMN duet_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE videos ADD COLUMN stitch_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE videos ADD COLUMN remix TEXT;
ALTER TABLE videos ADD COLUMN remix_of TEXT;
ALTER TABLE videos ADD COLUMN speed REAL NOT NULL DEFAULT 1;
CREATE INDEX videos_remix_of ON videos(remix_of, created_at DESC, id DESC);
"#;

/// Every step from an empty file, in order: a file at version `n` has had
/// the first `n` applied. A new version appends its step here.
pub(super) const STEPS: [&str; 10] = [
    SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V9,
    SCHEMA_V10,
];
const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// Brings the file at `path` to this binary's schema version, every
/// missing step in one transaction.
pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(Error::catalog("reading the schema version"))?;
    match version {
        SCHEMA_VERSION => {}
        v @ 0..SCHEMA_VERSION => {
            let steps = STEPS[v as usize..].concat();
            conn.execute_batch(&format!(
                "BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(Error::catalog(if v == 0 {
                "creating the schema"
            } else {
                "migrating the schema"
            }))?
        }
        newer => {
            return Err(Error::Config(format!(
                "{} has schema version {newer}, newer than this binary's {SCHEMA_VERSION}",
                path.display()
            )))
        }
    }
    Ok(())
}
