//! The A/B experiment of `[feed.experiment]` and the impressions of the
//! pages the feed serves.
//!
//! The candidate ranker is loaded like `feed.ranker` and reloaded when its
//! file changes; a candidate that cannot be used (missing, unreadable, not
//! a model) is logged once as an error and pauses the experiment (everyone
//! on the current ranker) until a good file replaces it. Candidate-side
//! for-you pages that fail (an error or a timeout) count against the
//! experiment, never against the current ranker's circuit breaker:
//! `feed.breaker_failures` of them in a row pause it for
//! `feed.breaker_open_secs` (then it runs again, or sooner when the
//! candidate file changes). A viewer's feed never fails because of the
//! experiment.
//!
//! Every for-you and following page served to a signed-in viewer becomes
//! one impression per video shown (position in the session, the page's
//! source, the ranker, the viewer's variant and the experiment's name, as
//! the engine read them together). Only for-you pages belong to the
//! experiment: following pages are ordered by no ranker (`none`) and carry
//! no experiment name. Impressions are spooled by engagement before the
//! page is answered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use inference::{Engine, Experiment, RankModel, Ranker};
use parking_lot::Mutex;

use super::recommend::Served;
use crate::engagement::{Event, Shown};

/// What the report says about the configured experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentStatus {
    pub name: String,
    pub share: f32,
    /// As configured: a model file or `formula`.
    pub candidate: String,
    /// Why the experiment is paused (everyone on the current ranker).
    pub paused: Option<String>,
}

/// The configured experiment and its candidate ranker, as last loaded.
pub struct ExperimentSlot {
    name: String,
    share: f32,
    configured: String,
    /// `None`: the formula.
    path: Option<PathBuf>,
    /// Consecutive failed candidate pages that pause the experiment, and
    /// for how long.
    max_failures: u32,
    pause_for: Duration,
    failures: AtomicU32,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// The candidate file's mtime when last looked at (outer `None`: never).
    seen: Option<Option<SystemTime>>,
    /// The candidate as last loaded (`None`: unusable).
    candidate: Option<Arc<Ranker>>,
    paused: Option<String>,
    /// Paused after failing pages: when to run the candidate again.
    retry_at: Option<Instant>,
}

impl ExperimentSlot {
    /// `None` when no experiment is configured (empty name).
    /// `max_failures` consecutive failed candidate pages pause it for
    /// `pause_for`.
    pub fn new(
        cfg: &settings::Experiment,
        data_dir: &Path,
        max_failures: u32,
        pause_for: Duration,
    ) -> Option<Self> {
        if cfg.name.is_empty() {
            return None;
        }
        let configured = cfg.candidate_ranker.trim().to_owned();
        let path = (configured != "formula").then(|| {
            let p = PathBuf::from(&configured);
            if p.is_absolute() {
                p
            } else {
                data_dir.join(p)
            }
        });
        Some(Self {
            name: cfg.name.clone(),
            share: cfg.share,
            configured,
            path,
            max_failures: max_failures.max(1),
            pause_for,
            failures: AtomicU32::new(0),
            state: Mutex::new(SlotState::default()),
        })
    }

    pub fn status(&self) -> ExperimentStatus {
        ExperimentStatus {
            name: self.name.clone(),
            share: self.share,
            candidate: self.configured.clone(),
            paused: self.state.lock().paused.clone(),
        }
    }

