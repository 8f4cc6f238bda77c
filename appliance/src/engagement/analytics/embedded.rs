//! The embedded analytics store: a SQLite file of its own (`analytics.db`,
//! WAL), so that event ingest never queues behind catalog writes. Events are
//! keyed by id (a repeat is ignored), and the hourly rollups are maintained
//! in the same transaction as the events they count, so they can never
//! disagree with them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection};

use super::{AnalyticsStore, HourRow, PastImpression, PastWatch, Scope, VariantCounts, VideoHour};
use crate::engagement::events::{Event, Kind};
use crate::error::{Error, Result};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT NOT NULL UNIQUE,
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
    channel     TEXT NOT NULL
);
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
-- What a viewer did with a video after it was shown: only the experiment
-- report reads it (one more B-tree entry per event stored).
CREATE INDEX IF NOT EXISTS events_user_video ON events(user_id, video_id);
"#;

/// Sources of the for-you pages the experiment counts (a following page,
/// or a following request's fallback, is in none of them).
pub(super) const FOR_YOU_SOURCES: &str = "'personalized', 'cold_start', 'trending_fallback'";

/// Columns added after the first release, with how they are added to an
/// existing store (SQLite has no `ADD COLUMN IF NOT EXISTS`).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // The box's receive time of the event, ms (rows stored before it
    // existed have NULL: read as `COALESCE(received, ts)`).
    ("events", "received", "INTEGER"),
];

fn add_columns(c: &Connection) -> rusqlite::Result<()> {
    for (table, column, ty) in ADDED_COLUMNS {
        let exists: bool = c.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |r| r.get(0),
        )?;
        if !exists {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

pub struct Embedded {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    Error::analytics(op)
}

fn open(path: &Path) -> Result<Connection> {
    let c = Connection::open(path).map_err(db("opening analytics.db"))?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
    )
    .map_err(db("configuring analytics.db"))?;
    Ok(c)
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Self> {
        let writer = open(path)?;
        writer
            .execute_batch(SCHEMA)
            .and_then(|()| add_columns(&writer))
            .map_err(db("creating the analytics schema"))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(open(path)?)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock()).map_err(db("reading analytics")))
            .await?
    }

    /// A long read on a connection of its own, opened for it and closed
    /// after (WAL readers do not block each other, nor the writer), so
    /// that it never holds up the shared reader: creator analytics,
    /// reconciliation, trending.
    async fn read_apart<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let c = open(&path)?;
            c.execute_batch("PRAGMA query_only = ON")
                .map_err(db("configuring analytics.db"))?;
            f(&c).map_err(db("reading analytics"))
        })
        .await?
    }
}

fn scope_filter(scope: &Scope) -> (&'static str, String) {
    match scope {
        Scope::Video(v) => ("video_id", v.clone()),
        Scope::Creator(c) => ("creator_id", c.clone()),
    }
}

