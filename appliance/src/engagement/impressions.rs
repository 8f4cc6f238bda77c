//! Impressions on the event path: a feed page's impressions are appended
//! to the spool (one group-committed `fdatasync` shared with every other
//! append in flight, no database write on the feed's path), shipped with
//! the other events and stored by the analytics store in a table of their
//! own. They never reach the hot counters, the recent-id filter, the feed
//! engine's statistics or any rollup: an impression is not a view.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::events::{Event, Kind};
use super::Engagement;
use crate::error::{Error, Result};

impl Engagement {
    /// Makes a page's impressions durable (in the spool, synced) before
    /// the page is answered.
    pub async fn record_impressions(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if events.iter().any(|e| e.kind != Kind::Impression) {
            return Err(Error::Task("only impressions go this way".into()));
        }
        match self.spool()?.append(&events).await {
            Ok(()) => {
                self.stats
                    .impressions
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats
                    .impressions_lost
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Waits, at most `limit`, until every event accepted before the call
    /// is in the analytics store (the shipper delivers in order). Returns
    /// how many of them are still in the spool (0: all delivered).
    ///
    /// Only the spool's own counters: what it had accepted at the call is
    /// the target, its delivered count the progress, both counted from the
    /// same open (events pending at open are in the accepted count).
    pub async fn settle(&self, limit: Duration) -> u64 {
        let Ok(spool) = self.spool() else {
            return 0;
        };
        let target = spool.appended();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = target.saturating_sub(spool.shipped());
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
