//! Hot state: counters that move at once, rate limits, idempotency keys and
//! status fan-out. Two implementations behind one seam, chosen by
//! `[hot] kind`: in-process (`memory`) and Redis.
//!
//! `Hot` is what the rest of the box uses. With Redis configured it talks to
//! Redis and, whenever Redis fails, carries on in process: counter deltas
//! are kept locally and flushed to the catalog directly, rate limits and
//! idempotency keys become per-process (keys in the catalog), status events
//! reach this process's subscribers only. Nothing a client sent is lost;
//! counts that Redis held when it went away are repaired by reconciliation
//! once it is back (`Hot::take_recovered`).

pub mod follow;
mod memory;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::Memory;
pub use self::redis::Redis;
use crate::error::Result;
pub use crate::store::catalog::KeyState;

pub use crate::store::catalog::Counts;

/// Counters taken for a flush. `id` is unique per take: the catalog records
/// it, so a flush retried after a crash is applied once.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: String,
    pub counts: HashMap<String, Counts>,
}

#[async_trait]
pub trait HotStore: Send + Sync {
    fn name(&self) -> &'static str;
    async fn add(&self, deltas: &HashMap<String, Counts>) -> Result<()>;
    /// Deltas not yet flushed to the catalog.
    async fn pending(&self, video: &str) -> Result<Counts>;
    /// Atomically takes every pending delta (get-and-reset). A take that was
    /// never finished is handed out again, with the same id.
    async fn take(&self) -> Result<Option<Taken>>;
    async fn finish_take(&self, id: &str) -> Result<()>;
    /// Sliding-window limit: `None` if allowed (and counted), else how long
    /// until the next one would be, ms.
    async fn rate(&self, key: &str, limit: u32, window_ms: i64, now_ms: i64)
        -> Result<Option<i64>>;
    async fn idem_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<KeyState>;
    async fn idem_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
        keep: Duration,
    ) -> Result<()>;
    async fn idem_drop(&self, scope: &str, key: &str) -> Result<()>;
    /// Sends a status event to every process sharing this store.
    async fn publish(&self, payload: &str) -> Result<()>;
    async fn ping(&self) -> Result<()>;
}

/// Runs a call on Redis, or on the in-process store when there is no
/// Redis or it fails.
macro_rules! either {
    ($self:ident, $s:ident => $call:expr) => {{
        let mut out = None;
        if let Some(r) = &$self.redis {
            let $s: &dyn HotStore = r;
            match $call.await {
                Ok(v) => {
                    $self.ok();
                    out = Some(Ok(v));
                }
                Err(e) => $self.failed(&e),
            }
        }
        match out {
            Some(v) => v,
            None => {
                let $s: &dyn HotStore = &$self.memory;
                $call.await
            }
        }
    }};
}

/// The box's hot state: Redis when configured and answering, else in process.
pub struct Hot {
    redis: Option<Redis>,
    memory: Memory,
    degraded: AtomicBool,
    recovered: AtomicBool,
    failures: AtomicU64,
}

