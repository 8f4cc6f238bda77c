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

use super::{AnalyticsStore, HourRow, PastWatch, Scope, VideoHour};
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
"#;

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
                        watch_ms, duration_ms, completed, liked, shared, source, channel)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                // Rollups are summed per (video, hour, source) and viewers
                // de-duplicated in memory first: one upsert per key, not
                // per event.
                let mut sums: HashMap<(&str, i64, &str), (&str, [i64; 7])> = HashMap::new();
                let mut viewers: std::collections::HashSet<(&str, i64, &str, &str)> =
                    std::collections::HashSet::new();
                for e in &events {
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
                        e.channel
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
}
