//! The engagement event path and its background work.
//!
//! Accept: validate → drop ids seen in the last minutes → append to the
//! spool (fsync'd: this is what makes the 202 true) → count in the hot store
//! → hand watches to the feed engine. Then, in the background: the shipper
//! delivers the spool to the analytics store in large batches with back-off;
//! the flusher moves hot counters into the catalog (get-and-reset, applied
//! once per flush id); reconciliation repairs catalog counters from their
//! sources of truth (rows for likes/saves/shares/comments, the analytics
//! rollups for views); trending is recomputed from the rollups.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::analytics::{self, AnalyticsStore};
use super::events::{Event, Kind, RecentIds};
use super::hot::{self, Counts, Hot};
use super::spool::Spool;
use super::{shipper, Listener};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, Catalog};
use settings::{AnalyticsKind, Config, HotKind};

/// Trending hashtags as last computed from the rollups: tag, score, videos.
pub type TrendingTags = Vec<(String, f64, u32)>;

#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub shipped: AtomicU64,
    pub ship_batches: AtomicU64,
    /// Batches delivered as retries (after a start or a failed attempt).
    pub ship_retries: AtomicU64,
    pub ship_failures: AtomicU64,
    pub already_stored: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub reconciled: AtomicU64,
    /// Receive time of the newest event delivered, ms.
    pub last_shipped_received: AtomicI64,
    /// Feed impressions spooled, and those the spool refused.
    pub impressions: AtomicU64,
    pub impressions_lost: AtomicU64,
}

pub struct Engagement {
    spool: OnceLock<Spool>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub hot: Hot,
    recent: RecentIds,
    owners: RwLock<HashMap<String, String>>,
    /// Videos whose counters moved since the last reconciliation.
    touched: Mutex<HashSet<String>>,
    trending_tags: RwLock<TrendingTags>,
    pub stats: Stats,
    /// Tags status events this process publishes, so it ignores its own.
    pub instance: String,
    pub(super) cfg: settings::Analytics,
    flush_every: Duration,
    /// How long a finished idempotency key replays its response.
    pub(super) idempotency_hours: u64,
    pub(super) catalog: Catalog,
}