#[async_trait]
impl AnalyticsStore for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn ingest(&self, events: &[Event]) -> Result<usize> {
        let events: Vec<Event> = super::distinct(events).into_iter().cloned().collect();
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || -> rusqlite::Result<usize> {
            let mut c = conn.lock();
            let tx = c.transaction()?;
            let mut fresh = 0;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, kind, ts, video_id, creator_id, user_id,
                        watch_ms, duration_ms, completed, liked, shared, source, channel, received)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?;
                let mut roll = tx.prepare_cached(
                    "INSERT INTO video_hourly (video_id, creator_id, hour, source, views, watch_ms,
                        completions, likes, comments, shares, saves)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (video_id, hour, source) DO UPDATE SET
                        views = views + excluded.views, watch_ms = watch_ms + excluded.watch_ms,
                        completions = completions + excluded.completions,
                        likes = likes + excluded.likes, comments = comments + excluded.comments,
                        shares = shares + excluded.shares, saves = saves + excluded.saves",
                )?;
                let mut viewer = tx.prepare_cached(
                    "INSERT OR IGNORE INTO video_hourly_viewers (video_id, hour, user_id, creator_id)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut shown = tx.prepare_cached(
                    "INSERT OR IGNORE INTO impressions (event_id, ts, user_id, video_id, creator_id,
                        position, source, ranker, variant, experiment)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                // Rollups are summed per (video, hour, source) and viewers
                // de-duplicated in memory first: one upsert per key, not
                // per event.
                let mut sums: HashMap<(&str, i64, &str), (&str, [i64; 7])> = HashMap::new();
                let mut viewers: std::collections::HashSet<(&str, i64, &str, &str)> =
                    std::collections::HashSet::new();
                for e in &events {
                    if e.kind == Kind::Impression {
                        // Their own table: no rollup, viewer row or view.
                        let s = e.shown.clone().unwrap_or_default();
                        fresh += shown.execute(params![
                            e.id, e.ts, e.user, e.video, e.creator, s.position, e.source,
                            s.ranker, s.variant, s.experiment
                        ])?;
                        continue;
                    }
                    let n = ins.execute(params![
                        e.id,
                        e.kind.as_str(),
                        e.ts,
                        e.video,
                        e.creator,
                        e.user,
                        e.watch_ms,
                        e.duration_ms,
                        e.completed,
                        e.liked,
                        e.shared,
                        e.source,
                        e.channel,
                        e.received
                    ])?;
                    if n == 0 {
                        continue;
                    }
                    fresh += 1;
                    let watch = e.kind == Kind::Watch;
                    let [likes, comments, shares, saves] = e.kind.engagement();
                    let row = &mut sums
                        .entry((e.video.as_str(), e.hour(), e.source.as_str()))
                        .or_insert((e.creator.as_str(), [0; 7]))
                        .1;
                    let add = [
                        i64::from(watch),
                        if watch { i64::from(e.watch_ms) } else { 0 },
                        i64::from(watch && e.completed),
                        likes,
                        comments,
                        shares,
                        saves,
                    ];
                    row.iter_mut().zip(add).for_each(|(a, b)| *a += b);
                    if watch {
                        viewers.insert((e.video.as_str(), e.hour(), e.user.as_str(), e.creator.as_str()));
                    }
                }
                for ((video, hour, source), (creator, v)) in sums {
                    roll.execute(params![video, creator, hour, source, v[0], v[1], v[2], v[3], v[4], v[5], v[6]])?;
                }
                for (video, hour, user, creator) in viewers {
                    viewer.execute(params![video, hour, user, creator])?;
                }
            }
            tx.commit()?;
            Ok(fresh)
        })
        .await?
        .map_err(db("storing events"))
    }

    async fn rollups(&self, scope: &Scope, since: i64) -> Result<Vec<HourRow>> {
        let (col, id) = scope_filter(scope);
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT hour, source, SUM(views), SUM(watch_ms), SUM(completions), SUM(likes),
                        SUM(comments), SUM(shares), SUM(saves)
                 FROM video_hourly WHERE {col} = ?1 AND hour >= ?2
                 GROUP BY hour, source ORDER BY hour, source"
            ))?;
            let rows = st.query_map(params![id, since], |r| {
                Ok(HourRow {
                    hour: r.get(0)?,
                    source: r.get(1)?,
                    views: r.get::<_, i64>(2)? as u64,
                    watch_ms: r.get::<_, i64>(3)? as u64,
                    completions: r.get::<_, i64>(4)? as u64,
                    likes: r.get(5)?,
                    comments: r.get(6)?,
                    shares: r.get(7)?,
                    saves: r.get(8)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn unique_viewers(&self, scope: &Scope, since: i64) -> Result<u64> {
        let (col, id) = scope_filter(scope);
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT COUNT(DISTINCT user_id) FROM video_hourly_viewers
                     WHERE {col} = ?1 AND hour >= ?2"
                ),
                params![id, since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
        .await
    }

    async fn activity(&self, since: i64) -> Result<Vec<VideoHour>> {
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT video_id, hour, SUM(views), SUM(completions), SUM(shares), SUM(likes)
                 FROM video_hourly WHERE hour >= ?1 GROUP BY video_id, hour",
            )?;
            let rows = st.query_map(params![since], |r| {
                Ok(VideoHour {
                    video: r.get(0)?,
                    hour: r.get(1)?,
                    views: r.get::<_, i64>(2)? as u64,
                    completions: r.get::<_, i64>(3)? as u64,
                    shares: r.get(4)?,
                    likes: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn total_views(&self, videos: &[String]) -> Result<HashMap<String, u64>> {
        let videos = videos.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT COALESCE(SUM(views), 0) FROM video_hourly WHERE video_id = ?1",
            )?;
            let mut out = HashMap::new();
            for v in videos {
                let n: i64 = st.query_row(params![v], |r| r.get(0))?;
                if n > 0 {
                    out.insert(v, n as u64);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn watch_history(&self, sink: &mut (dyn FnMut(Vec<PastWatch>) + Send)) -> Result<u64> {
        let mut after = 0i64;
        let mut total = 0u64;
        loop {
            let chunk = self
                .read(move |c| {
                    let mut st = c.prepare_cached(
                        "SELECT rowid, user_id, video_id, watch_ms, duration_ms, liked, shared, ts, completed
                         FROM events WHERE kind = 'watch' AND rowid > ?1 ORDER BY rowid LIMIT 20000",
                    )?;
                    let rows = st.query_map(params![after], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            PastWatch {
                                user: r.get(1)?,
                                video: r.get(2)?,
                                watch_ms: r.get(3)?,
                                duration_ms: r.get(4)?,
                                liked: r.get(5)?,
                                shared: r.get(6)?,
                                ts: r.get(7)?,
                                completed: r.get(8)?,
                            },
                        ))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let Some(last) = chunk.last() else {
                return Ok(total);
            };
            after = last.0;
            total += chunk.len() as u64;
            sink(chunk.into_iter().map(|(_, w)| w).collect());
        }
    }

    async fn impressions(&self, sink: &mut (dyn FnMut(Vec<PastImpression>) + Send)) -> Result<u64> {
        let mut after = 0i64;
        let mut total = 0u64;
        loop {
            let chunk = self
                .read(move |c| {
                    let mut st = c.prepare_cached(
                        "SELECT rowid, user_id, video_id, position, ts, variant
                         FROM impressions WHERE rowid > ?1 ORDER BY rowid LIMIT 20000",
                    )?;
                    let rows = st.query_map(params![after], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            PastImpression {
                                user: r.get(1)?,
                                video: r.get(2)?,
                                position: r.get(3)?,
                                ts: r.get(4)?,
                                variant: r.get(5)?,
                            },
                        ))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let Some(last) = chunk.last() else {
                return Ok(total);
            };
            after = last.0;
            total += chunk.len() as u64;
            sink(chunk.into_iter().map(|(_, i)| i).collect());
        }
    }

    async fn experiment_counts(&self, experiment: &str) -> Result<Vec<VariantCounts>> {
        let name = experiment.to_owned();
        // Only the named experiment's for-you impressions (its index), each
        // looked up in `events(user_id, video_id)`; on a connection of its
        // own, as it may take a while on a big store.
        self.read_apart(move |c| {
            // Per impression: was it followed by a watch, by a like? The
            // box's receive time of the watch against the box's time of the
            // showing (a client clock behind does not matter), in whole
            // seconds, as ClickHouse counts.
            let mut st = c.prepare(&format!(
                "SELECT i.variant, COUNT(DISTINCT i.user_id), COUNT(*),
                    SUM(EXISTS (SELECT 1 FROM events e WHERE e.user_id = i.user_id
                        AND e.video_id = i.video_id AND e.kind = 'watch'
                        AND COALESCE(e.received, e.ts) / 1000 >= i.ts / 1000)),
                    SUM(EXISTS (SELECT 1 FROM events e WHERE e.user_id = i.user_id
                        AND e.video_id = i.video_id AND e.kind = 'like'
                        AND COALESCE(e.received, e.ts) / 1000 >= i.ts / 1000))
                 FROM impressions i
                 WHERE i.experiment = ?1 AND i.source IN ({FOR_YOU_SOURCES})
                 GROUP BY i.variant ORDER BY i.variant"
            ))?;
            let mut out: Vec<VariantCounts> = st
                .query_map(params![name], |r| {
                    Ok(VariantCounts {
                        variant: r.get(0)?,
                        viewers: r.get::<_, i64>(1)? as u64,
                        impressions: r.get::<_, i64>(2)? as u64,
                        watched: r.get::<_, i64>(3)? as u64,
                        liked: r.get::<_, i64>(4)? as u64,
                        ..VariantCounts::default()
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            // Per watch of a shown video: received at or after its first
            // showing.
            let mut st = c.prepare(&format!(
                "SELECT f.variant, COUNT(*), COALESCE(SUM(e.completed), 0)
                 FROM (SELECT user_id, video_id, variant, MIN(ts / 1000) AS first
                       FROM impressions
                       WHERE experiment = ?1 AND source IN ({FOR_YOU_SOURCES})
                       GROUP BY user_id, video_id, variant) f
                 JOIN events e ON e.user_id = f.user_id AND e.video_id = f.video_id
                     AND e.kind = 'watch' AND COALESCE(e.received, e.ts) / 1000 >= f.first
                 GROUP BY f.variant"
            ))?;
            let watches = st.query_map(params![name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            for w in watches {
                let (variant, n, done) = w?;
                if let Some(v) = out.iter_mut().find(|v| v.variant == variant) {
                    v.watches = n;
                    v.completed = done;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        let path = self.path.display().to_string();
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
            .map_err(|e| Error::Task(format!("analytics store {path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engagement::analytics::Totals;

    fn watch(id: &str, user: &str, video: &str, ts: i64, completed: bool) -> Event {
        let mut e = Event::action(Kind::Watch, id.into(), video, "creator", user);
        e.ts = ts;
        e.received = ts;
        e.watch_ms = 1000;
        e.duration_ms = 2000;
        e.completed = completed;
        e.source = "fyp".into();
        e
    }

    #[tokio::test]
    async fn repeats_are_stored_once_and_rollups_match_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let a = Embedded::open(&dir.path().join("analytics.db")).unwrap();
        let h = 1_700_000_000_000i64;
        let batch = vec![
            watch("1", "u1", "v", h, true),
            watch("2", "u2", "v", h + 1000, false),
            watch("2", "u2", "v", h + 1000, false),
            watch("3", "u1", "v", h + 3_600_000, true),
            Event::action(Kind::Like, "4".into(), "v", "creator", "u3"),
        ];
        assert_eq!(a.ingest(&batch).await.unwrap(), 4);
        assert_eq!(
            a.ingest(&batch).await.unwrap(),
            0,
            "a retried batch adds nothing"
        );
        let rows = a.rollups(&Scope::Video("v".into()), 0).await.unwrap();
        let t = Totals::of(&rows);
        assert_eq!(
            (t.views, t.completions, t.watch_ms, t.likes),
            (3, 2, 3000, 1)
        );
        assert_eq!(
            a.unique_viewers(&Scope::Video("v".into()), 0)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            a.unique_viewers(&Scope::Creator("creator".into()), 0)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            a.total_views(&["v".into(), "w".into()]).await.unwrap()["v"],
            3
        );
        let mut seen = 0;
        a.watch_history(&mut |c| seen += c.len()).await.unwrap();
        assert_eq!(seen, 3);
    }

    #[tokio::test]
    async fn a_store_from_before_impressions_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.db");
        {
            // The first release's events table, with one event in it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                &SCHEMA[..SCHEMA
                    .find("CREATE TABLE IF NOT EXISTS video_hourly")
                    .unwrap()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO events VALUES ('old', 'watch', 1, 'v', 'c', 'u', 1, 2, 1, 0, 0, 'fyp', '')",
                [],
            )
            .unwrap();
        }
        let a = Embedded::open(&path).unwrap();
        drop(a);
        // Opening again finds the added column there already.
        let a = Embedded::open(&path).unwrap();
        let e = shown("i1", "u", "v", 5, "control", "exp");
        assert_eq!(a.ingest(&[e]).await.unwrap(), 1);
        let mut watches = 0;
        a.watch_history(&mut |c| watches += c.len()).await.unwrap();
        assert_eq!(watches, 1, "what the old store held is kept");
        let counts = &a.experiment_counts("exp").await.unwrap()[0];
        // The old watch has no receive time: its own time stands in (same
        // second as the showing).
        assert_eq!((counts.impressions, counts.watched), (1, 1));
    }

    fn shown(id: &str, user: &str, video: &str, ts: i64, variant: &str, exp: &str) -> Event {
        shown_on("personalized", id, user, video, ts, variant, exp)
    }

    fn shown_on(
        source: &str,
        id: &str,
        user: &str,
        video: &str,
        ts: i64,
        variant: &str,
        exp: &str,
    ) -> Event {
        let s = crate::engagement::Shown {
            position: 3,
            ranker: "formula".into(),
            variant: variant.into(),
            experiment: exp.into(),
        };
        Event::impression(id.into(), user, video, "creator", ts, source, s)
    }

    #[tokio::test]
    async fn impressions_are_no_views_and_the_experiment_recount_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = Embedded::open(&dir.path().join("analytics.db")).unwrap();
        let t = 1_700_000_000_000i64;
        let s = 1000;
        let mut like = Event::action(Kind::Like, "l1".into(), "v1", "creator", "u2");
        like.ts = t + 3 * s;
        like.received = like.ts;
        // Stamped by a client clock a minute behind, received after the
        // showing: it follows it.
        let mut late = watch("w6", "u2", "v1", t - 60 * s, true);
        late.received = t + 4 * s;
        let batch = vec![
            // u1 (control): v1 twice (two sessions), v2 once.
            shown("i1", "u1", "v1", t, "control", "exp"),
            shown("i2", "u1", "v2", t, "control", "exp"),
            shown("i3", "u1", "v1", t + 10 * s, "control", "exp"),
            // u2 (candidate): v1, then v3.
            shown("i4", "u2", "v1", t, "candidate", "exp"),
            shown("i5", "u2", "v3", t + 5 * s, "candidate", "exp"),
            // Another experiment's impression counts in neither.
            shown("i6", "u2", "v1", t, "control", "other"),
            watch("w1", "u1", "v1", t + 2 * s, true),
            watch("w2", "u1", "v1", t + 20 * s, false),
            // Before the showing: does not follow it.
            watch("w3", "u1", "v2", t - 5 * s, true),
            // Never shown.
            watch("w4", "u1", "v9", t + s, true),
            watch("w5", "u2", "v3", t + s, true),
            like,
            late,
            // Following pages (even one tagged by an older release) and a
            // following request's fallback are not the experiment's.
            shown_on("following", "i7", "u2", "v2", t, "candidate", "exp"),
            shown_on("following_fallback", "i8", "u3", "v1", t, "control", ""),
        ];
        assert_eq!(a.ingest(&batch).await.unwrap(), 15);
        assert_eq!(
            a.ingest(&batch).await.unwrap(),
            0,
            "impressions too are stored once"
        );
        let views = a.total_views(&["v1".into(), "v3".into()]).await.unwrap();
        assert_eq!(
            (views["v1"], views["v3"]),
            (3, 1),
            "an impression is not a view"
        );
        let mut watches = 0;
        a.watch_history(&mut |c| watches += c.len()).await.unwrap();
        assert_eq!(watches, 6);
        let mut back = Vec::new();
        assert_eq!(a.impressions(&mut |c| back.extend(c)).await.unwrap(), 8);
        assert_eq!(back[4].variant, "candidate");
        assert_eq!((back[4].position, back[4].ts), (3, t + 5 * s));

        let counts = a.experiment_counts("exp").await.unwrap();
        let control = VariantCounts {
            variant: "control".into(),
            viewers: 1,
            impressions: 3,
            watched: 2,
            liked: 0,
            watches: 2,
            completed: 1,
        };
        let candidate = VariantCounts {
            variant: "candidate".into(),
            viewers: 1,
            impressions: 2,
            watched: 1,
            liked: 1,
            watches: 1,
            completed: 1,
        };
        assert_eq!(counts, [candidate, control]);
        assert!(a.experiment_counts("none").await.unwrap().is_empty());
        assert!(
            a.experiment_counts("").await.unwrap().is_empty(),
            "a following fallback is no for-you page"
        );
    }
}
