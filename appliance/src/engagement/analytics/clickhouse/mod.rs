//! ClickHouse analytics, through the official `clickhouse` crate over HTTP
//! with RowBinary. The SQL runs on Debian's ClickHouse 18.16 (what the test
//! suite starts) as well as on current releases, which rules out TTL,
//! LowCardinality, DateTime64, async inserts, window functions and
//! SimpleAggregateFunction; ARCHITECTURE.md says what production turns on.
//!
//! Tables: `events` (raw, MergeTree by month, ordered for per-creator and
//! per-video reads); `event_ids` (MergeTree ordered by id, fed by a
//! materialized view: the shipper's de-duplication lookup); `video_hourly`
//! (AggregatingMergeTree per video, hour and traffic source, fed by a
//! materialized view); `impressions` (what feeds showed, ordered by
//! experiment, viewer and video; its ids also feed `event_ids`, and no
//! rollup reads it).
//!
//! Exactly once: plain MergeTree does not de-duplicate retried inserts, and
//! the views would count a repeat twice, so before inserting a batch that
//! is a retry (`Attempt::Retry`: the previous insert's outcome is unknown)
//! the shipper asks `event_ids` which ids are already there and sends only
//! the rest. A batch shipped for the first time is inserted as it is: the
//! lookup reads granules of `event_ids` for every id, grows with the table
//! and was three quarters of the shipping time. One shipper per spool
//! makes the check race-free.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use super::{
    AnalyticsStore, Attempt, HourRow, PastImpression, PastWatch, Scope, VariantCounts, VideoHour,
};
use crate::engagement::events::{Event, Kind};
use crate::error::{Error, Result};

/// In this order: the id lookup is fed before the rollups.
const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        event_id String, kind String, ts DateTime, video_id String, creator_id String,
        user_id String, watch_ms UInt32, duration_ms UInt32, completed UInt8, liked UInt8,
        shared UInt8, source String, channel String
    ) ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (creator_id, video_id, ts)",
    "CREATE TABLE IF NOT EXISTS event_ids (event_id String, ts DateTime)
        ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY event_id",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_mv TO event_ids AS
        SELECT event_id, ts FROM events",
    "CREATE TABLE IF NOT EXISTS video_hourly (
        video_id String, creator_id String, hour DateTime, source String,
        views AggregateFunction(sum, UInt64),
        viewers AggregateFunction(uniqExact, String),
        watch_ms AggregateFunction(sum, UInt64),
        completions AggregateFunction(sum, UInt64),
        likes AggregateFunction(sum, Int64),
        comments AggregateFunction(sum, Int64),
        shares AggregateFunction(sum, Int64),
        saves AggregateFunction(sum, Int64)
    ) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(hour)
      ORDER BY (creator_id, video_id, hour, source)",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS video_hourly_mv TO video_hourly AS
        SELECT video_id, creator_id, toStartOfHour(ts) AS hour, source,
            sumState(toUInt64(kind = 'watch')) AS views,
            uniqExactStateIf(user_id, kind = 'watch') AS viewers,
            sumState(toUInt64(watch_ms)) AS watch_ms,
            sumState(toUInt64(completed)) AS completions,
            sumState(toInt64(multiIf(kind = 'like', 1, kind = 'unlike', -1, 0))) AS likes,
            sumState(toInt64(kind = 'comment')) AS comments,
            sumState(toInt64(kind = 'share')) AS shares,
            sumState(toInt64(multiIf(kind = 'save', 1, kind = 'unsave', -1, 0))) AS saves
        FROM events GROUP BY video_id, creator_id, hour, source",
    // Impressions (added later: an existing store gains them here). Their
    // own table, so no rollup counts them; their ids join the lookup.
    "CREATE TABLE IF NOT EXISTS impressions (
        event_id String, ts DateTime, user_id String, video_id String, creator_id String,
        position UInt32, source String, ranker String, variant String, experiment String
    ) ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (experiment, user_id, video_id, ts)",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS impression_ids_mv TO event_ids AS
        SELECT event_id, ts FROM impressions",
];

