//! Wiring of the recommendation engine: loads what it learns from out of the
//! catalog at start, embeds videos as they become ready, records watches,
//! hot-reloads the trained ranker, and serves feeds behind a timeout and a
//! circuit breaker so a viewer always gets a page.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use inference::engine::{EngineConfig, FeedKind, FeedPage, Source, VideoDoc, Watch};
use inference::{Embedder, Engine, InferenceError, RankModel, Ranker, Variant};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::experiment::{ExperimentSlot, ExperimentStatus};
pub use super::stats::{Breaker, FeedStats, LATENCY_BUCKETS_MS};
use crate::engagement::{AnalyticsStore, Event, Kind, PastWatch};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, Catalog, VideoRow};
use settings as config;

const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// See [`Recommender::health`].
pub struct FeedHealth {
    /// `None` until first loaded; the model's folder, or why it failed.
    pub embedder: Option<std::result::Result<String, String>>,
    pub model_dir: PathBuf,
    /// The ranker in use (`formula`, `model`), or why the file is unusable.
    pub ranker: std::result::Result<&'static str, String>,
    pub index_loaded: bool,
    pub index_videos: usize,
    pub breaker_open: bool,
}

pub struct Served {
    pub page: FeedPage,
    pub source: &'static str,
    pub degraded: Option<String>,
}

pub struct Recommender {
    pub engine: Arc<Engine>,
    embedder: OnceLock<std::result::Result<Arc<Embedder>, String>>,
    cfg: config::Feed,
    index_path: PathBuf,
    ranker_path: PathBuf,
    ranker_mtime: Mutex<Option<SystemTime>>,
    ranker_broken: Mutex<Option<String>>,
    experiment: Option<ExperimentSlot>,
    breaker: Breaker,
    pub embed_wake: Notify,
    /// Videos updated before this (ms) were all embedded when a sweep
    /// last looked (see `embed_pending`).
    embed_since: AtomicI64,
    index_dirty: AtomicBool,
    pub stats: FeedStats,
    /// Published videos' wire form for pages (see `meta`).
    pub meta: super::meta::MetaCache,
}

/// How far back from its start a finished sweep moves the mark: a row
/// written by a transaction that was still open when the sweep read is
/// dated by the writer's clock before its commit, so the next sweep must
/// look a little before this one began.
const EMBED_SWEEP_MARGIN_MS: i64 = 5 * 60 * 1000;

pub fn now_secs() -> i64 {
    cat::now_ms() / 1000
}

pub fn doc_of(v: &VideoRow) -> VideoDoc {
    VideoDoc {
        id: v.id.clone(),
        creator: v.owner_id.clone(),
        caption: format!("{} {}", v.title, v.description),
        hashtags: v.hashtags.clone(),
        sound: v.sound_id.clone(),
        created_at: v.updated_at / 1000,
    }
}

pub fn watch_of(w: PastWatch) -> Watch {
    Watch {
        user: w.user,
        video: w.video,
        watch_ms: u64::from(w.watch_ms),
        duration_ms: u64::from(w.duration_ms.max(1)),
        completed: w.completed,
        liked: w.liked,
        shared: w.shared,
        ts: w.ts / 1000,
    }
}

impl Recommender {
    pub fn new(config: &config::Config) -> Self {
        let cfg = config.feed.clone();
        let data = &config.storage.data_dir;
        let engine = Engine::new(EngineConfig {
            new_video_fanout: cfg.new_video_fanout,
            exploration_ttl_secs: cfg.exploration_ttl_secs,
            ..EngineConfig::default()
        });
        Self {
            engine: Arc::new(engine),
            experiment: ExperimentSlot::new(
                &cfg.experiment,
                data,
                cfg.breaker_failures,
                Duration::from_secs(cfg.breaker_open_secs),
            ),
            embedder: OnceLock::new(),
            index_path: data.join("index").join("videos.faiss"),
            ranker_path: if cfg.ranker.is_absolute() {
                cfg.ranker.clone()
            } else {
                data.join(&cfg.ranker)
            },
            breaker: Breaker::new(
                cfg.breaker_failures,
                Duration::from_secs(cfg.breaker_open_secs),
            ),
            cfg,
            ranker_mtime: Mutex::new(None),
            ranker_broken: Mutex::new(None),
            embed_wake: Notify::new(),
            embed_since: AtomicI64::new(0),
            index_dirty: AtomicBool::new(false),
            stats: FeedStats::default(),
            meta: Default::default(),
        }
    }

