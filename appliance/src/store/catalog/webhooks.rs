//! Webhook endpoints, their deliveries (the outbox) and each delivery's
//! attempts. A delivery row is inserted by `webhook_fan_out` inside the
//! transaction that makes its event happen; the delivery worker claims due
//! rows under a lease (one sender per row across processes) and settles
//! each attempt only while it still holds the lease.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    /// Event names, as on the wire.
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: i64,
}

const WEBHOOK_COLS: &str = "id, url, events, secret, created_at";

fn webhook_row(r: &Row<'_>) -> rusqlite::Result<WebhookRow> {
    let events: String = r.get(2)?;
    Ok(WebhookRow {
        id: r.get(0)?,
        url: r.get(1)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn insert_webhook(c: &Connection, w: &WebhookRow) -> Result<()> {
    c.execute(
        &format!("INSERT INTO webhooks ({WEBHOOK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            w.id,
            w.url,
            serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()),
            w.secret,
            w.created_at
        ],
    )
    .map_err(Error::catalog("registering a webhook"))?;
    Ok(())
}

/// An endpoint that has not been deleted.
pub fn webhook(c: &Connection, id: &str) -> Result<Option<WebhookRow>> {
    c.query_row(
        &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = ?1 AND deleted_at IS NULL"),
        [id],
        webhook_row,
    )
    .optional()
    .map_err(Error::catalog("reading a webhook"))
}

/// Endpoints newest first, after the `(created_at, id)` of the previous
/// page's last, at most `limit`.
pub fn webhooks_page(
    c: &Connection,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<WebhookRow>> {
    let (at, id) = after.unwrap_or((0, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE deleted_at IS NULL
             AND (?2 = '' OR created_at < ?1 OR (created_at = ?1 AND id < ?2))
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))
        .map_err(Error::catalog("listing webhooks"))?;
    let rows = st
        .query_map(params![at, id, limit], webhook_row)
        .map_err(Error::catalog("listing webhooks"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing webhooks"))
}

/// Deletes an endpoint: its secret is wiped at once (the row stays while
/// its log is kept) and what it had not yet been sent is cancelled, in one
/// transaction. False if there was no such endpoint.
pub fn delete_webhook(c: &mut Connection, id: &str, now: i64) -> Result<bool> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("deleting a webhook"))?;
    let n = tx
        .execute(
            "UPDATE webhooks SET deleted_at = ?2, secret = '' WHERE id = ?1 AND deleted_at IS NULL",
            params![id, now],
        )
        .map_err(Error::catalog("deleting a webhook"))?;
    tx.execute(
        "UPDATE webhook_deliveries SET state = 'cancelled', lease_owner = NULL
         WHERE webhook_id = ?1 AND state = 'pending'",
        [id],
    )
    .map_err(Error::catalog("deleting a webhook"))?;
    tx.commit().map_err(Error::catalog("deleting a webhook"))?;
    Ok(n == 1)
}

/// Runs `f` (statements on `c`) atomically: inside the caller's
/// transaction when one is open, else in one of its own — so a change and
/// the webhook deliveries it makes commit together even when the caller
/// did not open a transaction.
pub(super) fn atomically<T>(c: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !c.is_autocommit() {
        return f();
    }
    let tx = c
        .unchecked_transaction()
        .map_err(Error::catalog("starting a transaction"))?;
    let out = f()?;
    tx.commit()
        .map_err(Error::catalog("committing a transaction"))?;
    Ok(out)
}

/// Whether any endpoint takes `event` (the outbox skips composing a body
/// nobody would get).
pub fn webhook_subscribed(c: &Connection, event: &str) -> Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM webhooks w WHERE w.deleted_at IS NULL
             AND EXISTS (SELECT 1 FROM json_each(w.events) e WHERE e.value = ?1))",
        [event],
        |r| r.get(0),
    )
    .map_err(Error::catalog("reading webhook subscriptions"))
}

/// The outbox: one pending delivery of `body` per endpoint subscribed to
/// `event`, due at once. An event announced again (same `event_id`) adds
/// nothing for an endpoint that already has it. Returns the rows added.
pub fn webhook_fan_out(
    c: &Connection,
    event: &str,
    event_id: &str,
    body: &str,
    now: i64,
) -> Result<usize> {
    c.execute(
        "INSERT OR IGNORE INTO webhook_deliveries
             (webhook_id, event_id, event, body, state, attempts, next_attempt, created_at)
         SELECT w.id, ?2, ?1, ?3, 'pending', 0, ?4, ?4 FROM webhooks w
         WHERE w.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM json_each(w.events) e WHERE e.value = ?1)",
        params![event, event_id, body, now],
    )
    .map_err(Error::catalog("queueing webhook deliveries"))
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event: String,
    pub body: String,
    /// `pending | delivered | failed | cancelled`.
    pub state: String,
    pub attempts: u32,
    /// When pending: the next attempt, or the end of the running one's lease.
    pub next_attempt: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub lease_owner: Option<String>,
    /// 0: the configured window from `created_at`.
    pub retry_until: i64,
    pub round_start: u32,
}