impl Engagement {
    /// Sets up the stores without touching the spool (`start` does, once
    /// the process holds the data directory).
    pub fn new(config: &Config, catalog: Catalog) -> Result<Self> {
        let a = &config.analytics;
        let analytics: Arc<dyn AnalyticsStore> = match a.kind {
            AnalyticsKind::Embedded => Arc::new(analytics::Embedded::open(
                &config.storage.data_dir.join("analytics.db"),
            )?),
            AnalyticsKind::Clickhouse => Arc::new(analytics::ClickHouse::new(
                &a.url,
                &a.database,
                &a.user,
                &a.password,
                Duration::from_secs(a.timeout_secs.max(1)),
            )),
        };
        let redis = match config.hot.kind {
            HotKind::Memory => None,
            HotKind::Redis => Some(hot::Redis::new(
                &config.hot.redis_url,
                Duration::from_millis(config.hot.timeout_ms.max(1)),
            )?),
        };
        Ok(Self {
            spool: OnceLock::new(),
            analytics,
            hot: Hot::new(redis, hot::Memory::new(catalog.clone())),
            recent: RecentIds::new(a.dedupe_window_secs, 4_000_000),
            owners: RwLock::default(),
            touched: Mutex::default(),
            trending_tags: RwLock::default(),
            stats: Stats::default(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            cfg: a.clone(),
            flush_every: Duration::from_secs(config.hot.flush_secs),
            idempotency_hours: config.hot.idempotency_hours,
            catalog,
        })
    }

    /// Opens the spool in `<data_dir>/spool` and moves watch events a
    /// version-2 catalog still holds into it.
    pub async fn start(&self, data_dir: &Path) -> Result<()> {
        let catalog = &self.catalog;
        let spool = Spool::open(&data_dir.join("spool"))?;
        let spool = match self.spool.set(spool) {
            Ok(()) => self.spool()?,
            Err(_) => return Err(Error::Task("the spool was opened twice".into())),
        };
        // The recent-id filter starts with what the last process accepted
        // in its window: a client re-sending a batch after a crash swallowed
        // its 202 is then dropped here, as it would have been without the
        // crash (the store checks ids only of deliveries retried after one).
        let now = now_ms();
        let mut ids = Vec::new();
        spool.recent(now - self.cfg.dedupe_window_secs as i64 * 1000, |e| {
            if e.kind != Kind::Impression {
                ids.push(e.id.clone());
            }
        })?;
        for chunk in ids.chunks(10_000) {
            self.recent
                .first_seen(chunk.iter().map(String::as_str), now);
        }
        let mut moved = 0usize;
        while let Some(rows) = catalog.call(|c| cat::legacy_watches(c, 10_000)).await? {
            let last = rows.last().map_or(0, |r| r.0);
            let events: Vec<Event> = rows
                .iter()
                .map(|(_, w, owner)| Event {
                    id: w.event_id.clone(),
                    kind: Kind::Watch,
                    ts: w.ts,
                    received: now_ms(),
                    video: w.video_id.clone(),
                    creator: owner.clone(),
                    user: w.user_id.clone(),
                    watch_ms: w.watch_ms.clamp(0, u32::MAX as i64) as u32,
                    duration_ms: w.duration_ms.clamp(0, u32::MAX as i64) as u32,
                    completed: w.completed,
                    liked: w.liked,
                    shared: w.shared,
                    source: w.source.clone(),
                    channel: String::new(),
                    shown: None,
                })
                .collect();
            spool.append(&events).await?;
            moved += events.len();
            catalog
                .call(move |c| cat::forget_legacy_watches(c, last))
                .await?;
        }
        if moved > 0 {
            tracing::info!(
                events = moved,
                "moved watch events from the catalog to the spool"
            );
        }
        Ok(())
    }

    /// Every event in the spool not yet delivered (for the feed's warm-up).
    pub fn undelivered(&self) -> Result<Vec<Event>> {
        let mut r = self.spool()?.reader()?;
        let mut out = Vec::new();
        loop {
            let b = r.read(50_000)?;
            if b.events.is_empty() {
                return Ok(out);
            }
            r.skip(&b);
            out.extend(b.events);
        }
    }

    pub(super) fn spool(&self) -> Result<&Spool> {
        self.spool
            .get()
            .ok_or_else(|| Error::Task("the event spool is not open in this process".into()))
    }

    pub fn spool_depth(&self) -> u64 {
        self.spool.get().map_or(0, Spool::depth)
    }

    pub fn spool_lag_ms(&self) -> i64 {
        self.spool.get().map_or(0, |s| s.lag_ms(now_ms()))
    }

    pub fn spool_bytes(&self) -> i64 {
        self.spool.get().map_or(0, Spool::bytes_pending)
    }

    /// Owner of each of `videos` that exists (cached; owners never change).
    pub async fn owners(&self, videos: &[&str]) -> Result<HashMap<String, String>> {
        let catalog = &self.catalog;
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let known = self.owners.read();
            for v in videos {
                match known.get(*v) {
                    Some(o) => {
                        out.insert((*v).to_owned(), o.clone());
                    }
                    None => missing.push((*v).to_owned()),
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            let found = catalog
                .call(move |c| {
                    let mut found = Vec::new();
                    for id in missing {
                        if let Some(v) = cat::video(c, &id)? {
                            if v.state != "deleting" {
                                found.push((id, v.owner_id));
                            }
                        }
                    }
                    Ok(found)
                })
                .await?;
            let mut known = self.owners.write();
            for (id, owner) in found {
                known.insert(id.clone(), owner.clone());
                out.insert(id, owner);
            }
        }
        Ok(out)
    }

    pub fn forget_video(&self, video: &str) {
        self.owners.write().remove(video);
    }

    /// Durably accepts events. Returns the ones not seen in the last few
    /// minutes (what counters and the feed should learn from), after they
    /// are in the spool.
    pub async fn accept(&self, events: Vec<Event>) -> Result<(Vec<Event>, usize)> {
        let now = now_ms();
        let fresh_flags = self
            .recent
            .first_seen(events.iter().map(|e| e.id.as_str()), now);
        let total = events.len();
        let fresh: Vec<Event> = events
            .into_iter()
            .zip(fresh_flags)
            .filter_map(|(e, f)| f.then_some(e))
            .collect();
        let dups = total - fresh.len();
        if let Err(e) = self.spool()?.append(&fresh).await {
            // Not accepted: let a retry of these ids through.
            self.recent.forget(fresh.iter().map(|e| e.id.as_str()));
            return Err(e);
        }
        self.stats
            .accepted
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(dups as u64, Ordering::Relaxed);
        let mut deltas: HashMap<String, Counts> = HashMap::new();
        for e in &fresh {
            let d = deltas.entry(e.video.clone()).or_default();
            let [l, c, s, v] = e.kind.engagement();
            d.add(&Counts {
                views: i64::from(e.kind == Kind::Watch),
                likes: l,
                comments: c,
                shares: s,
                saves: v,
            });
        }
        if let Err(e) = self.hot.add(&deltas).await {
            // In-process counting cannot fail; this is only reached if it
            // did: reconciliation repairs the counters.
            tracing::warn!(error = %e, "counting events failed");
        }
        self.touched.lock().extend(deltas.into_keys());
        Ok((fresh, dups))
    }

    pub fn trending_tags(&self) -> TrendingTags {
        self.trending_tags.read().clone()
    }

    /// The background work; returns the tasks to await at shutdown.
    pub fn spawn(
        self: &Arc<Self>,
        listener: Arc<dyn Listener>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let shipper = {
            let me = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { shipper::run(&me, stop).await })
        };
        let flusher = {
            let me = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut last_reconcile = tokio::time::Instant::now();
                loop {
                    let stopping = tokio::select! {
                        _ = tokio::time::sleep(me.flush_every) => false,
                        _ = stop.changed() => true,
                    };
                    let flushed = me.flush().await;
                    let due =
                        last_reconcile.elapsed() >= Duration::from_secs(me.cfg.reconcile_secs);
                    if (due || me.hot.take_recovered()) && flushed && !me.hot.degraded() {
                        last_reconcile = tokio::time::Instant::now();
                        if let Err(e) = me.reconcile().await {
                            tracing::warn!(error = %e, "reconciling counters failed; will retry");
                        }
                    }
                    if stopping {
                        break;
                    }
                }
            })
        };
        let trender = {
            let me = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = me.recompute_trending(listener.as_ref()).await {
                        tracing::warn!(error = %e, "recomputing trending failed; keeping the last list");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(me.cfg.trending_secs)) => {}
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        vec![shipper, flusher, trender]
    }