impl Hot {
    pub fn new(redis: Option<Redis>, memory: Memory) -> Self {
        Self {
            redis,
            memory,
            degraded: AtomicBool::new(false),
            recovered: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.redis.as_ref().map_or("memory", |r| r.name())
    }

    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// True while Redis is configured but failing.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether Redis came back since the last call (counts it held may be
    /// gone: time to reconcile).
    pub fn take_recovered(&self) -> bool {
        self.recovered.swap(false, Ordering::Relaxed)
    }

    fn ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("hot store: Redis is back");
            self.recovered.store(true, Ordering::Relaxed);
        }
    }

    fn failed(&self, e: &crate::error::Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "hot store: Redis failing; counters, rate limits and idempotency keys carry on in process");
        }
    }

    pub async fn add(&self, deltas: &HashMap<String, Counts>) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        either!(self, s => s.add(deltas))
    }

    /// Pending deltas for `video`, wherever they are.
    pub async fn pending(&self, video: &str) -> Counts {
        let mut c = self.memory.pending(video).await.unwrap_or_default();
        if let Some(r) = &self.redis {
            if !self.degraded() {
                match r.pending(video).await {
                    Ok(p) => c.add(&p),
                    Err(e) => self.failed(&e),
                }
            }
        }
        c
    }

    /// The stores to flush, in-process first.
    pub fn stores(&self) -> Vec<&dyn HotStore> {
        let mut v: Vec<&dyn HotStore> = vec![&self.memory];
        if let Some(r) = &self.redis {
            v.push(r);
        }
        v
    }

    pub fn note(&self, r: &Result<()>) {
        match r {
            Ok(()) => self.ok(),
            Err(e) => self.failed(e),
        }
    }

    pub async fn rate(&self, key: &str, limit: u32, window: Duration) -> Result<Option<i64>> {
        let now = crate::store::catalog::now_ms();
        let w = window.as_millis() as i64;
        either!(self, s => s.rate(key, limit, w, now))
    }

    pub async fn idem_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<KeyState> {
        either!(self, s => s.idem_claim(scope, key, fingerprint, in_flight))
    }

    pub async fn idem_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
        keep: Duration,
    ) -> Result<()> {
        either!(self, s => s.idem_finish(scope, key, status, body, keep))
    }

    pub async fn idem_drop(&self, scope: &str, key: &str) -> Result<()> {
        either!(self, s => s.idem_drop(scope, key))
    }

    /// Best effort: without Redis only this process's subscribers hear it,
    /// and they already have.
    pub async fn publish(&self, payload: &str) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.publish(payload).await {
                self.failed(&e);
            }
        }
    }

    /// `publish` on another channel (users' notifications), just as best
    /// effort.
    pub async fn publish_to(&self, channel: &str, payload: &str) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.publish_to(channel, payload).await {
                self.failed(&e);
            }
        }
    }

    pub async fn ping(&self) -> Result<()> {
        match &self.redis {
            Some(r) => r.ping().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every `HotStore` must have, run against each one.
    use super::*;

    pub async fn counters(s: &dyn HotStore) {
        let mut d = HashMap::new();
        d.insert(
            "v1".to_string(),
            Counts {
                views: 2,
                likes: 1,
                ..Counts::default()
            },
        );
        s.add(&d).await.unwrap();
        s.add(&d).await.unwrap();
        assert_eq!(s.pending("v1").await.unwrap().views, 4);
        let t = s.take().await.unwrap().expect("something pending");
        assert_eq!(
            t.counts["v1"],
            Counts {
                views: 4,
                likes: 2,
                ..Counts::default()
            }
        );
        // Added while the take is being applied: kept for the next one.
        s.add(&d).await.unwrap();
        // Not finished (a crash): handed out again, same id, same counts.
        let again = s.take().await.unwrap().unwrap();
        assert_eq!(
            (again.id.as_str(), &again.counts),
            (t.id.as_str(), &t.counts)
        );
        s.finish_take(&t.id).await.unwrap();
        let next = s.take().await.unwrap().unwrap();
        assert_ne!(next.id, t.id);
        assert_eq!(next.counts["v1"].views, 2);
        s.finish_take(&next.id).await.unwrap();
        assert!(s.take().await.unwrap().is_none());
    }

    pub async fn rate_limits(s: &dyn HotStore) {
        let key = format!("test:{}", uuid::Uuid::new_v4());
        for i in 0..3 {
            assert_eq!(s.rate(&key, 3, 10_000, 1_000 + i).await.unwrap(), None);
        }
        // The 4th waits until the first leaves the window.
        assert_eq!(s.rate(&key, 3, 10_000, 5_000).await.unwrap(), Some(6_000));
        assert_eq!(s.rate(&key, 3, 10_000, 11_000).await.unwrap(), None);
    }

    pub async fn idempotency(s: &dyn HotStore) {
        let (scope, key) = ("u1 POST /videos", uuid::Uuid::new_v4().to_string());
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            s.idem_claim(scope, &key, "f", ttl).await.unwrap(),
            KeyState::New
        ));
        assert!(matches!(
            s.idem_claim(scope, &key, "f", ttl).await.unwrap(),
            KeyState::InFlight
        ));
        assert!(matches!(
            s.idem_claim(scope, &key, "g", ttl).await.unwrap(),
            KeyState::OtherRequest
        ));
        s.idem_finish(scope, &key, 202, b"{}", ttl).await.unwrap();
        match s.idem_claim(scope, &key, "f", ttl).await.unwrap() {
            KeyState::Done { status, body } => {
                assert_eq!((status, body.as_slice()), (202, &b"{}"[..]))
            }
            other @ (KeyState::New | KeyState::InFlight | KeyState::OtherRequest) => {
                panic!("{other:?}")
            }
        }
        let k2 = uuid::Uuid::new_v4().to_string();
        assert!(matches!(
            s.idem_claim(scope, &k2, "f", ttl).await.unwrap(),
            KeyState::New
        ));
        s.idem_drop(scope, &k2).await.unwrap();
        assert!(matches!(
            s.idem_claim(scope, &k2, "f", ttl).await.unwrap(),
            KeyState::New
        ));
    }
}
