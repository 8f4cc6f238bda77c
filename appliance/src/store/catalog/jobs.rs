//! The job queue: a job is claimed under a lease, renewed while it runs,
//! and settled exactly once (publish is the commit point of a transcode).

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{fail_video, now_ms};
use crate::error::{Error, Result};
use crate::webhooks::Event;

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
            // Only if the video did fail (a playable one stays ready).
            crate::webhooks::record(
                &tx,
                Event::VideoFailed {
                    video_id: &video_id,
                    job_id: id,
                },
            )?;
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
             WHERE id = ?1 AND (state = 'processing' OR (state = 'ready' AND stage = 'growing'))",
            params![video_id, ladder, now],
        )
        .map_err(Error::catalog("publishing"))?;
    if held == 1 && wanted == 1 {
        // The outbox: the event commits with the change or not at all.
        crate::webhooks::record(&tx, Event::VideoReady { video_id, job_id })?;
        tx.commit().map_err(Error::catalog("publishing"))?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Part of the ladder is playable: if (and only if) we still hold the job
/// and the video is still wanted, the video becomes (or stays) `ready` in
/// stage `growing` with the ladder published so far. The job keeps
/// running; [`publish`] ends it.
pub fn publish_playable(
    c: &mut Connection,
    job_id: i64,
    owner: &str,
    video_id: &str,
    ladder: &str,
) -> Result<bool> {
    let now = now_ms();
    let tx = c.transaction().map_err(Error::catalog("publishing"))?;
    let held: bool = tx
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
            params![job_id, owner],
            |r| r.get::<_, i64>(0),
        )
        .map_err(Error::catalog("publishing"))?
        == 1;
    let wanted = tx
        .execute(
            "UPDATE videos SET state = 'ready', stage = 'growing', failure = NULL, ladder = ?2, updated_at = ?3
             WHERE id = ?1 AND (state = 'processing' OR (state = 'ready' AND stage = 'growing'))",
            params![video_id, ladder, now],
        )
        .map_err(Error::catalog("publishing"))?;
    if held && wanted == 1 {
        // Playable is `ready`: the event's id makes later rungs add nothing.
        crate::webhooks::record(&tx, Event::VideoReady { video_id, job_id })?;
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

/// Jobs newest first, those with an id below `before` when given (the
/// next page of `GET /ops/jobs`), at most `limit`.
pub fn recent_jobs(c: &Connection, before: Option<i64>, limit: u32) -> Result<Vec<JobRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
        ))
        .map_err(Error::catalog("listing jobs"))?;
    let rows = st
        .query_map(params![before.unwrap_or(i64::MAX), limit], job_row)
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

/// A job with what an operator needs to recognise it (`appliance jobs`).
#[derive(Debug, Clone)]
pub struct JobListRow {
    pub job: JobRow,
    /// The video's title and owner, while the video exists.
    pub title: Option<String>,
    pub owner: Option<String>,
}

/// Jobs in `states` (every state when empty): running first, then queued,
/// then the rest; newest first within each.
pub fn jobs_in_states(c: &Connection, states: &[&str], limit: u32) -> Result<Vec<JobListRow>> {
    let cols = JOB_COLS
        .split(',')
        .map(|col| format!("j.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = if states.is_empty() {
        String::new()
    } else {
        let marks = (0..states.len())
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        format!("WHERE j.state IN ({marks})")
    };
    let mut st = c
        .prepare(&format!(
            "SELECT {cols}, v.title, u.username FROM jobs j
             LEFT JOIN videos v ON v.id = j.video_id
             LEFT JOIN users u ON u.id = v.owner_id
             {filter}
             ORDER BY CASE j.state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, j.id DESC
             LIMIT ?1"
        ))
        .map_err(Error::catalog("listing jobs"))?;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&limit];
    args.extend(states.iter().map(|s| s as &dyn rusqlite::ToSql));
    let rows = st
        .query_map(args.as_slice(), |r| {
            Ok(JobListRow {
                job: job_row(r)?,
                title: r.get(11)?,
                owner: r.get(12)?,
            })
        })
        .map_err(Error::catalog("listing jobs"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing jobs"))
}