    /// The embedding model, loaded on first use; a missing model is
    /// reported once and leaves embedding paused (feeds still serve).
    pub fn embedder(&self) -> std::result::Result<Arc<Embedder>, String> {
        self.embedder
            .get_or_init(|| match Embedder::load(&self.cfg.model_dir) {
                Ok(e) => Ok(Arc::new(e)),
                Err(e) => {
                    tracing::error!(error = %e, "embedding model unavailable: new videos are not embedded, search is keyword-only");
                    Err(e.to_string())
                }
            })
            .clone()
    }

    /// What `/readyz` and the status page say about the feed's parts,
    /// without loading anything.
    pub fn health(&self) -> FeedHealth {
        FeedHealth {
            embedder: match self.embedder.get() {
                None => None,
                Some(Ok(_)) => Some(Ok(self.cfg.model_dir.display().to_string())),
                Some(Err(e)) => Some(Err(e.clone())),
            },
            model_dir: self.cfg.model_dir.clone(),
            ranker: match self.ranker_broken.lock().clone() {
                Some(why) => Err(why),
                None => Ok(self.engine.ranker_name()),
            },
            index_loaded: self.engine.videos_index.is_loaded(),
            index_videos: self.engine.videos_index.len(),
            breaker_open: self.breaker.is_open(),
        }
    }