/// Columns added to existing tables after the first release: (table,
/// column, definition). 18.16 has no `ADD COLUMN IF NOT EXISTS` (a syntax
/// error there), so `migrate` looks in `system.columns` first. The views
/// select their columns by name, so they are unaffected.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // The box's receive time of the event; rows stored before it existed
    // read their own time (`ts`: the client's clock for watches).
    ("events", "received", "DateTime DEFAULT ts"),
];

/// Sources of the for-you pages the experiment counts (a following page,
/// or a following request's fallback, is in none of them).
const FOR_YOU: &str = "source IN ('personalized', 'cold_start', 'trending_fallback')";

/// Per for-you impression of an experiment: was it followed (a watch or
/// like received by the box in the same second as the showing or later)
/// by a watch, by a like, of that video by that viewer. 18.16 joins with
/// `USING` only, so the latest watch and like per pair are joined on.
/// `{FOR_YOU}` is replaced by [`FOR_YOU`].
const IMPRESSION_COUNTS: &str = "
    SELECT variant, uniqExact(user_id), count(), sum(last_watch >= ts), sum(last_like >= ts)
    FROM (SELECT variant, user_id, video_id, ts FROM impressions
          WHERE experiment = ? AND {FOR_YOU})
    ANY LEFT JOIN (
        SELECT user_id, video_id,
            max(if(kind = 'watch', received, toDateTime(0))) AS last_watch,
            max(if(kind = 'like', received, toDateTime(0))) AS last_like
        FROM events
        WHERE kind IN ('watch', 'like') AND (user_id, video_id) IN
            (SELECT user_id, video_id FROM impressions WHERE experiment = ? AND {FOR_YOU})
        GROUP BY user_id, video_id
    ) USING (user_id, video_id)
    GROUP BY variant ORDER BY variant";

/// Per watch of a shown video received at or after its first showing.
const WATCH_COUNTS: &str = "
    SELECT variant, count(), sum(completed)
    FROM (
        SELECT user_id, video_id, received AS watched_at, completed FROM events
        WHERE kind = 'watch' AND (user_id, video_id) IN
            (SELECT user_id, video_id FROM impressions WHERE experiment = ? AND {FOR_YOU})
    ) ALL INNER JOIN (
        SELECT user_id, video_id, variant, min(ts) AS first_shown
        FROM impressions WHERE experiment = ? AND {FOR_YOU}
        GROUP BY user_id, video_id, variant
    ) USING (user_id, video_id)
    WHERE watched_at >= first_shown
    GROUP BY variant";

/// Ids per `IN (…)` lookup: keeps the statement well under 18.16's
/// 256 KiB `max_query_size`.
const LOOKUP_CHUNK: usize = 1000;

#[derive(Row, Serialize)]
struct EventRow {
    event_id: String,
    kind: String,
    ts: u32,
    video_id: String,
    creator_id: String,
    user_id: String,
    watch_ms: u32,
    duration_ms: u32,
    completed: u8,
    liked: u8,
    shared: u8,
    source: String,
    channel: String,
    received: u32,
}

impl From<&Event> for EventRow {
    fn from(e: &Event) -> Self {
        Self {
            event_id: e.id.clone(),
            kind: e.kind.as_str().to_owned(),
            ts: (e.ts.max(0) / 1000) as u32,
            video_id: e.video.clone(),
            creator_id: e.creator.clone(),
            user_id: e.user.clone(),
            watch_ms: e.watch_ms,
            duration_ms: e.duration_ms,
            completed: u8::from(e.completed),
            liked: u8::from(e.liked),
            shared: u8::from(e.shared),
            source: e.source.clone(),
            channel: e.channel.clone(),
            received: (e.received.max(0) / 1000) as u32,
        }
    }
}

#[derive(Row, Serialize)]
struct ImpressionRow {
    event_id: String,
    ts: u32,
    user_id: String,
    video_id: String,
    creator_id: String,
    position: u32,
    source: String,
    ranker: String,
    variant: String,
    experiment: String,
}

