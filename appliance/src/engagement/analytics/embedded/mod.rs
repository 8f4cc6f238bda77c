//! The embedded analytics store: a SQLite file of its own (`analytics.db`,
//! WAL), so that event ingest never queues behind catalog writes. Events are
//! appended (`schema` says why no index on them), each delivery in one
//! transaction with the hourly rollups it adds to, so they can never
//! disagree (`write`: how a retried delivery stores each event once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection};

mod schema;
mod write;

use super::{
    AnalyticsStore, Attempt, HourRow, PastImpression, PastWatch, Scope, VariantCounts, VideoHour,
};
use crate::engagement::events::Event;
use crate::error::{Error, Result};

/// Sources of the for-you pages the experiment counts (a following page,
/// or a following request's fallback, is in none of them).
pub(super) const FOR_YOU_SOURCES: &str = "'personalized', 'cold_start', 'trending_fallback'";

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
        let mut writer = open(path)?;
        // The rollup and viewer pages a delivery touches stay cached
        // between deliveries (SQLite's default is 2 MiB).
        writer
            .execute_batch("PRAGMA cache_size = -65536")
            .and_then(|()| schema::prepare(&mut writer))
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

    /// Every row `sql` selects, in chunks after the last rowid seen (`sql`
    /// selects the rowid first and takes it as `?1`), handed to `sink`;
    /// returns how many.
    async fn by_rowid<T: Send + 'static>(
        &self,
        sql: &'static str,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        sink: &mut (dyn FnMut(Vec<T>) + Send),
    ) -> Result<u64> {
        let mut after = 0i64;
        let mut total = 0u64;
        loop {
            let chunk = self
                .read(move |c| {
                    let mut st = c.prepare_cached(sql)?;
                    let rows =
                        st.query_map(params![after], |r| Ok((r.get::<_, i64>(0)?, row(r)?)))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let Some(last) = chunk.last() else {
                return Ok(total);
            };
            after = last.0;
            total += chunk.len() as u64;
            sink(chunk.into_iter().map(|(_, t)| t).collect());
        }
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

    async fn deliver(&self, events: &[Event], attempt: Attempt) -> Result<usize> {
        let events: Vec<Event> = super::distinct(events).into_iter().cloned().collect();
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || write::deliver(&mut conn.lock(), &events, attempt))
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
        self.by_rowid(
            "SELECT rowid, user_id, video_id, watch_ms, duration_ms, liked, shared, ts, completed
             FROM events WHERE kind = 'watch' AND rowid > ?1 ORDER BY rowid LIMIT 20000",
            |r| {
                Ok(PastWatch {
                    user: r.get(1)?,
                    video: r.get(2)?,
                    watch_ms: r.get(3)?,
                    duration_ms: r.get(4)?,
                    liked: r.get(5)?,
                    shared: r.get(6)?,
                    ts: r.get(7)?,
                    completed: r.get(8)?,
                })
            },
            sink,
        )
        .await
    }

    async fn impressions(&self, sink: &mut (dyn FnMut(Vec<PastImpression>) + Send)) -> Result<u64> {
        self.by_rowid(
            "SELECT rowid, user_id, video_id, position, ts, variant
             FROM impressions WHERE rowid > ?1 ORDER BY rowid LIMIT 20000",
            |r| {
                Ok(PastImpression {
                    user: r.get(1)?,
                    video: r.get(2)?,
                    position: r.get(3)?,
                    ts: r.get(4)?,
                    variant: r.get(5)?,
                })
            },
            sink,
        )
        .await
    }

    async fn experiment_counts(&self, experiment: &str) -> Result<Vec<VariantCounts>> {
        let name = experiment.to_owned();
        // The named experiment's for-you impressions (its index), and one
        // pass over the events to find what their viewers did with the
        // shown videos (no per-viewer index on events: it slowed every
        // insert); on a connection of its own, as it may take a while.
        self.read_apart(move |c| {
            // Per impression: was it followed by a watch, by a like? The
            // box's receive time of the watch against the box's time of the
            // showing (a client clock behind does not matter), in whole
            // seconds, as ClickHouse counts: followed when the latest one
            // was received in the showing's second or later.
            let mut st = c.prepare(&format!(
                "WITH shown AS MATERIALIZED (
                    SELECT variant, user_id, video_id, ts / 1000 AS at FROM impressions
                    WHERE experiment = ?1 AND source IN ({FOR_YOU_SOURCES})),
                 acted AS MATERIALIZED (
                    SELECT user_id, video_id,
                        MAX(CASE WHEN kind = 'watch' THEN COALESCE(received, ts) / 1000 END) AS watched,
                        MAX(CASE WHEN kind = 'like' THEN COALESCE(received, ts) / 1000 END) AS liked
                    FROM events
                    WHERE kind IN ('watch', 'like')
                        AND (user_id, video_id) IN (SELECT user_id, video_id FROM shown)
                    GROUP BY user_id, video_id),
                 -- An inner join, so that SQLite indexes one side for it
                 -- (a LEFT JOIN onto `acted` ran as a nested scan).
                 followed AS MATERIALIZED (
                    SELECT s.variant, SUM(a.watched >= s.at) AS watched,
                        SUM(a.liked >= s.at) AS liked
                    FROM acted a JOIN shown s ON s.user_id = a.user_id AND s.video_id = a.video_id
                    GROUP BY s.variant)
                 SELECT s.variant, COUNT(DISTINCT s.user_id), COUNT(*),
                    COALESCE((SELECT watched FROM followed f WHERE f.variant = s.variant), 0),
                    COALESCE((SELECT liked FROM followed f WHERE f.variant = s.variant), 0)
                 FROM shown s
                 GROUP BY s.variant ORDER BY s.variant"
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
                "WITH first AS MATERIALIZED (
                    SELECT user_id, video_id, variant, MIN(ts / 1000) AS at FROM impressions
                    WHERE experiment = ?1 AND source IN ({FOR_YOU_SOURCES})
                    GROUP BY user_id, video_id, variant),
                 watched AS MATERIALIZED (
                    SELECT user_id, video_id, completed, COALESCE(received, ts) / 1000 AS at
                    FROM events
                    WHERE kind = 'watch'
                        AND (user_id, video_id) IN (SELECT user_id, video_id FROM first))
                 SELECT f.variant, COUNT(*), COALESCE(SUM(w.completed), 0)
                 FROM watched w JOIN first f ON f.user_id = w.user_id AND f.video_id = w.video_id
                 WHERE w.at >= f.at
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
    use crate::engagement::events::Kind;

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

    async fn views(a: &Embedded) -> (u64, u64) {
        let t = Totals::of(&a.rollups(&Scope::Video("v".into()), 0).await.unwrap());
        let mut stored = 0u64;
        a.watch_history(&mut |c| stored += c.len() as u64)
            .await
            .unwrap();
        (t.views, stored)
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_between_insert_and_ack_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.db");
        let h = 1_700_000_000_000i64;
        let batch: Vec<Event> = (0..10)
            .map(|i| watch(&format!("e{i}"), "u1", "v", h + i, true))
            .collect();
        {
            let a = Embedded::open(&path).unwrap();
            assert_eq!(a.deliver(&batch[..4], Attempt::First).await.unwrap(), 4);
            // Stored, and then the process dies before the spool's cursor
            // moves past the next delivery.
            assert_eq!(a.deliver(&batch[4..7], Attempt::First).await.unwrap(), 3);
        }
        let a = Embedded::open(&path).unwrap();
        // The restarted shipper reads from the cursor, now further (more
        // was spooled meanwhile): only what the lost delivery lacked is new.
        assert_eq!(a.deliver(&batch[4..], Attempt::Retry).await.unwrap(), 3);
        assert_eq!(views(&a).await, (10, 10));
        // Its cursor write failed too: a retry of the retry adds nothing,
        // though the mark still points before the first attempt.
        assert_eq!(a.deliver(&batch[4..], Attempt::Retry).await.unwrap(), 0);
        assert_eq!(views(&a).await, (10, 10));
        // The next first delivery is inserted without a look.
        let next = [watch("e10", "u2", "v", h + 10, false)];
        assert_eq!(a.deliver(&next, Attempt::First).await.unwrap(), 1);
        assert_eq!(views(&a).await, (11, 11));
    }

    #[tokio::test]
    async fn a_retry_of_a_delivery_that_never_committed_stores_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let a = Embedded::open(&dir.path().join("analytics.db")).unwrap();
        let h = 1_700_000_000_000i64;
        let acked = [watch("a", "u1", "v", h, true)];
        assert_eq!(a.deliver(&acked, Attempt::First).await.unwrap(), 1);
        // The next delivery failed before its commit: the rows after the
        // mark are the acknowledged delivery's, none of the retry's.
        let batch = [
            watch("b", "u1", "v", h, true),
            watch("c", "u2", "v", h, false),
        ];
        assert_eq!(a.deliver(&batch, Attempt::Retry).await.unwrap(), 2);
        assert_eq!(views(&a).await, (3, 3));
        let viewers = a.unique_viewers(&Scope::Video("v".into()), 0).await;
        assert_eq!(viewers.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_store_from_before_impressions_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.db");
        {
            // The first release's events table, with one event in it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE events (event_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                    ts INTEGER NOT NULL, video_id TEXT NOT NULL, creator_id TEXT NOT NULL,
                    user_id TEXT NOT NULL, watch_ms INTEGER NOT NULL,
                    duration_ms INTEGER NOT NULL, completed INTEGER NOT NULL,
                    liked INTEGER NOT NULL, shared INTEGER NOT NULL, source TEXT NOT NULL,
                    channel TEXT NOT NULL)",
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
        // The old store's last row may be the old release's delivery in
        // doubt: a retry of it adds nothing.
        let mut old = watch("old", "u", "v", 1, true);
        old.received = 0;
        assert_eq!(a.ingest(&[old]).await.unwrap(), 0);
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