    /// Rebuilds the engine's state from the catalog: videos and their
    /// embeddings, follows, interests, then every watch event in arrival
    /// order. The video index is loaded from disk when it matches the
    /// catalog, else rebuilt in the background (feeds fall back to
    /// trending until it is ready).
    pub async fn warm_up(
        self: &Arc<Self>,
        catalog: &Catalog,
        analytics: &dyn AnalyticsStore,
        unshipped: &[Event],
    ) -> Result<()> {
        let started = Instant::now();
        let sweep_from = cat::now_ms() - EMBED_SWEEP_MARGIN_MS;
        let videos = catalog.call(|c| cat::embedded_videos(c)).await?;
        // Where the sweeps for videos to embed start: the one pass over
        // the whole catalog they need, done before serving.
        let oldest = catalog.read(cat::oldest_unembedded).await?;
        self.embed_since.store(
            oldest.map_or(sweep_from, |o| o.min(sweep_from)),
            Ordering::Relaxed,
        );
        let follows = catalog.call(|c| cat::all_follows(c)).await?;
        let interests = catalog.call(|c| cat::all_interests(c)).await?;
        let engine = self.engine.clone();
        let n_videos = videos.len();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for (row, emb) in videos {
                engine.load_video(doc_of(&row), emb)?;
            }
            for (a, b) in follows {
                engine.set_follow(&a, &b, true);
            }
            Ok(())
        })
        .await??;
        for (user, tags) in interests {
            self.apply_interests(&user, &tags).await;
        }
        // Watch history: what the analytics store holds, then what the
        // spool has not delivered yet.
        let engine = self.engine.clone();
        let n_watches = analytics
            .watch_history(&mut |chunk| {
                for w in chunk {
                    engine.record_watch(&watch_of(w), false);
                }
            })
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "watch history unavailable; the feed starts without it");
                0
            });
        let mut pending = 0usize;
        for e in unshipped.iter().filter(|e| e.kind == Kind::Watch) {
            self.engine.record_watch(&watch_of(e.into()), false);
            pending += 1;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.load_or_rebuild_index()).await??;
        self.engine.rebuild_user_index()?;
        self.engine.refresh(now_secs())?;
        self.reload_ranker();
        self.reload_experiment();
        tracing::info!(
            videos = n_videos,
            watches = n_watches,
            undelivered_watches = pending,
            users = self.engine.user_count(),
            index = ?self.engine.videos_index.kind(),
            ranker = self.engine.ranker_name(),
            took_ms = started.elapsed().as_millis() as u64,
            "feed engine ready"
        );
        Ok(())
    }

    fn ids_path(&self) -> PathBuf {
        self.index_path.with_extension("ids.json")
    }

    fn load_or_rebuild_index(&self) -> Result<()> {
        let ids = self.engine.video_ids();
        let saved: Option<Vec<String>> = std::fs::read(self.ids_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if saved.as_ref() == Some(&ids) {
            match self.engine.videos_index.load(&self.index_path) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, "saved video index unreadable; rebuilding"),
            }
        } else if self.index_path.exists() {
            tracing::info!("saved video index does not match the catalog; rebuilding");
        }
        self.engine.rebuild_video_index(None)?;
        self.index_dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn save_index(&self) -> Result<()> {
        if !self.index_dirty.swap(false, Ordering::Relaxed) || !self.engine.videos_index.is_loaded()
        {
            return Ok(());
        }
        let dir = self.index_path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir.display()))?;
        // The id list first: a crash between the two leaves a mismatch, and a
        // mismatch means "rebuild", never a wrong mapping.
        let _ = std::fs::remove_file(self.ids_path());
        self.engine.videos_index.save(&self.index_path)?;
        let ids = serde_json::to_vec(&self.engine.video_ids()).unwrap_or_default();
        let tmp = self.ids_path().with_extension("tmp");
        std::fs::write(&tmp, ids).map_err(Error::io("writing", tmp.display()))?;
        std::fs::rename(&tmp, self.ids_path()).map_err(Error::io("renaming", tmp.display()))?;
        Ok(())
    }

    /// Picks up a new or changed ranker file. A file that exists but cannot
    /// be used marks ranking broken (feeds fall back to trending and say
    /// why) until a good file replaces it; no file means the formula.
    pub fn reload_ranker(&self) {
        let mtime = std::fs::metadata(&self.ranker_path)
            .and_then(|m| m.modified())
            .ok();
        let mut seen = self.ranker_mtime.lock();
        if *seen == mtime && (mtime.is_some() || self.engine.ranker_name() == "formula") {
            return;
        }
        *seen = mtime;
        if mtime.is_none() {
            self.engine.set_ranker(Ranker::Formula);
            *self.ranker_broken.lock() = None;
            return;
        }
        match RankModel::load(&self.ranker_path) {
            Ok(m) => {
                self.engine.set_ranker(Ranker::Model(m));
                *self.ranker_broken.lock() = None;
                tracing::info!(path = %self.ranker_path.display(), "ranking model loaded");
            }
            // Trained by an older release on other features: rank with
            // the formula (still personal) until it is retrained.
            Err(e @ InferenceError::RankerOutdated { .. }) => {
                tracing::warn!(error = %e, "ranking model out of date; ranking with the formula");
                self.engine.set_ranker(Ranker::Formula);
                *self.ranker_broken.lock() = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "ranking model unusable; feeds fall back to trending");
                *self.ranker_broken.lock() = Some(e.to_string());
            }
        }
    }

    /// Starts `[feed.experiment]`, follows changes of its candidate file,
    /// pauses it while the candidate is unusable.
    pub fn reload_experiment(&self) {
        if let Some(x) = &self.experiment {
            x.reload(&self.engine);
        }
    }

    /// `user`'s side of the running experiment and its name, from one
    /// read of it (control and `None` when none runs): what a page served
    /// without the engine (a fallback) says, and which side a failure
    /// counts against.
    pub fn arm_of(&self, user: &str) -> (Variant, Option<String>) {
        match self.engine.experiment() {
            Some((name, share)) => {
                let variant = inference::experiment::assign(&name, user, share);
                (variant, Some(name))
            }
            None => (Variant::Control, None),
        }
    }

    /// The configured experiment, running or paused; `None` when none is.
    pub fn experiment_status(&self) -> Option<ExperimentStatus> {
        self.experiment.as_ref().map(ExperimentSlot::status)
    }

    /// Background upkeep until shutdown: embeddings, the user index,
    /// trending and early checks, ranker reloads, index saves and rebuilds.
    pub fn spawn(
        self: &Arc<Self>,
        catalog: Catalog,
        mut shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let embedder = {
            let me = self.clone();
            let catalog = catalog.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = me.embed_pending(&catalog).await {
                        tracing::warn!(error = %e, "embedding new videos failed; retrying");
                    }
                    tokio::select! {
                        _ = me.embed_wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            })
        };
        let me = self.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last_refresh = Instant::now();
            let mut last_save = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let m = me.clone();
                let refresh =
                    last_refresh.elapsed() >= Duration::from_secs(me.cfg.refresh_secs.max(1));
                let save =
                    last_save.elapsed() >= Duration::from_secs(me.cfg.save_index_secs.max(1));
                if refresh {
                    last_refresh = Instant::now();
                }
                if save {
                    last_save = Instant::now();
                }
                let r = tokio::task::spawn_blocking(move || -> Result<()> {
                    let flushed = m.engine.flush_users()?;
                    if flushed > 0 {
                        tracing::debug!(
                            users = flushed,
                            "user embeddings refreshed in the user index"
                        );
                    }
                    m.reload_ranker();
                    m.reload_experiment();
                    if refresh {
                        m.engine.refresh(now_secs())?;
                    }
                    if m.engine.videos_index.wants_rebuild() {
                        tracing::info!(
                            videos = m.engine.video_count(),
                            "catalog outgrew the video index; rebuilding"
                        );
                        m.engine.rebuild_video_index(None)?;
                        m.index_dirty.store(true, Ordering::Relaxed);
                    }
                    if save {
                        m.save_index()?;
                    }
                    Ok(())
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "feed upkeep failed"),
                    Err(e) => tracing::error!(error = %e, "feed upkeep panicked"),
                }
            }
            let m = me.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = m.save_index() {
                    tracing::warn!(error = %e, "saving the video index at shutdown failed");
                }
            })
            .await;
        });
        vec![embedder, upkeep]
    }

    /// Embeds ready videos that have no embedding yet, in batches, and adds
    /// them to the engine (index + exploration pools of nearby users).
    ///
    /// Sweeps read only rows updated since a mark (`warm_up` sets it from
    /// one pass over the catalog): every few seconds, a whole-catalog
    /// anti-join took a third of a second at a million videos. A sweep
    /// that leaves nothing behind moves the mark to its own start; one
    /// that stops for want of a model moves it to the oldest video it
    /// left; an error leaves it. Reads go to the catalog's reader pool:
    /// the single writer is never held by a sweep.
    pub async fn embed_pending(&self, catalog: &Catalog) -> Result<usize> {
        let started = cat::now_ms() - EMBED_SWEEP_MARGIN_MS;
        let since = self.embed_since.load(Ordering::Relaxed);
        let mut done = 0;
        loop {
            let rows = catalog
                .read(move |c| cat::unembedded_videos(c, since, 32))
                .await?;
            let Some(oldest) = rows.first().map(|v| v.updated_at) else {
                self.embed_since.store(started, Ordering::Relaxed);
                return Ok(done);
            };
            let Ok(embedder) = self.embedder() else {
                self.embed_since
                    .store(oldest.min(started), Ordering::Relaxed);
                return Ok(done);
            };
            let texts: Vec<String> = rows
                .iter()
                .map(|v| {
                    inference::embed::video_text(
                        &format!("{} {}", v.title, v.description),
                        &v.hashtags,
                        v.sound_id.as_deref(),
                    )
                })
                .collect();
            let vectors = tokio::task::spawn_blocking(move || {
                embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await??;
            for (row, vector) in rows.into_iter().zip(vectors) {
                let (id, v) = (row.id.clone(), vector.clone());
                catalog
                    .call(move |c| cat::store_embedding(c, &id, MODEL_NAME, &v))
                    .await?;
                let reached = self.engine.add_video(doc_of(&row), vector, now_secs())?;
                self.index_dirty.store(true, Ordering::Relaxed);
                self.stats.embedded.fetch_add(1, Ordering::Relaxed);
                tracing::info!(video = %row.id, pushed_to_users = reached, "video embedded and indexed");
                done += 1;
            }
        }
    }

    /// A playable video's ladder grew (its wire form lists more
    /// renditions): call after the catalog changed.
    pub fn ladder_changed(&self, id: &str) {
        self.meta.invalidate(id);
    }

    /// A video left `ready` (reprocess, delete): call after the catalog
    /// changed.
    pub fn forget_video(&self, id: &str) {
        self.meta.invalidate(id);
        if let Err(e) = self.engine.remove_video(id) {
            tracing::warn!(video = id, error = %e, "removing a video from the index failed");
        }
        self.index_dirty.store(true, Ordering::Relaxed);
    }

    /// Learns from freshly accepted events (watches only).
    pub fn record(&self, events: &[Event]) {
        let mut n = 0;
        for w in events.iter().filter(|e| e.kind == Kind::Watch) {
            self.engine.record_watch(&watch_of(w.into()), false);
            n += 1;
        }
        self.stats.watches.fetch_add(n, Ordering::Relaxed);
    }

    pub async fn apply_interests(&self, user: &str, tags: &[String]) {
        let vectors = match self.embedder() {
            Ok(e) => {
                let texts: Vec<String> = tags.iter().map(|t| format!("#{t} {t}")).collect();
                tokio::task::spawn_blocking(move || {
                    e.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
        if let Err(e) = self.engine.set_interests(user, tags, &vectors) {
            tracing::info!(user, error = %e, "interests did not give a first embedding");
        }
    }

    pub async fn embed_query(&self, q: &str) -> Option<Vec<f32>> {
        let e = self.embedder().ok()?;
        let q = q.to_string();
        tokio::task::spawn_blocking(move || e.embed(&[q.as_str()]).ok().and_then(|mut v| v.pop()))
            .await
            .ok()
            .flatten()
    }

    /// A page of a feed, never an error except for a malformed cursor:
    /// personalisation that fails, is too slow, or is switched off by the
    /// breaker or a broken ranker is replaced by trending.
    ///
    /// The two sides of an experiment fail apart: a candidate-side for-you
    /// page that fails counts against the experiment (which pauses after
    /// `breaker_failures` in a row), never against the breaker, and is not
    /// held back by the breaker or a broken current ranker; every other
    /// personal page (control for-you, following) is the breaker's, and a
    /// broken current ranker holds back the control for-you pages it would
    /// rank (following pages are ranked by none).
    pub async fn feed(
        &self,
        kind: FeedKind,
        user: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Served> {
        let started = Instant::now();
        if let Some(c) = cursor {
            inference::session::decode_cursor(c)?;
        }
        let personal = matches!(kind, FeedKind::ForYou | FeedKind::Following) && user.is_some();
        // One read of the experiment for this request: the side a failure
        // counts against and what a fallback page says agree.
        let (variant, experiment) = user.map_or((Variant::Control, None), |u| self.arm_of(u));
        let candidate = personal && kind == FeedKind::ForYou && variant == Variant::Candidate;
        // Only for-you pages belong to the experiment.
        let fallback_experiment = experiment.filter(|_| kind == FeedKind::ForYou);
        let fallback =
            |why: String| self.fallback(user, limit, why, variant, fallback_experiment.clone());
        let blocked = if !personal || candidate {
            None
        } else if let Some(why) = self
            .ranker_broken
            .lock()
            .clone()
            .filter(|_| kind == FeedKind::ForYou)
        {
            Some(format!("ranking model unusable: {why}"))
        } else if self.breaker.is_open() {
            Some(
                "personalisation paused by the circuit breaker after repeated failures".to_string(),
            )
        } else {
            None
        };
        let failed = |why: String| {
            if candidate {
                if let Some(x) = &self.experiment {
                    x.candidate_failed(&self.engine, &why);
                }
            } else {
                self.breaker.failure();
            }
            fallback(why)
        };
        let served = match blocked {
            Some(why) => fallback(why),
            None => {
                let engine = self.engine.clone();
                let (u, c) = (user.map(str::to_string), cursor.map(str::to_string));
                let task = tokio::task::spawn_blocking(move || {
                    engine.feed(kind, u.as_deref(), limit, c.as_deref(), now_secs())
                });
                match tokio::time::timeout(Duration::from_millis(self.cfg.timeout_ms), task).await {
                    Ok(Ok(Ok(page))) => {
                        match (&self.experiment, candidate) {
                            (Some(x), true) => x.candidate_served(),
                            _ => self.breaker.success(),
                        }
                        let source = match page.source {
                            Source::Personalized => "personalized",
                            Source::ColdStart => "cold_start",
                            Source::Following => "following",
                            Source::Trending => "trending",
                        };
                        Served {
                            page,
                            source,
                            degraded: None,
                        }
                    }
                    Ok(Ok(Err(e @ InferenceError::BadCursor(_)))) => return Err(e.into()),
                    Ok(Ok(Err(e))) => failed(format!("personalisation failed: {e}")),
                    Ok(Err(e)) => failed(format!("personalisation crashed: {e}")),
                    Err(_) => failed(format!(
                        "personalisation exceeded {} ms",
                        self.cfg.timeout_ms
                    )),
                }
            }
        };
        self.stats.observe(started.elapsed(), served.source);
        Ok(served)
    }

    /// Trending in place of a page that could not be personalised; it
    /// says the side and experiment the request was on (`variant`,
    /// `experiment`: read once by the caller), so a candidate viewer's
    /// fallback pages count for the candidate (intent to treat).
    fn fallback(
        &self,
        user: Option<&str>,
        limit: usize,
        why: String,
        variant: Variant,
        experiment: Option<String>,
    ) -> Served {
        tracing::warn!(reason = %why, "feed served from trending");
        let mut page = self
            .engine
            .feed(FeedKind::Trending, user, limit, None, now_secs())
            .unwrap_or_else(|_| FeedPage {
                items: Vec::new(),
                offset: 0,
                next_cursor: None,
                prefetch_ids: Vec::new(),
                source: Source::Trending,
                ranker: "none",
                variant,
                experiment: None,
            });
        // No ranker ordered it (impressions say so).
        page.ranker = "none";
        page.variant = variant;
        page.experiment = experiment;
        Served {
            page,
            source: "trending_fallback",
            degraded: Some(why),
        }
    }
}

#[cfg(test)]
mod tests;