impl From<&Event> for ImpressionRow {
    fn from(e: &Event) -> Self {
        let s = e.shown.clone().unwrap_or_default();
        Self {
            event_id: e.id.clone(),
            ts: (e.ts.max(0) / 1000) as u32,
            user_id: e.user.clone(),
            video_id: e.video.clone(),
            creator_id: e.creator.clone(),
            position: s.position,
            source: e.source.clone(),
            ranker: s.ranker,
            variant: s.variant,
            experiment: s.experiment,
        }
    }
}

#[derive(Row, Deserialize)]
struct ShownRow {
    user_id: String,
    video_id: String,
    position: u32,
    ts: i64,
    variant: String,
}

#[derive(Row, Deserialize)]
struct ImpressionCounts {
    variant: String,
    viewers: u64,
    impressions: u64,
    watched: u64,
    liked: u64,
}

#[derive(Row, Deserialize)]
struct WatchCounts {
    variant: String,
    watches: u64,
    completed: u64,
}

#[derive(Row, Deserialize)]
struct RollupRow {
    hour: i64,
    source: String,
    views: u64,
    watch_ms: u64,
    completions: u64,
    likes: i64,
    comments: i64,
    shares: i64,
    saves: i64,
}

#[derive(Row, Deserialize)]
struct ActivityRow {
    video_id: String,
    hour: i64,
    views: u64,
    completions: u64,
    shares: i64,
    likes: i64,
}

#[derive(Row, Deserialize)]
struct WatchRow {
    user_id: String,
    video_id: String,
    watch_ms: u32,
    duration_ms: u32,
    completed: u8,
    liked: u8,
    shared: u8,
    ts: i64,
}

pub struct ClickHouse {
    client: Client,
    admin: Client,
    database: String,
    url: String,
    timeout: Duration,
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn in_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    ids.into_iter().map(quote).collect::<Vec<_>>().join(",")
}

fn scope_col(scope: &Scope) -> (&'static str, &str) {
    match scope {
        Scope::Video(v) => ("video_id", v),
        Scope::Creator(c) => ("creator_id", c),
    }
}

impl ClickHouse {
    pub fn new(url: &str, database: &str, user: &str, password: &str, timeout: Duration) -> Self {
        let base = Client::default()
            .with_url(url)
            .with_user(user)
            .with_password(password)
            // 18.16 knows neither RowBinaryWithNamesAndTypes nor the
            // settings the schema validation sends.
            .with_validation(false);
        Self {
            client: base.clone().with_database(database),
            admin: base,
            database: database.to_owned(),
            url: url.to_owned(),
            timeout,
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(Error::analytics(op)),
            Err(_) => Err(Error::analytics(op)(format!(
                "no answer from {} within {:?}",
                self.url, self.timeout
            ))),
        }
    }

    async fn has_column(&self, table: &str, column: &str) -> Result<bool> {
        let q = self
            .client
            .query(
                "SELECT count() FROM system.columns
                 WHERE database = ? AND table = ? AND name = ?",
            )
            .bind(self.database.as_str())
            .bind(table)
            .bind(column);
        Ok(self
            .timed("reading the schema", q.fetch_one::<u64>())
            .await?
            > 0)
    }

    /// Which of `ids` are stored already.
    async fn existing(&self, ids: &[&str]) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT event_id FROM event_ids WHERE event_id IN ({})",
                in_list(chunk.iter().copied())
            );
            let rows: Vec<String> = self
                .timed("looking up event ids", self.client.query(&sql).fetch_all())
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }
}

