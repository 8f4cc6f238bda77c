//! The embedded store's schema, and how an older `analytics.db` is brought
//! up to it at open.
//!
//! The event log has no index on a random key: an index on the event id
//! (the first release's `UNIQUE`) or on (user, video) puts each insert on a
//! random B-tree page, which SQLite then reads and rewrites into the WAL —
//! a page per event, which held shipping to ~35k events/s. Events are
//! appended in rowid order instead; a delivery that may repeat the
//! previous one looks up only that delivery's rows (`last_delivery`, see
//! `write`).

use rusqlite::{params, Connection};

use super::super::LARGEST_DELIVERY;

/// The event log's columns (`received`, the box's receive time in ms, was
/// added later: older rows hold NULL, read as `COALESCE(received, ts)`).
const EVENT_COLUMNS: &str = "
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ts          INTEGER NOT NULL,        -- ms
    video_id    TEXT NOT NULL,
    creator_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    watch_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    completed   INTEGER NOT NULL,
    liked       INTEGER NOT NULL,
    shared      INTEGER NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    received    INTEGER";

/// Everything but the event log.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS video_hourly (
    video_id    TEXT NOT NULL,
    creator_id  TEXT NOT NULL,
    hour        INTEGER NOT NULL,        -- unix seconds
    source      TEXT NOT NULL,
    views       INTEGER NOT NULL DEFAULT 0,
    watch_ms    INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    likes       INTEGER NOT NULL DEFAULT 0,
    comments    INTEGER NOT NULL DEFAULT 0,
    shares      INTEGER NOT NULL DEFAULT 0,
    saves       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (video_id, hour, source)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS video_hourly_creator ON video_hourly(creator_id, hour);
CREATE INDEX IF NOT EXISTS video_hourly_hour ON video_hourly(hour);
CREATE TABLE IF NOT EXISTS video_hourly_viewers (
    video_id   TEXT NOT NULL,
    hour       INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    PRIMARY KEY (video_id, hour, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS viewers_creator ON video_hourly_viewers(creator_id, hour, user_id);
CREATE TABLE IF NOT EXISTS impressions (
    event_id    TEXT NOT NULL UNIQUE,
    ts          INTEGER NOT NULL,        -- ms
    user_id     TEXT NOT NULL,
    video_id    TEXT NOT NULL,
    creator_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,
    source      TEXT NOT NULL,
    ranker      TEXT NOT NULL,
    variant     TEXT NOT NULL,
    experiment  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_experiment
    ON impressions(experiment, user_id, video_id, ts);
-- The rows of `events` after `events_after` came from the last delivery
-- shipped for the first time and the retries since (one row, id 0).
CREATE TABLE IF NOT EXISTS last_delivery (
    id           INTEGER PRIMARY KEY CHECK (id = 0),
    events_after INTEGER NOT NULL
);
"#;

/// Columns added after the first release, with how they are added to an
/// existing store (SQLite has no `ADD COLUMN IF NOT EXISTS`).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("events", "received", "INTEGER")];

/// Creates the schema or upgrades an older one, in one transaction.
pub(super) fn prepare(c: &mut Connection) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS events ({EVENT_COLUMNS});"
    ))?;
    tx.execute_batch(SCHEMA)?;
    for (table, column, ty) in ADDED_COLUMNS {
        let exists: bool = tx.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |r| r.get(0),
        )?;
        if !exists {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    // Indexes on random keys that earlier releases kept: the id's UNIQUE
    // constraint (only a rebuild drops it) and (user, video), which only
    // the experiment report used (it now reads the events once).
    tx.execute_batch("DROP INDEX IF EXISTS events_user_video")?;
    let unique: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_index_list('events') WHERE origin = 'u'",
        [],
        |r| r.get(0),
    )?;
    if unique {
        tracing::info!("analytics.db: rebuilding events without the per-id index (once)");
        tx.execute_batch(&format!("CREATE TABLE events_rebuilt ({EVENT_COLUMNS});"))?;
        tx.execute_batch(
            "INSERT INTO events_rebuilt (event_id, kind, ts, video_id, creator_id, user_id,
                watch_ms, duration_ms, completed, liked, shared, source, channel, received)
             SELECT event_id, kind, ts, video_id, creator_id, user_id, watch_ms, duration_ms,
                completed, liked, shared, source, channel, received
             FROM events ORDER BY rowid;
             DROP TABLE events;
             ALTER TABLE events_rebuilt RENAME TO events;",
        )?;
    }
    // A store that never recorded a delivery (new, or from before
    // `last_delivery`): the previous release's last delivery, if its
    // outcome was in doubt, is among the last `LARGEST_DELIVERY` rows.
    tx.execute(
        "INSERT OR IGNORE INTO last_delivery (id, events_after)
         SELECT 0, MAX(COALESCE(MAX(rowid), 0) - ?1, 0) FROM events",
        params![LARGEST_DELIVERY as i64],
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuilt_events_table_has_every_column_and_no_index() {
        let mut c = Connection::open_in_memory().unwrap();
        // The first release's table, unique ids and all.
        c.execute_batch(
            "CREATE TABLE events (event_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                ts INTEGER NOT NULL, video_id TEXT NOT NULL, creator_id TEXT NOT NULL,
                user_id TEXT NOT NULL, watch_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
                completed INTEGER NOT NULL, liked INTEGER NOT NULL, shared INTEGER NOT NULL,
                source TEXT NOT NULL, channel TEXT NOT NULL);
             CREATE INDEX events_user_video ON events(user_id, video_id);
             INSERT INTO events VALUES ('a', 'watch', 1, 'v', 'c', 'u', 1, 2, 1, 0, 0, 'fyp', '');
             INSERT INTO events VALUES ('b', 'like', 2, 'v', 'c', 'u', 0, 0, 0, 0, 0, '', '');",
        )
        .unwrap();
        prepare(&mut c).unwrap();
        prepare(&mut c).unwrap();
        let indexes: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM pragma_index_list('events')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
        let cols: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('events')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(cols.len(), 14);
        assert_eq!(cols.last().map(String::as_str), Some("received"));
        let ids: Vec<String> = c
            .prepare("SELECT event_id FROM events ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, ["a", "b"], "rows kept, in order");
        let after: i64 = c
            .query_row("SELECT events_after FROM last_delivery", [], |r| r.get(0))
            .unwrap();
        assert_eq!(after, 0, "both rows may be an unacknowledged delivery");
    }
}
