//! The feed's circuit breaker and its counters, and their Prometheus text.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Recommender;

/// Opens after `failures` consecutive failures; while open, personalised
/// feeds are not attempted for `open_for`.
pub struct Breaker {
    failures: AtomicU32,
    threshold: u32,
    open_until: Mutex<Option<Instant>>,
    open_for: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            open_until: Mutex::new(None),
            open_for,
        }
    }

    pub fn is_open(&self) -> bool {
        let mut until = self.open_until.lock();
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                // Half-open: let the next request try.
                *until = None;
                false
            }
            None => false,
        }
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    pub fn failure(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            *self.open_until.lock() = Some(Instant::now() + self.open_for);
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub struct FeedStats {
    pub requests: AtomicU64,
    pub fallbacks: AtomicU64,
    pub embedded: AtomicU64,
    pub watches: AtomicU64,
    /// Feed latency histogram: counts per bucket of [`LATENCY_BUCKETS_MS`].
    pub latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    pub latency_sum_us: AtomicU64,
    /// Pages by source, in the order of [`SOURCES`].
    pub by_source: [AtomicU64; SOURCES.len()],
}

/// Where a page can come from (`Served::source`); the last is the
/// fallback when personalisation failed.
pub const SOURCES: [&str; 5] = [
    "personalized",
    "cold_start",
    "following",
    "trending",
    "trending_fallback",
];

impl FeedStats {
    /// Counts one page served in `took` from `source`.
    pub fn observe(&self, took: Duration, source: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if source == "trending_fallback" {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = SOURCES.iter().position(|s| *s == source) {
            self.by_source[i].fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Pages so far by source, those with any.
    pub fn sources(&self) -> Vec<(String, u64)> {
        SOURCES
            .iter()
            .zip(&self.by_source)
            .map(|(s, n)| ((*s).to_owned(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

pub const LATENCY_BUCKETS_MS: [f64; 8] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0];

impl Recommender {
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = &self.stats;
        let series = [
            (
                "appliance_feed_requests_total",
                "counter",
                "Feed pages asked for.",
                s.requests.load(Ordering::Relaxed),
            ),
            (
                "appliance_feed_fallbacks_total",
                "counter",
                "Feed pages served from trending because personalisation failed, timed out or its breaker was open.",
                s.fallbacks.load(Ordering::Relaxed),
            ),
            (
                "appliance_videos_embedded_total",
                "counter",
                "Videos embedded and added to the video index by this process.",
                s.embedded.load(Ordering::Relaxed),
            ),
            (
                "appliance_watch_events_total",
                "counter",
                "Watch events the recommender learned from.",
                s.watches.load(Ordering::Relaxed),
            ),
            (
                "appliance_feed_index_videos",
                "gauge",
                "Videos in the feed's vector index.",
                self.engine.videos_index.len() as u64,
            ),
            (
                "appliance_feed_cached_videos",
                "gauge",
                "Published videos whose page metadata is cached.",
                self.meta.len() as u64,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP appliance_feed_pages_total Feed pages served, by source.\n# TYPE appliance_feed_pages_total counter"
        );
        for (name, n) in SOURCES.iter().zip(&s.by_source) {
            let _ = writeln!(
                out,
                "appliance_feed_pages_total{{source=\"{name}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP appliance_feed_latency_seconds Time to build a feed page, cache misses and fallbacks included."
        );
        let _ = writeln!(out, "# TYPE appliance_feed_latency_seconds histogram");
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cum += s.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "appliance_feed_latency_seconds_bucket{{le=\"{}\"}} {cum}",
                b / 1000.0
            );
        }
        cum += s.latency[LATENCY_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "appliance_feed_latency_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            out,
            "appliance_feed_latency_seconds_sum {}",
            s.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "appliance_feed_latency_seconds_count {cum}");
    }
}
