//! In-process hot state for the embedded profile (and the fallback while
//! Redis is away). Idempotency keys live in the catalog rather than in
//! memory: they must survive a restart of the only process there is.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Counts, HotStore, KeyState, Taken};
use crate::error::Result;
use crate::store::catalog::{self as cat, Catalog};

pub struct Memory {
    counts: Mutex<HashMap<String, Counts>>,
    flushing: Mutex<Option<Taken>>,
    windows: Mutex<HashMap<String, VecDeque<i64>>>,
    catalog: Catalog,
}

impl Memory {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            counts: Mutex::default(),
            flushing: Mutex::default(),
            windows: Mutex::default(),
            catalog,
        }
    }
}

#[async_trait]
impl HotStore for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn add(&self, deltas: &HashMap<String, Counts>) -> Result<()> {
        let mut m = self.counts.lock();
        for (video, d) in deltas {
            m.entry(video.clone()).or_default().add(d);
        }
        Ok(())
    }

    async fn pending(&self, video: &str) -> Result<Counts> {
        let mut c = self.counts.lock().get(video).copied().unwrap_or_default();
        if let Some(t) = self.flushing.lock().as_ref() {
            if let Some(f) = t.counts.get(video) {
                c.add(f);
            }
        }
        Ok(c)
    }

    async fn take(&self) -> Result<Option<Taken>> {
        let mut flushing = self.flushing.lock();
        if flushing.is_none() {
            let counts = std::mem::take(&mut *self.counts.lock());
            if counts.is_empty() {
                return Ok(None);
            }
            *flushing = Some(Taken {
                id: uuid::Uuid::new_v4().simple().to_string(),
                counts,
            });
        }
        Ok(flushing.clone())
    }

    async fn finish_take(&self, id: &str) -> Result<()> {
        let mut f = self.flushing.lock();
        if f.as_ref().is_some_and(|t| t.id == id) {
            *f = None;
        }
        Ok(())
    }

    async fn rate(&self, key: &str, limit: u32, window_ms: i64, now: i64) -> Result<Option<i64>> {
        let mut w = self.windows.lock();
        if w.len() > 100_000 {
            // Forget windows that have emptied, so idle keys do not pile up.
            w.retain(|_, q| q.back().is_some_and(|&t| t > now - window_ms));
        }
        let q = w.entry(key.to_owned()).or_default();
        while q.front().is_some_and(|&t| t <= now - window_ms) {
            q.pop_front();
        }
        if q.len() < limit as usize {
            q.push_back(now);
            return Ok(None);
        }
        Ok(Some(q.front().map_or(0, |&t| t + window_ms - now)))
    }

    async fn idem_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<KeyState> {
        let (s, k, f) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        self.catalog
            .call(move |c| cat::claim_key(c, &s, &k, &f, in_flight))
            .await
    }

    async fn idem_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
        _keep: Duration,
    ) -> Result<()> {
        let (s, k, b) = (scope.to_owned(), key.to_owned(), body.to_vec());
        self.catalog
            .call(move |c| cat::finish_key(c, &s, &k, status, &b))
            .await
    }

    async fn idem_drop(&self, scope: &str, key: &str) -> Result<()> {
        let (s, k) = (scope.to_owned(), key.to_owned());
        self.catalog.call(move |c| cat::drop_key(c, &s, &k)).await
    }

    async fn publish(&self, _payload: &str) -> Result<()> {
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Memory) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        (dir, Memory::new(catalog))
    }

    #[tokio::test]
    async fn counters_are_taken_atomically_and_retaken_until_finished() {
        let (_d, s) = store();
        super::super::contract::counters(&s).await;
    }

    #[tokio::test]
    async fn sliding_window_rate_limit() {
        let (_d, s) = store();
        super::super::contract::rate_limits(&s).await;
    }

    #[tokio::test]
    async fn idempotency_keys() {
        let (_d, s) = store();
        super::super::contract::idempotency(&s).await;
    }
}