    /// Runs the experiment with `candidate` (clearing any pause).
    fn start(&self, engine: &Engine, st: &mut SlotState, candidate: Arc<Ranker>) {
        engine.set_experiment(Some(Experiment {
            name: self.name.clone(),
            share: self.share,
            candidate: candidate.clone(),
        }));
        st.candidate = Some(candidate);
        st.paused = None;
        st.retry_at = None;
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Starts the experiment, picks up a changed candidate file, pauses it
    /// when the candidate cannot be used, and ends a pause for failing
    /// pages once it has lasted `pause_for`.
    pub fn reload(&self, engine: &Engine) {
        let mut st = self.state.lock();
        let Some(path) = &self.path else {
            if st.seen.is_none() {
                st.seen = Some(None);
                self.start(engine, &mut st, Arc::new(Ranker::Formula));
                tracing::info!(experiment = %self.name, share = self.share, candidate = "formula", "experiment running");
            }
            self.maybe_resume(engine, &mut st);
            return;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if st.seen == Some(mtime) {
            self.maybe_resume(engine, &mut st);
            return;
        }
        st.seen = Some(mtime);
        let loaded = match mtime {
            None => Err(format!(
                "candidate ranker {} does not exist",
                path.display()
            )),
            Some(_) => RankModel::load(path).map_err(|e| e.to_string()),
        };
        match loaded {
            Ok(model) => {
                self.start(engine, &mut st, Arc::new(Ranker::Model(model)));
                tracing::info!(experiment = %self.name, share = self.share, candidate = %path.display(), "experiment running");
            }
            Err(why) => {
                engine.set_experiment(None);
                tracing::error!(experiment = %self.name, error = %why, "experiment paused: its candidate ranker is unusable, every viewer gets the current ranker until the file is fixed");
                st.candidate = None;
                st.retry_at = None;
                st.paused = Some(why);
            }
        }
    }

    fn maybe_resume(&self, engine: &Engine, st: &mut SlotState) {
        if st.retry_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        if let Some(candidate) = st.candidate.clone() {
            self.start(engine, st, candidate);
            tracing::info!(experiment = %self.name, "experiment running again after its pause for failing pages");
        }
    }

    /// A candidate-side for-you page was served by the candidate.
    pub fn candidate_served(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A candidate-side for-you page failed (error or timeout; the viewer
    /// got the trending fallback). `max_failures` in a row pause the
    /// experiment for `pause_for`; the current ranker's breaker is not
    /// told.
    pub fn candidate_failed(&self, engine: &Engine, why: &str) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.max_failures {
            return;
        }
        let mut st = self.state.lock();
        if st.paused.is_some() {
            // Paused meanwhile (pages in flight still report).
            return;
        }
        engine.set_experiment(None);
        self.failures.store(0, Ordering::Relaxed);
        let reason = format!(
            "the candidate ranker failed {n} pages in a row (last: {why}); paused for {} s",
            self.pause_for.as_secs()
        );
        tracing::warn!(experiment = %self.name, reason = %reason, "experiment paused: every viewer gets the current ranker meanwhile");
        st.paused = Some(reason);
        st.retry_at = Some(Instant::now() + self.pause_for);
    }
}

/// Whether pages of `kind` record impressions (for signed-in viewers):
/// the feeds a ranker orders for the viewer, not trending.
pub fn records(kind: inference::FeedKind) -> bool {
    matches!(
        kind,
        inference::FeedKind::ForYou | inference::FeedKind::Following
    )
}

/// One impression per video of `shown` (id, creator: what the page
/// answers, in order), at its position in the viewer's session, with the
/// ranker, variant and experiment the page was served under. A
/// following request's trending fallback is recorded as
/// `following_fallback`, so that no count of for-you pages can take it
/// for one.
pub fn impressions(
    user: &str,
    kind: inference::FeedKind,
    served: &Served,
    shown: &[(&str, &str)],
    now_ms: i64,
) -> Vec<Event> {
    let page = uuid::Uuid::new_v4().simple().to_string();
    let source = match (kind, served.source) {
        (inference::FeedKind::Following, "trending_fallback") => "following_fallback",
        (_, source) => source,
    };
    let experiment = served.page.experiment.clone().unwrap_or_default();
    shown
        .iter()
        .filter_map(|(video, creator)| {
            let i = served
                .page
                .items
                .iter()
                .position(|i| i.video_id == *video)?;
            let position = served.page.offset + i as u32;
            Some(Event::impression(
                format!("impression:{page}:{position}"),
                user,
                video,
                creator,
                now_ms,
                source,
                Shown {
                    position,
                    ranker: served.page.ranker.to_owned(),
                    variant: served.page.variant.as_str().to_owned(),
                    experiment: experiment.clone(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::engine::{EngineConfig, FeedItem, FeedPage, Reason, Source};
    use inference::sim::{World, WorldConfig};
    use inference::Variant;

    fn slot(dir: &Path, candidate: &str) -> ExperimentSlot {
        let cfg = settings::Experiment {
            name: "exp".into(),
            candidate_ranker: candidate.into(),
            share: 1.0,
        };
        ExperimentSlot::new(&cfg, dir, 3, std::time::Duration::from_millis(50)).unwrap()
    }

    #[test]
    fn failing_candidate_pages_pause_the_experiment_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default());
        let x = slot(dir.path(), "formula");
        x.reload(&engine);
        x.candidate_failed(&engine, "timeout");
        x.candidate_failed(&engine, "timeout");
        x.candidate_served();
        x.candidate_failed(&engine, "timeout");
        x.candidate_failed(&engine, "timeout");
        assert_eq!(x.status().paused, None, "a served page resets the count");
        assert!(engine.experiment().is_some());
        x.candidate_failed(&engine, "exceeded 250 ms");
        let why = x.status().paused.expect("paused");
        assert!(
            why.contains("3 pages in a row") && why.contains("250 ms"),
            "{why}"
        );
        assert_eq!(engine.experiment(), None, "everyone on the current ranker");
        assert_eq!(engine.variant_of("anyone"), Variant::Control);
        // Late reports of pages in flight change nothing.
        for _ in 0..5 {
            x.candidate_failed(&engine, "late");
        }
        assert!(x.status().paused.unwrap().contains("250 ms"));
        x.reload(&engine);
        assert_eq!(engine.experiment(), None, "still paused");
        std::thread::sleep(std::time::Duration::from_millis(60));
        x.reload(&engine);
        assert_eq!(x.status().paused, None, "runs again after the pause");
        assert_eq!(engine.experiment(), Some(("exp".into(), 1.0)));
    }

    #[test]
    fn an_unusable_candidate_pauses_the_experiment_and_a_good_one_resumes_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default());
        assert!(ExperimentSlot::new(
            &settings::Experiment::default(),
            dir.path(),
            3,
            std::time::Duration::from_secs(1)
        )
        .is_none());

        let formula = slot(dir.path(), "formula");
        formula.reload(&engine);
        assert_eq!(engine.experiment(), Some(("exp".into(), 1.0)));
        assert_eq!(engine.variant_of("anyone"), Variant::Candidate);
        assert_eq!(formula.status().paused, None);

        let file = slot(dir.path(), "models/candidate.safetensors");
        file.reload(&engine);
        assert_eq!(engine.experiment(), None, "a missing file pauses it");
        assert!(file.status().paused.unwrap().contains("does not exist"));
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(
            dir.path().join("models/candidate.safetensors"),
            b"not a model",
        )
        .unwrap();
        file.reload(&engine);
        assert_eq!(engine.experiment(), None, "a broken file pauses it");
        assert_eq!(engine.variant_of("anyone"), Variant::Control);
        assert!(file.status().paused.is_some());

        // A trained model replaces it: the experiment resumes.
        let world_cfg = WorldConfig {
            users: 30,
            videos: 60,
            creators: 10,
            events_per_user: (10, 20),
            ..WorldConfig::default()
        };
        let mut world = World::generate(&world_cfg);
        let log = world.log(&world_cfg);
        let videos: Vec<_> = world
            .videos
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut emb = vec![0.0f32; inference::DIM];
                emb[i % inference::DIM] = 1.0;
                (v.doc.clone(), emb)
            })
            .collect();
        let trained = dir.path().join("trained.safetensors");
        inference::eval::train_ranker(&videos, &log, &[], &trained, 2).unwrap();
        // A new mtime, whatever the file system's resolution.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::rename(&trained, dir.path().join("models/candidate.safetensors")).unwrap();
        file.reload(&engine);
        assert_eq!(file.status().paused, None);
        assert_eq!(engine.variant_of("anyone"), Variant::Candidate);
    }

    fn page(source: Source, ranker: &'static str, variant: Variant, x: Option<&str>) -> FeedPage {
        let item = |v: &str| FeedItem {
            video_id: v.into(),
            reason: Reason::Trending,
            score: 0.0,
        };
        FeedPage {
            items: vec![item("a"), item("gone"), item("b")],
            offset: 10,
            next_cursor: None,
            prefetch_ids: Vec::new(),
            source,
            ranker,
            variant,
            experiment: x.map(str::to_owned),
        }
    }

    #[test]
    fn impressions_carry_the_session_position_and_the_variant() {
        let served = Served {
            page: page(
                Source::Personalized,
                "formula",
                Variant::Candidate,
                Some("exp"),
            ),
            source: "personalized",
            degraded: None,
        };
        // `gone` was not answered (no longer public): not an impression.
        let events = impressions(
            "u",
            inference::FeedKind::ForYou,
            &served,
            &[("a", "c1"), ("b", "c2")],
            5_000,
        );
        let got: Vec<(&str, u32, &str, &str, &str)> = events
            .iter()
            .map(|e| {
                let s = e.shown.as_ref().unwrap();
                (
                    e.video.as_str(),
                    s.position,
                    s.variant.as_str(),
                    s.ranker.as_str(),
                    s.experiment.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", 10, "candidate", "formula", "exp"),
                ("b", 12, "candidate", "formula", "exp")
            ]
        );
        assert!(events
            .iter()
            .all(|e| e.kind == crate::engagement::Kind::Impression
                && e.source == "personalized"
                && e.creator.starts_with('c')));
        assert_ne!(events[0].id, events[1].id);
    }

    #[test]
    fn following_pages_and_their_fallbacks_are_outside_the_experiment() {
        // What the engine answers for a following page: no ranker, no
        // experiment (the viewer's side is still said).
        let following = Served {
            page: page(Source::Following, "none", Variant::Candidate, None),
            source: "following",
            degraded: None,
        };
        let fell_back = Served {
            page: page(Source::Trending, "none", Variant::Candidate, None),
            source: "trending_fallback",
            degraded: Some("breaker".into()),
        };
        let kind = inference::FeedKind::Following;
        for (served, source) in [
            (&following, "following"),
            (&fell_back, "following_fallback"),
        ] {
            for e in impressions("u", kind, served, &[("a", "c")], 1) {
                let s = e.shown.unwrap();
                assert_eq!(
                    (e.source.as_str(), s.ranker.as_str(), s.experiment.as_str()),
                    (source, "none", "")
                );
            }
        }
        // A for-you request's fallback keeps its source and experiment.
        let mut for_you = fell_back;
        for_you.page.experiment = Some("exp".into());
        let e = &impressions("u", inference::FeedKind::ForYou, &for_you, &[("a", "c")], 1)[0];
        let s = e.shown.as_ref().unwrap();
        assert_eq!(
            (e.source.as_str(), s.experiment.as_str(), s.variant.as_str()),
            ("trending_fallback", "exp", "candidate")
        );
    }
}