const DELIVERY_COLS: &str =
    "id, webhook_id, event_id, event, body, state, attempts, next_attempt, \
     created_at, delivered_at, lease_owner, retry_until, round_start";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event_id: r.get(2)?,
        event: r.get(3)?,
        body: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt: r.get(7)?,
        created_at: r.get(8)?,
        delivered_at: r.get(9)?,
        lease_owner: r.get(10)?,
        retry_until: r.get(11)?,
        round_start: r.get(12)?,
    })
}

/// Whether some delivery is due (a read, so an idle worker's poll never
/// takes the write lock).
pub fn webhook_delivery_due(c: &Connection, now: i64) -> Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= ?1)",
        [now],
        |r| r.get(0),
    )
    .map_err(Error::catalog("looking for due deliveries"))
}

/// A delivery leased for one attempt, with where and how to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRow,
    pub url: String,
    pub secret: String,
}

/// Leases up to `limit` due deliveries (pending and due, or whose sender's
/// lease ran out) to `owner` until `now + lease_ms`, counts the attempt and
/// logs its start — one transaction, so two processes never send the same
/// attempt.
pub fn claim_webhook_deliveries(
    c: &mut Connection,
    owner: &str,
    lease_ms: i64,
    limit: u32,
    now: i64,
) -> Result<Vec<ClaimedDelivery>> {
    let op = "claiming webhook deliveries";
    let tx = c.transaction().map_err(Error::catalog(op))?;
    let rows = {
        let mut st = tx
            .prepare_cached(&format!(
                "UPDATE webhook_deliveries SET lease_owner = ?1, next_attempt = ?2, attempts = attempts + 1
                 WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                              WHERE d.state = 'pending' AND d.next_attempt <= ?3 AND w.deleted_at IS NULL
                              ORDER BY d.next_attempt, d.id LIMIT ?4)
                 RETURNING {DELIVERY_COLS}"
            ))
            .map_err(Error::catalog(op))?;
        let rows = st
            .query_map(params![owner, now + lease_ms, now, limit], delivery_row)
            .map_err(Error::catalog(op))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Error::catalog(op))?
    };
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        let manual = d.round_start > 0 && d.attempts == d.round_start + 1;
        tx.execute(
            "INSERT OR REPLACE INTO webhook_attempts (delivery_id, n, started_at, manual)
             VALUES (?1, ?2, ?3, ?4)",
            params![d.id, d.attempts, now, manual],
        )
        .map_err(Error::catalog(op))?;
        let (url, secret) = tx
            .query_row(
                "SELECT url, secret FROM webhooks WHERE id = ?1",
                [&d.webhook_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(Error::catalog(op))?;
        out.push(ClaimedDelivery {
            delivery: d,
            url,
            secret,
        });
    }
    tx.commit().map_err(Error::catalog(op))?;
    Ok(out)
}

/// How an attempt ended, and what becomes of its delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// No 2xx: try again at `at`.
    Retry {
        at: i64,
        status: Option<u16>,
        error: String,
    },
    /// No 2xx, and the retry window is over.
    Failed { status: Option<u16>, error: String },
}

/// Records attempt `n` of delivery `id` and settles the delivery, if
/// `owner` still holds it for that attempt. The attempt's own outcome is
/// logged either way (it happened); false when the delivery was no longer
/// ours (its endpoint deleted, or our lease ran out and another sender
/// took it).
pub fn finish_webhook_attempt(
    c: &mut Connection,
    id: i64,
    owner: &str,
    n: u32,
    duration_ms: i64,
    end: &AttemptEnd,
    now: i64,
) -> Result<bool> {
    let op = "recording a webhook attempt";
    let tx = c.transaction().map_err(Error::catalog(op))?;
    let (status, error) = match end {
        AttemptEnd::Delivered { status } => (Some(*status), None),
        AttemptEnd::Retry { status, error, .. } | AttemptEnd::Failed { status, error } => {
            (*status, Some(error.as_str()))
        }
    };
    tx.execute(
        "UPDATE webhook_attempts SET duration_ms = ?3, status = ?4, error = ?5
         WHERE delivery_id = ?1 AND n = ?2",
        params![id, n, duration_ms, status, error],
    )
    .map_err(Error::catalog(op))?;
    let held = "WHERE id = ?1 AND lease_owner = ?2 AND attempts = ?3 AND state = 'pending'";
    let changed = match end {
        AttemptEnd::Delivered { status } => tx.execute(
            &format!(
                "UPDATE webhook_deliveries SET state = 'delivered', lease_owner = NULL,
                     delivered_at = ?4, next_attempt = ?4, last_status = ?5, last_error = NULL {held}"
            ),
            params![id, owner, n, now, status],
        ),
        AttemptEnd::Retry { at, status, error } => tx.execute(
            &format!(
                "UPDATE webhook_deliveries SET lease_owner = NULL, next_attempt = ?4,
                     last_status = ?5, last_error = ?6 {held}"
            ),
            params![id, owner, n, at, status, error],
        ),
        AttemptEnd::Failed { status, error } => tx.execute(
            &format!(
                "UPDATE webhook_deliveries SET state = 'failed', lease_owner = NULL,
                     next_attempt = ?4, last_status = ?5, last_error = ?6 {held}"
            ),
            params![id, owner, n, now, status, error],
        ),
    }
    .map_err(Error::catalog(op))?;
    tx.commit().map_err(Error::catalog(op))?;
    Ok(changed == 1)
}

