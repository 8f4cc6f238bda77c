//! The shipper: delivers the spool to the analytics store in order, one
//! batch at a time, with back-off while the store fails, until shutdown
//! (then one last pass).
//!
//! Exactly once, looking up only retries. A batch is read from the spool's
//! cursor, delivered, and only then is the cursor moved (fsync'd). The one
//! delivery whose outcome can be unknown is therefore the latest: after a
//! crash between the store's commit and the cursor, or after an error
//! (a timeout, a refused cursor write) that may have come after the store
//! took the batch. Nothing else is delivered until that one is settled, so
//! the shipper marks just that case: `in_doubt` counts the events from the
//! cursor on that an unsettled attempt may have stored. While it is
//! non-zero the next batch covers at least that many events and goes as
//! `Attempt::Retry` (the store skips what it already has: ClickHouse looks
//! the ids up in `event_ids`, the embedded store in the rows of its last
//! delivery); once the cursor has moved past a batch it is zero again and
//! batches go as `Attempt::First`, inserted without a lookup. A shipper
//! that starts knows nothing of the previous process's last attempt, so it
//! starts in doubt about the largest delivery any release makes.
//!
//! Repeats a client sends (a batch retried after a lost 202) are not the
//! shipper's business: the recent-id filter drops them at accept time,
//! and it is seeded from the spool's recent records at start so a restart
//! does not open a gap (see `pipeline::Engagement::start`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::analytics::{AnalyticsStore, Attempt, LARGEST_DELIVERY};
use super::pipeline::{Engagement, Stats};
use super::spool::{Reader, Spool};
use crate::error::Result;

pub(super) struct Shipper<'a> {
    reader: Reader,
    store: &'a dyn AnalyticsStore,
    stats: &'a Stats,
    /// Events per delivery.
    limit: usize,
    /// Events from the cursor on that an unsettled attempt may have stored.
    in_doubt: usize,
}

impl<'a> Shipper<'a> {
    pub(super) fn new(
        reader: Reader,
        store: &'a dyn AnalyticsStore,
        stats: &'a Stats,
        limit: usize,
    ) -> Self {
        Self {
            reader,
            store,
            stats,
            limit: limit.clamp(1, LARGEST_DELIVERY),
            in_doubt: LARGEST_DELIVERY,
        }
    }

