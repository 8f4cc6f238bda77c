//! The catalog: users, tokens, upload sessions, videos, the job queue,
//! idempotency keys, the social graph and the feed's embeddings, in one
//! SQLite file (WAL, `synchronous=FULL`: a committed row survives a crash
//! of the process or the host). One file per table family; the schema and
//! its migrations live in `schema`.
//!
//! Writes go through `Catalog::call`, which runs a closure on the blocking
//! pool with the one read-write connection (SQLite serialises writers
//! anyway). Reads that must not queue behind a write — the origin and the
//! feed — use `Catalog::read`, which runs on one of a few read-only
//! connections: in WAL mode a reader sees the last committed state while a
//! write transaction is open. Every statement is an indexed point lookup or
//! a bounded page.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

mod embeddings;
mod jobs;
mod keys;
mod live;
mod notifications;
mod schema;
mod search;
mod social;
mod sounds;
mod tus;
mod uploads;
mod users;
mod videos;
mod webhooks;

pub use embeddings::*;
pub use jobs::*;
pub use keys::*;
pub use live::*;
pub use notifications::*;
pub use search::*;
pub use social::*;
pub use sounds::*;
pub use tus::*;
pub use uploads::*;
pub use users::*;
pub use videos::*;
pub use webhooks::*;

/// Read-only connections kept open beside the writer.
const READERS: usize = 4;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Clone)]
pub struct Catalog {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReadPool>,
}

/// Idle read-only connections; a reader waits for one when all are busy.
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReadPool {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = idle.pop() {
                    break c;
                }
                idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Back in the pool however `f` ends, a panic included: a lost
        // reader would leave later reads waiting for ever.
        let lease = Lease {
            pool: self,
            conn: Some(conn),
        };
        let conn = lease.conn.as_ref().expect("held until drop");
        // One snapshot for the whole closure (a page of rows is consistent
        // even while a write commits in between); read-only, so it simply
        // ends when dropped.
        let tx = conn
            .unchecked_transaction()
            .map_err(Error::catalog("starting a read"))?;
        f(&tx)
    }
}

/// A reader taken from the pool, returned when dropped.
struct Lease<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
            self.pool.returned.notify_one();
        }
    }
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(Error::catalog("opening"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(Error::catalog("configuring"))?;
        schema::migrate(&conn, path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(Error::catalog("opening a reader"))?;
            r.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
                .map_err(Error::catalog("configuring a reader"))?;
            readers.push(r);
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(conn)),
            readers: Arc::new(ReadPool {
                idle: Mutex::new(readers),
                returned: Condvar::new(),
            }),
        })
    }

    /// Runs `f` with the read-write connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }

    /// Runs a read-only `f` on a reader connection on the blocking pool: it
    /// sees the last committed state and never waits for the writer.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.run(f)).await?
    }
}

#[cfg(test)]
mod tests;