/// One delivery of one endpoint.
pub fn webhook_delivery(c: &Connection, webhook_id: &str, id: i64) -> Result<Option<DeliveryRow>> {
    c.query_row(
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = ?1 AND webhook_id = ?2"
        ),
        params![id, webhook_id],
        delivery_row,
    )
    .optional()
    .map_err(Error::catalog("reading a webhook delivery"))
}

/// An endpoint's deliveries, newest first, those with an id below `before`
/// when given, at most `limit`.
pub fn webhook_deliveries(
    c: &Connection,
    webhook_id: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<DeliveryRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = ?1 AND id < ?2
             ORDER BY id DESC LIMIT ?3"
        ))
        .map_err(Error::catalog("listing webhook deliveries"))?;
    let rows = st
        .query_map(
            params![webhook_id, before.unwrap_or(i64::MAX), limit],
            delivery_row,
        )
        .map_err(Error::catalog("listing webhook deliveries"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing webhook deliveries"))
}

#[derive(Debug, Clone)]
pub struct WebhookAttemptRow {
    pub n: u32,
    pub started_at: i64,
    /// None: in flight, or its process died.
    pub duration_ms: Option<i64>,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub manual: bool,
}

/// A delivery's latest `limit` attempts, oldest first.
pub fn webhook_attempts_of(
    c: &Connection,
    delivery_id: i64,
    limit: u32,
) -> Result<Vec<WebhookAttemptRow>> {
    let mut st = c
        .prepare_cached(
            "SELECT n, started_at, duration_ms, status, error, manual FROM webhook_attempts
             WHERE delivery_id = ?1 ORDER BY n DESC LIMIT ?2",
        )
        .map_err(Error::catalog("listing webhook attempts"))?;
    let rows = st
        .query_map(params![delivery_id, limit], |r| {
            Ok(WebhookAttemptRow {
                n: r.get(0)?,
                started_at: r.get(1)?,
                duration_ms: r.get(2)?,
                status: r.get(3)?,
                error: r.get(4)?,
                manual: r.get(5)?,
            })
        })
        .map_err(Error::catalog("listing webhook attempts"))?;
    let mut out = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing webhook attempts"))?;
    out.reverse();
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    Queued,
    /// An attempt of it is running now.
    InFlight,
    /// No such delivery of a live endpoint.
    Missing,
}

/// Queues a delivery again, due at once, with a new retry window ending
/// at `retry_until` and its backoff counted afresh from here.
pub fn redeliver_webhook(
    c: &mut Connection,
    webhook_id: &str,
    id: i64,
    now: i64,
    retry_until: i64,
) -> Result<Redelivery> {
    let op = "redelivering a webhook delivery";
    let tx = c.transaction().map_err(Error::catalog(op))?;
    let found: Option<(String, Option<String>, i64)> = tx
        .query_row(
            "SELECT d.state, d.lease_owner, d.next_attempt FROM webhook_deliveries d
             JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = ?1 AND d.webhook_id = ?2 AND w.deleted_at IS NULL",
            params![id, webhook_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(Error::catalog(op))?;
    let verdict = match found {
        None => Redelivery::Missing,
        Some((state, Some(_), lease_end)) if state == "pending" && lease_end > now => {
            Redelivery::InFlight
        }
        Some(_) => {
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'pending', lease_owner = NULL,
                     next_attempt = ?2, retry_until = ?3, round_start = attempts
                 WHERE id = ?1",
                params![id, now, retry_until],
            )
            .map_err(Error::catalog(op))?;
            Redelivery::Queued
        }
    };
    tx.commit().map_err(Error::catalog(op))?;
    Ok(verdict)
}

/// Deletes up to `limit` finished deliveries (and their attempts) of
/// events older than `before`, then endpoints deleted before it with no
/// delivery left. Returns the deliveries deleted.
pub fn purge_webhook_deliveries(c: &Connection, before: i64, limit: u32) -> Result<usize> {
    let n = c
        .execute(
            "DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE state IN ('delivered', 'failed', 'cancelled') AND created_at < ?1
                 ORDER BY id LIMIT ?2)",
            params![before, limit],
        )
        .map_err(Error::catalog("purging webhook deliveries"))?;
    c.execute(
        "DELETE FROM webhooks WHERE deleted_at IS NOT NULL AND deleted_at < ?1
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = webhooks.id)",
        [before],
    )
    .map_err(Error::catalog("purging webhooks"))?;
    Ok(n)
}
