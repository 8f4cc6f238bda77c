//! The embedded store's write path: one SQLite transaction per delivery
//! holds the events, the hourly rollups they add to and the viewers, so
//! rollups are queryable the moment the events are, and never disagree
//! with them.
//!
//! Exactly once without an id index. The shipper is the only writer and
//! delivers one batch at a time, moving the spool's cursor only after the
//! transaction committed; so the only delivery whose outcome can be in
//! doubt is the latest one (a crash between commit and cursor, an error
//! after the commit), and its retries come before any other delivery.
//! Each first delivery records in `last_delivery` the rowid its rows start
//! after, in the same transaction as the rows; a retry leaves that mark
//! where it is and skips the ids found in the rows after it — the rows of
//! the delivery in doubt and of any earlier retry of it. If the crash came
//! before the commit, those rows are an older, acknowledged delivery, and
//! nothing of the batch is among them (unless a client repeated an id,
//! which is then rightly dropped).

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection};

use super::super::Attempt;
use crate::engagement::events::{Event, Kind};

/// Stores `events` (already distinct by id) in one transaction; how many
/// were new.
pub(super) fn deliver(
    c: &mut Connection,
    events: &[Event],
    attempt: Attempt,
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let stored: HashSet<String> = match attempt {
        Attempt::First => {
            tx.execute(
                "UPDATE last_delivery SET events_after = (SELECT COALESCE(MAX(rowid), 0) FROM events)",
                [],
            )?;
            HashSet::new()
        }
        Attempt::Retry => {
            let wanted: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let mut st = tx.prepare_cached(
                "SELECT event_id FROM events
                 WHERE rowid > (SELECT events_after FROM last_delivery)",
            )?;
            let mut rows = st.query([])?;
            let mut found = HashSet::new();
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                if wanted.contains(id.as_str()) {
                    found.insert(id);
                }
            }
            found
        }
    };
    let mut fresh = 0;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO events (event_id, kind, ts, video_id, creator_id, user_id,
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
        // Impressions keep their per-id index (a page's worth at a time,
        // far fewer than watches), so a repeat is ignored there as before.
        let mut shown = tx.prepare_cached(
            "INSERT OR IGNORE INTO impressions (event_id, ts, user_id, video_id, creator_id,
                position, source, ranker, variant, experiment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        // Rollups are summed per (video, hour, source) and viewers
        // de-duplicated in memory first: one upsert per key, not per event.
        let mut sums: HashMap<(&str, i64, &str), (&str, [i64; 7])> = HashMap::new();
        let mut viewers: HashSet<(&str, i64, &str, &str)> = HashSet::new();
        for e in events {
            if e.kind == Kind::Impression {
                // Their own table: no rollup, viewer row or view.
                let s = e.shown.clone().unwrap_or_default();
                fresh += shown.execute(params![
                    e.id,
                    e.ts,
                    e.user,
                    e.video,
                    e.creator,
                    s.position,
                    e.source,
                    s.ranker,
                    s.variant,
                    s.experiment
                ])?;
                continue;
            }
            if stored.contains(&e.id) {
                continue;
            }
            ins.execute(params![
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
                viewers.insert((
                    e.video.as_str(),
                    e.hour(),
                    e.user.as_str(),
                    e.creator.as_str(),
                ));
            }
        }
        for ((video, hour, source), (creator, v)) in sums {
            roll.execute(params![
                video, creator, hour, source, v[0], v[1], v[2], v[3], v[4], v[5], v[6]
            ])?;
        }
        for (video, hour, user, creator) in viewers {
            viewer.execute(params![video, hour, user, creator])?;
        }
    }
    tx.commit()?;
    Ok(fresh)
}