#[async_trait]
impl AnalyticsStore for ClickHouse {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn migrate(&self) -> Result<()> {
        let create = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database);
        self.timed("creating the database", self.admin.query(&create).execute())
            .await?;
        for ddl in DDL {
            self.timed("creating the schema", self.client.query(ddl).execute())
                .await?;
        }
        for (table, column, definition) in ADDED_COLUMNS {
            if self.has_column(table, column).await? {
                continue;
            }
            let alter = format!("ALTER TABLE {table} ADD COLUMN {column} {definition}");
            if let Err(e) = self
                .timed("upgrading the schema", self.client.query(&alter).execute())
                .await
            {
                // Another process may have added it meanwhile.
                if !self.has_column(table, column).await? {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn deliver(&self, events: &[Event], attempt: Attempt) -> Result<usize> {
        let batch = super::distinct(events);
        let fresh: Vec<&Event> = match attempt {
            Attempt::First => batch,
            Attempt::Retry => {
                let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
                let stored = self.existing(&ids).await?;
                batch
                    .into_iter()
                    .filter(|e| !stored.contains(&e.id))
                    .collect()
            }
        };
        if fresh.is_empty() {
            return Ok(0);
        }
        let (shown, events): (Vec<&Event>, Vec<&Event>) =
            fresh.iter().partition(|e| e.kind == Kind::Impression);
        if !events.is_empty() {
            let insert = async {
                let mut ins = self.client.insert::<EventRow>("events").await?;
                for e in &events {
                    ins.write(&EventRow::from(*e)).await?;
                }
                ins.end().await
            };
            self.timed("inserting events", insert).await?;
        }
        // A failure here after the events landed is retried as a retry:
        // the lookup then finds the events and only the impressions are
        // sent again.
        if !shown.is_empty() {
            let insert = async {
                let mut ins = self.client.insert::<ImpressionRow>("impressions").await?;
                for e in &shown {
                    ins.write(&ImpressionRow::from(*e)).await?;
                }
                ins.end().await
            };
            self.timed("inserting impressions", insert).await?;
        }
        Ok(fresh.len())
    }

    async fn rollups(&self, scope: &Scope, since: i64) -> Result<Vec<HourRow>> {
        let (col, id) = scope_col(scope);
        let sql = format!(
            "SELECT toInt64(toUInt32(hour)) AS h, source, sumMerge(views), sumMerge(watch_ms),
                    sumMerge(completions), sumMerge(likes), sumMerge(comments), sumMerge(shares),
                    sumMerge(saves)
             FROM video_hourly WHERE {col} = ? AND hour >= toDateTime(?)
             GROUP BY h, source ORDER BY h, source"
        );
        let q = self.client.query(&sql).bind(id).bind(since.max(0) as u32);
        let rows: Vec<RollupRow> = self.timed("reading rollups", q.fetch_all()).await?;
        Ok(rows
            .into_iter()
            .map(|r| HourRow {
                hour: r.hour,
                source: r.source,
                views: r.views,
                watch_ms: r.watch_ms,
                completions: r.completions,
                likes: r.likes,
                comments: r.comments,
                shares: r.shares,
                saves: r.saves,
            })
            .collect())
    }

    async fn unique_viewers(&self, scope: &Scope, since: i64) -> Result<u64> {
        let (col, id) = scope_col(scope);
        let sql = format!(
            "SELECT uniqExactMerge(viewers) FROM video_hourly
             WHERE {col} = ? AND hour >= toDateTime(?)"
        );
        let q = self.client.query(&sql).bind(id).bind(since.max(0) as u32);
        self.timed("counting viewers", q.fetch_one::<u64>()).await
    }

    async fn activity(&self, since: i64) -> Result<Vec<VideoHour>> {
        let q = self
            .client
            .query(
                "SELECT video_id, toInt64(toUInt32(hour)) AS h, sumMerge(views),
                        sumMerge(completions), sumMerge(shares), sumMerge(likes)
                 FROM video_hourly WHERE hour >= toDateTime(?) GROUP BY video_id, h",
            )
            .bind(since.max(0) as u32);
        let rows: Vec<ActivityRow> = self.timed("reading activity", q.fetch_all()).await?;
        Ok(rows
            .into_iter()
            .map(|r| VideoHour {
                video: r.video_id,
                hour: r.hour,
                views: r.views,
                completions: r.completions,
                shares: r.shares,
                likes: r.likes,
            })
            .collect())
    }

    async fn total_views(&self, videos: &[String]) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for chunk in videos.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT video_id, sumMerge(views) FROM video_hourly
                 WHERE video_id IN ({}) GROUP BY video_id",
                in_list(chunk.iter().map(String::as_str))
            );
            let rows: Vec<(String, u64)> = self
                .timed("reading view totals", self.client.query(&sql).fetch_all())
                .await?;
            out.extend(rows.into_iter().filter(|(_, n)| *n > 0));
        }
        Ok(out)
    }