    /// Moves every store's pending counters into the catalog. `true` when
    /// every store was flushed.
    pub async fn flush(&self) -> bool {
        let catalog = &self.catalog;
        let mut all = true;
        for store in self.hot.stores() {
            let r = async {
                let Some(taken) = store.take().await? else {
                    return Ok(());
                };
                let (id, counts) = (taken.id.clone(), taken.counts);
                catalog
                    .call(move |c| cat::apply_counts(c, &id, &counts))
                    .await?;
                store.finish_take(&taken.id).await
            }
            .await;
            if store.name() == "redis" {
                self.hot.note(&r);
            }
            match r {
                Ok(()) => {
                    self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    all = false;
                    self.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, store = store.name(), "counter flush failed; retrying later");
                }
            }
        }
        all
    }

    /// Sets the counters of recently touched videos from their sources of
    /// truth. Views only when the spool is drained (else the rollups are
    /// behind and would pull the count back).
    pub async fn reconcile(&self) -> Result<usize> {
        let catalog = &self.catalog;
        let ids: Vec<String> = std::mem::take(&mut *self.touched.lock())
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let result = async {
            // One decision: a video absent from the totals has no views.
            let with_views: HashMap<String, u64> = if self.spool_depth() == 0 {
                let views = self.analytics.total_views(&ids).await?;
                ids.iter()
                    .map(|v| (v.clone(), views.get(v).copied().unwrap_or(0)))
                    .collect()
            } else {
                HashMap::new()
            };
            let list = ids.clone();
            catalog
                .call(move |c| cat::reconcile_counts(c, &list, &with_views))
                .await
        }
        .await;
        match result {
            Ok(fixed) => {
                self.stats
                    .reconciled
                    .fetch_add(fixed as u64, Ordering::Relaxed);
                if fixed > 0 {
                    tracing::info!(videos = fixed, "counters reconciled with their sources");
                }
                Ok(fixed)
            }
            Err(e) => {
                self.touched.lock().extend(ids);
                Err(e)
            }
        }
    }

    /// Trending from the last 48 h of rollups: engagement velocity (views,
    /// likes and shares per hour, halving every 6 h) × quality (smoothed
    /// completion rate, boosted by share rate) × recency of the video
    /// (halving every 48 h). Hashtags score the sum of their videos.
    pub async fn recompute_trending(&self, listener: &dyn Listener) -> Result<()> {
        let catalog = &self.catalog;
        let now = now_ms() / 1000;
        let rows = self.analytics.activity(now - 48 * 3600).await?;
        let mut per: HashMap<String, (f64, u64, u64, i64)> = HashMap::new();
        for r in rows {
            let age_h = ((now - r.hour) as f64 / 3600.0 - 1.0).max(0.0);
            let decay = 0.5f64.powf(age_h / 6.0);
            let e = per.entry(r.video).or_default();
            e.0 += decay
                * (r.views as f64 + 2.0 * r.likes.max(0) as f64 + 4.0 * r.shares.max(0) as f64);
            e.1 += r.views;
            e.2 += r.completions;
            e.3 += r.shares;
        }
        let ids: Vec<String> = per.keys().cloned().collect();
        let videos = catalog.call(move |c| cat::public_videos(c, &ids)).await?;
        let mut scored: Vec<(f64, &cat::VideoRow)> = videos
            .iter()
            .filter_map(|v| {
                let (velocity, views, completions, shares) = per.get(&v.id)?;
                let completion = (*completions as f64 + 1.0) / (*views as f64 + 2.0);
                let share_rate = shares.max(&0).to_owned() as f64 / (*views as f64).max(1.0);
                let quality = completion * (1.0 + 10.0 * share_rate);
                let age_h = (now - v.created_at / 1000).max(0) as f64 / 3600.0;
                let recency = 0.5f64.powf(age_h / 48.0);
                let score = velocity * quality * recency;
                (score > 0.0).then_some((score, v))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(200);
        let mut tags: HashMap<String, (f64, u32)> = HashMap::new();
        for (score, v) in &scored {
            for t in &v.hashtags {
                let e = tags.entry(t.to_lowercase()).or_default();
                e.0 += score;
                e.1 += 1;
            }
        }
        let mut hashtags: Vec<(String, f64, u32)> =
            tags.into_iter().map(|(t, (s, n))| (t, s, n)).collect();
        hashtags.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hashtags.truncate(100);
        let ids: Vec<String> = scored.iter().map(|(_, v)| v.id.clone()).collect();
        if !ids.is_empty() {
            // No activity at all (a fresh box): the engine's own list stays.
            listener.trending(&ids);
        }
        *self.trending_tags.write() = hashtags;
        Ok(())
    }

    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        let g = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        g(
            out,
            "appliance_events_accepted_total",
            "Engagement events accepted (spooled).",
            "counter",
            s.accepted.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_events_duplicate_total",
            "Events dropped as repeats at accept time.",
            "counter",
            s.duplicates.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_events_shipped_total",
            "Events delivered to the analytics store.",
            "counter",
            s.shipped.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_events_already_stored_total",
            "Delivered events the analytics store already had (retries).",
            "counter",
            s.already_stored.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_event_ship_retries_total",
            "Batches delivered as retries (looked up in the store: after a start or a failed attempt).",
            "counter",
            s.ship_retries.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_impressions_total",
            "Feed impressions spooled (not views; stored beside the events).",
            "counter",
            s.impressions.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_impressions_lost_total",
            "Feed impressions the spool refused (the page was served anyway).",
            "counter",
            s.impressions_lost.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_event_ship_failures_total",
            "Failed deliveries to the analytics store.",
            "counter",
            s.ship_failures.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_event_spool_depth",
            "Events in the spool not yet delivered.",
            "gauge",
            self.spool_depth().to_string(),
        );
        g(
            out,
            "appliance_event_spool_bytes",
            "Bytes of undelivered events in the spool.",
            "gauge",
            self.spool_bytes().to_string(),
        );
        g(
            out,
            "appliance_event_shipping_lag_seconds",
            "Age of the oldest undelivered event.",
            "gauge",
            format!("{:.3}", self.spool_lag_ms() as f64 / 1000.0),
        );
        g(
            out,
            "appliance_hot_flushes_total",
            "Hot counter flushes applied to the catalog.",
            "counter",
            s.flushes.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_hot_flush_failures_total",
            "Hot counter flushes that failed (retried).",
            "counter",
            s.flush_failures.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_counters_reconciled_total",
            "Videos whose catalog counters reconciliation corrected.",
            "counter",
            s.reconciled.load(Ordering::Relaxed).to_string(),
        );
        g(
            out,
            "appliance_hot_store_degraded",
            "1 while Redis is configured but failing.",
            "gauge",
            u8::from(self.hot.degraded()).to_string(),
        );
        g(
            out,
            "appliance_hot_store_failures_total",
            "Redis calls that failed over to in-process state.",
            "counter",
            self.hot.failures().to_string(),
        );
    }
}
