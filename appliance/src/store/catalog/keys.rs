//! Idempotency keys kept in the catalog (the hot store's fallback).

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::now_ms;
use crate::error::{Error, Result};

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