    async fn watch_history(&self, sink: &mut (dyn FnMut(Vec<PastWatch>) + Send)) -> Result<u64> {
        let mut cursor = self
            .client
            .query(
                "SELECT user_id, video_id, watch_ms, duration_ms, completed, liked, shared,
                        toInt64(toUInt32(ts)) * 1000
                 FROM events WHERE kind = 'watch' ORDER BY ts",
            )
            .fetch::<WatchRow>()
            .map_err(Error::analytics("reading watch history"))?;
        let mut chunk = Vec::with_capacity(20_000);
        let mut total = 0u64;
        while let Some(r) = cursor
            .next()
            .await
            .map_err(Error::analytics("reading watch history"))?
        {
            chunk.push(PastWatch {
                user: r.user_id,
                video: r.video_id,
                watch_ms: r.watch_ms,
                duration_ms: r.duration_ms,
                completed: r.completed != 0,
                liked: r.liked != 0,
                shared: r.shared != 0,
                ts: r.ts,
            });
            if chunk.len() == 20_000 {
                total += chunk.len() as u64;
                sink(std::mem::take(&mut chunk));
            }
        }
        total += chunk.len() as u64;
        if !chunk.is_empty() {
            sink(chunk);
        }
        Ok(total)
    }

    async fn impressions(&self, sink: &mut (dyn FnMut(Vec<PastImpression>) + Send)) -> Result<u64> {
        let mut cursor = self
            .client
            .query(
                "SELECT user_id, video_id, position, toInt64(toUInt32(ts)) * 1000, variant
                 FROM impressions ORDER BY ts",
            )
            .fetch::<ShownRow>()
            .map_err(Error::analytics("reading impressions"))?;
        let mut chunk = Vec::with_capacity(20_000);
        let mut total = 0u64;
        while let Some(r) = cursor
            .next()
            .await
            .map_err(Error::analytics("reading impressions"))?
        {
            chunk.push(PastImpression {
                user: r.user_id,
                video: r.video_id,
                position: r.position,
                ts: r.ts,
                variant: r.variant,
            });
            if chunk.len() == 20_000 {
                total += chunk.len() as u64;
                sink(std::mem::take(&mut chunk));
            }
        }
        total += chunk.len() as u64;
        if !chunk.is_empty() {
            sink(chunk);
        }
        Ok(total)
    }

    async fn experiment_counts(&self, experiment: &str) -> Result<Vec<VariantCounts>> {
        let sql = IMPRESSION_COUNTS.replace("{FOR_YOU}", FOR_YOU);
        let q = self.client.query(&sql).bind(experiment).bind(experiment);
        let shown: Vec<ImpressionCounts> =
            self.timed("counting impressions", q.fetch_all()).await?;
        let sql = WATCH_COUNTS.replace("{FOR_YOU}", FOR_YOU);
        let q = self.client.query(&sql).bind(experiment).bind(experiment);
        let watches: Vec<WatchCounts> = self
            .timed("counting watches after impressions", q.fetch_all())
            .await?;
        Ok(shown
            .into_iter()
            .map(|s| {
                let w = watches.iter().find(|w| w.variant == s.variant);
                VariantCounts {
                    viewers: s.viewers,
                    impressions: s.impressions,
                    watched: s.watched,
                    liked: s.liked,
                    watches: w.map_or(0, |w| w.watches),
                    completed: w.map_or(0, |w| w.completed),
                    variant: s.variant,
                }
            })
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.client.query("SELECT 1").fetch_one::<u8>())
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