    /// Delivers the next batch; `false` when the spool had nothing new.
    pub(super) async fn step(&mut self) -> Result<bool> {
        let attempt = if self.in_doubt > 0 {
            Attempt::Retry
        } else {
            Attempt::First
        };
        // A retry covers everything the unsettled attempt may have stored:
        // it read from the same cursor, and the spool only grows.
        let batch = self.reader.read(self.limit.max(self.in_doubt))?;
        if batch.events.is_empty() {
            return Ok(false);
        }
        self.in_doubt = self.in_doubt.max(batch.events.len());
        let stored = self.store.deliver(&batch.events, attempt).await?;
        self.reader.commit(&batch)?;
        self.in_doubt = 0;
        let s = self.stats;
        let n = batch.events.len() as u64;
        s.shipped.fetch_add(n, Ordering::Relaxed);
        s.already_stored
            .fetch_add(n.saturating_sub(stored as u64), Ordering::Relaxed);
        s.ship_batches.fetch_add(1, Ordering::Relaxed);
        if attempt == Attempt::Retry {
            s.ship_retries.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(last) = batch.events.last() {
            s.last_shipped_received
                .store(last.received, Ordering::Relaxed);
        }
        Ok(true)
    }

    pub(super) async fn wait(&self, max: Duration) {
        self.reader.wait(max).await;
    }
}

/// Delivers the spool until shutdown (then one last pass).
pub(super) async fn run(e: &Engagement, mut stop: watch::Receiver<bool>) {
    let reader = match e.spool().and_then(Spool::reader) {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(error = %err, "the shipper cannot read the spool; events stay on disk");
            return;
        }
    };
    let store = e.analytics.as_ref();
    let mut shipper = Shipper::new(reader, store, &e.stats, e.cfg.batch_size);
    let mut migrated = false;
    let mut backoff = Duration::from_millis(e.cfg.retry_min_ms);
    loop {
        let stopping = *stop.borrow();
        let result = async {
            if !migrated {
                store.migrate().await?;
                migrated = true;
            }
            shipper.step().await
        }
        .await;
        match result {
            Ok(true) => {
                backoff = Duration::from_millis(e.cfg.retry_min_ms);
                continue;
            }
            Ok(false) if stopping => return,
            Ok(false) => {
                tokio::select! {
                    _ = shipper.wait(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(err) => {
                e.stats.ship_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %err,
                    store = store.name(),
                    pending = e.spool_depth(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "delivering events failed; they stay in the spool"
                );
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_millis(e.cfg.retry_max_ms));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use async_trait::async_trait;
    use parking_lot::Mutex;

    use super::*;
    use crate::engagement::analytics::{
        Embedded, HourRow, PastImpression, PastWatch, Scope, Totals, VariantCounts, VideoHour,
    };
    use crate::engagement::events::{Event, Kind};
    use crate::error::Error;

    fn watches(from: usize, to: usize) -> Vec<Event> {
        (from..to)
            .map(|i| {
                let mut e = Event::action(Kind::Watch, format!("e{i}"), "v", "c", "u");
                e.watch_ms = 10;
                e.duration_ms = 20;
                e.source = "fyp".into();
                e
            })
            .collect()
    }

    async fn counted(store: &Embedded) -> (u64, u64) {
        let rows = store.rollups(&Scope::Video("v".into()), 0).await.unwrap();
        let mut stored = 0;
        store
            .watch_history(&mut |c| stored += c.len() as u64)
            .await
            .unwrap();
        (Totals::of(&rows).views, stored)
    }

    async fn drain(s: &mut Shipper<'_>) {
        while s.step().await.unwrap() {}
    }

    #[tokio::test]
    async fn a_crash_between_the_insert_and_the_cursor_does_not_double_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("analytics.db")).unwrap();
        let stats = Stats::default();
        {
            let spool = Spool::open(&dir.path().join("spool")).unwrap();
            spool.append(&watches(0, 30)).await.unwrap();
            let mut s = Shipper::new(spool.reader().unwrap(), &store, &stats, 10);
            // Just started: a retry, as large as any delivery can be.
            assert!(s.step().await.unwrap());
            assert!(!s.step().await.unwrap(), "all 30 went at once");
            spool.append(&watches(30, 40)).await.unwrap();
            assert!(s.step().await.unwrap());
            // The next batch reaches the store, then the process dies
            // before the cursor moves past it.
            spool.append(&watches(40, 50)).await.unwrap();
            let mut r = spool.reader().unwrap();
            let b = r.read(10).unwrap();
            assert_eq!(b.events.first().map(|e| e.id.as_str()), Some("e40"));
            assert_eq!(b.events.len(), 10);
            store.deliver(&b.events, Attempt::First).await.unwrap();
            assert_eq!(counted(&store).await, (50, 50));
        }
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        spool.append(&watches(50, 65)).await.unwrap();
        let mut s = Shipper::new(spool.reader().unwrap(), &store, &stats, 10);
        drain(&mut s).await;
        assert_eq!(counted(&store).await, (65, 65), "each event counted once");
        assert_eq!(spool.depth(), 0);
        // 25 read back after the restart, 10 of them already stored.
        assert_eq!(stats.already_stored.load(Ordering::Relaxed), 10);
    }

    /// Stores through `inner`, records each attempt, and can lose the
    /// answer of the next delivery after it was stored.
    struct Flaky {
        inner: Embedded,
        attempts: Mutex<Vec<Attempt>>,
        lose_next: AtomicBool,
    }

    #[async_trait]
    impl AnalyticsStore for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn migrate(&self) -> Result<()> {
            Ok(())
        }
        async fn deliver(&self, events: &[Event], attempt: Attempt) -> Result<usize> {
            self.attempts.lock().push(attempt);
            let n = self.inner.deliver(events, attempt).await?;
            if self.lose_next.swap(false, Ordering::Relaxed) {
                return Err(Error::Task("the store's answer was lost".into()));
            }
            Ok(n)
        }
        async fn rollups(&self, scope: &Scope, since: i64) -> Result<Vec<HourRow>> {
            self.inner.rollups(scope, since).await
        }
        async fn unique_viewers(&self, scope: &Scope, since: i64) -> Result<u64> {
            self.inner.unique_viewers(scope, since).await
        }
        async fn activity(&self, since: i64) -> Result<Vec<VideoHour>> {
            self.inner.activity(since).await
        }
        async fn total_views(
            &self,
            videos: &[String],
        ) -> Result<std::collections::HashMap<String, u64>> {
            self.inner.total_views(videos).await
        }
        async fn watch_history(
            &self,
            sink: &mut (dyn FnMut(Vec<PastWatch>) + Send),
        ) -> Result<u64> {
            self.inner.watch_history(sink).await
        }
        async fn impressions(
            &self,
            sink: &mut (dyn FnMut(Vec<PastImpression>) + Send),
        ) -> Result<u64> {
            self.inner.impressions(sink).await
        }
        async fn experiment_counts(&self, experiment: &str) -> Result<Vec<VariantCounts>> {
            self.inner.experiment_counts(experiment).await
        }
        async fn ping(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn only_a_batch_whose_outcome_was_lost_is_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Flaky {
            inner: Embedded::open(&dir.path().join("analytics.db")).unwrap(),
            attempts: Mutex::default(),
            lose_next: AtomicBool::new(false),
        });
        let stats = Stats::default();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let mut s = Shipper::new(spool.reader().unwrap(), flaky.as_ref(), &stats, 8);
        spool.append(&watches(0, 8)).await.unwrap();
        drain(&mut s).await;
        spool.append(&watches(8, 16)).await.unwrap();
        drain(&mut s).await;
        // Stored, but the answer never came back.
        spool.append(&watches(16, 20)).await.unwrap();
        flaky.lose_next.store(true, Ordering::Relaxed);
        assert!(s.step().await.is_err());
        // Meanwhile more was spooled: the retry covers both.
        spool.append(&watches(20, 26)).await.unwrap();
        drain(&mut s).await;
        spool.append(&watches(26, 30)).await.unwrap();
        drain(&mut s).await;
        use Attempt::{First, Retry};
        assert_eq!(
            *flaky.attempts.lock(),
            [Retry, First, First, Retry, First, First],
            "a start and a lost answer are retries; nothing else is"
        );
        assert_eq!(counted(&flaky.inner).await, (30, 30));
        assert_eq!(stats.already_stored.load(Ordering::Relaxed), 4);
        assert_eq!(stats.ship_retries.load(Ordering::Relaxed), 2);
    }
}
