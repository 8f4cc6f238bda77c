//! Offline evaluation: replay an interaction log split by time, ask the
//! real feed (and popularity and random baselines) for ten videos per
//! held-out user, and score them against what the user went on to enjoy.

//! Offline evaluation: one interaction log, two standard protocols
//! ([`split`]: a global time split and leave-last-out), the real feed (its
//! trained model and its hand formula) and strong baselines computed on
//! exactly the same split and users (popularity all-time and recent,
//! item-kNN, EASE, random), each scored over all users and per cohort of
//! training history ([`metrics`]); plus the feed's growth with history.

mod metrics;
mod replay;
pub mod split;

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::baselines::{Baseline, Ease, ItemKnn, Popularity};
use crate::engine::{Engine, EngineConfig, FeedKind, VideoDoc, Watch};
use crate::error::{InferenceError, Result};
use crate::experiment::{examination, Impression};
use crate::rank::{Example, RankModel, Ranker, TrainReport};
pub use metrics::{MethodResult, Metrics};
pub use split::{Protocol, Split, COHORTS};

#[derive(Debug, serde::Serialize)]
pub struct HistoryPoint {
    pub train_events_per_user: usize,
    pub feed: Metrics,
}

/// One protocol's results: every method on the same users.
#[derive(Debug, serde::Serialize)]
pub struct ProtocolReport {
    pub protocol: Protocol,
    pub train_events: usize,
    pub users: usize,
    pub users_per_cohort: BTreeMap<&'static str, usize>,
    /// `feed` (the ranker evaluated), `feed_formula`, `popularity`,
    /// `popularity_recent`, `item_knn`, `ease`, `random`.
    pub methods: BTreeMap<&'static str, MethodResult>,
    /// The baseline with the best HR@10 over all users, and the feed's
    /// ratio to it (> 1: the feed wins).
    pub strongest_baseline: &'static str,
    pub feed_hr_lift_over_strongest: f64,
    pub feed_ndcg_lift_over_strongest: f64,
}

impl ProtocolReport {
    /// A method's result over all users (panics on an unknown name).
    pub fn all(&self, method: &str) -> Metrics {
        self.methods[method].all
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub videos: usize,
    pub events: usize,
    /// `model`: trained on each protocol's training events (sampled
    /// negatives), as `train-ranker` does on the box; or the model given.
    pub ranker: &'static str,
    /// Training on the time split's events (when the model was trained here).
    pub training: Option<TrainReport>,
    pub protocols: Vec<ProtocolReport>,
    /// On the time split: users with at least the largest step of training
    /// events, replayed with only their first N.
    pub history: Vec<HistoryPoint>,
    /// How the baselines were configured.
    pub baselines: BaselineConfig,
}

impl Report {
    pub fn protocol(&self, p: Protocol) -> &ProtocolReport {
        self.protocols
            .iter()
            .find(|r| r.protocol == p)
            .expect("every protocol is evaluated")
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineConfig {
    /// Items the collaborative baselines model (the most popular ones).
    pub max_items: usize,
    pub knn_neighbours: usize,
    pub ease_lambda: f64,
    /// `popularity_recent` counts this window before the split.
    pub recent_window_secs: i64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            max_items: 2000,
            knn_neighbours: 100,
            ease_lambda: 250.0,
            recent_window_secs: 7 * 86_400,
        }
    }
}

pub struct EvalConfig {
    pub train_share: f64,
    pub max_users: usize,
    pub history_steps: Vec<usize>,
    pub seed: u64,
    pub baselines: BaselineConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            train_share: 0.8,
            max_users: 1000,
            history_steps: vec![0, 10, 50],
            seed: 1,
            baselines: BaselineConfig::default(),
        }
    }
}

/// Builds an engine over the catalog and replays `train` into it.
pub fn build_engine(
    videos: &[(VideoDoc, Vec<f32>)],
    train: &[Watch],
    ranker: Option<Ranker>,
) -> Result<Engine> {
    let engine = Engine::new(EngineConfig::default());
    for (doc, emb) in videos {
        engine.load_video(doc.clone(), emb.clone())?;
    }
    engine.rebuild_video_index(None)?;
    for w in train {
        engine.record_watch(w, false);
    }
    engine.rebuild_user_index()?;
    if let Some(r) = ranker {
        engine.set_ranker(r);
    }
    engine.refresh(train.last().map_or(0, |w| w.ts))?;
    Ok(engine)
}

/// Uniformly sampled published videos per watch, as negatives: with
/// enjoyed watches as positives, the model's odds for a video are then
/// proportional to how likely a viewer picks and enjoys it.
const SAMPLED_NEGATIVES: usize = 4;

/// Replays events (and the impressions that led to them) chronologically
/// through a fresh engine and takes, for each, the features as they stood
/// just before it. An enjoyed watch (completion ≥ 0.7 or liked: what the
/// feed is judged on) is a positive; [`SAMPLED_NEGATIVES`] videos published
/// by then, drawn uniformly, are negatives, so the model learns what a
/// viewer picks and enjoys out of everything there was; a video shown and
/// never watched afterwards is a negative weighted by how likely its
/// position was looked at ([`examination`]).
pub fn training_examples(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    impressions: &[Impression],
    seed: u64,
) -> Result<Vec<Example>> {
    use rand::Rng;
    let engine = Engine::new(EngineConfig::default());
    for (doc, emb) in videos {
        engine.load_video(doc.clone(), emb.clone())?;
    }
    engine.rebuild_video_index(None)?;
    // Videos by publication, for sampling among those that existed then.
    let mut published: Vec<(i64, &str)> = videos
        .iter()
        .map(|(d, _)| (d.created_at, d.id.as_str()))
        .collect();
    published.sort_unstable();
    // When each viewer last watched each video: an impression followed by
    // a watch of the same video is not a skip.
    let mut last_watch: HashMap<(&str, &str), i64> = HashMap::new();
    for w in events {
        let t = last_watch.entry((&w.user, &w.video)).or_insert(w.ts);
        *t = (*t).max(w.ts);
    }
    let mut shown: Vec<&Impression> = impressions.iter().collect();
    shown.sort_by_key(|i| i.ts);
    let mut shown = shown.into_iter().peekable();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut examples = Vec::with_capacity(events.len() * 2 + impressions.len());
    // Trending and the popularity lists are recomputed every hour of log
    // time, as the server's refresh loop does (None: not yet; `i64::MIN`
    // here once overflowed, so training never refreshed at all).
    let mut last_refresh: Option<i64> = None;
    for w in events {
        while let Some(i) = shown.next_if(|i| i.ts <= w.ts) {
            let watched_later = last_watch
                .get(&(i.user.as_str(), i.video.as_str()))
                .is_some_and(|&t| t >= i.ts);
            if watched_later {
                continue;
            }
            if let Some(features) = engine.features_for(&i.user, &i.video, i.ts) {
                examples.push(Example {
                    features,
                    positive: false,
                    weight: examination(i.position),
                });
            }
        }
        if last_refresh.is_none_or(|t| w.ts - t > 3600) {
            engine.refresh(w.ts)?;
            last_refresh = Some(w.ts);
        }
        let existing = published.partition_point(|(t, _)| *t <= w.ts);
        for _ in 0..if existing > 0 { SAMPLED_NEGATIVES } else { 0 } {
            let other = published[rng.random_range(0..existing)].1;
            if let Some(features) = engine.features_for(&w.user, other, w.ts) {
                examples.push(Example {
                    features,
                    positive: false,
                    weight: 1.0,
                });
            }
        }
        // A watch not enjoyed is simply not a positive: counting it as a
        // negative too would teach "popular videos are often not finished"
        // and rank the most watched down.
        if let (_, Some(ex)) = engine.record_watch(w, true) {
            if ex.positive {
                examples.push(ex);
            }
        }
    }
    Ok(examples)
}

/// Trains a ranker on `events` (and the `impressions` served before them,
/// which may be empty) and writes it to `out`.
pub fn train_ranker(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    impressions: &[Impression],
    out: &std::path::Path,
    epochs: usize,
) -> Result<TrainReport> {
    let examples = training_examples(videos, events, impressions, 7)?;
    crate::rank::train(&examples, epochs, out)
}

/// Runs the evaluation. `events` must be sorted by time.
pub fn evaluate(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    cfg: &EvalConfig,
    model: Option<&std::path::Path>,
) -> Result<Report> {
    let scratch = tempfile::tempdir().map_err(|e| InferenceError::io("temp dir", e))?;
    let embs: HashMap<&str, &[f32]> = videos
        .iter()
        .map(|(d, e)| (d.id.as_str(), e.as_slice()))
        .collect();
    let splits = [
        Split::time_split(events, cfg.train_share, cfg.max_users, cfg.seed),
        Split::leave_last_out(events, cfg.max_users, cfg.seed),
    ];
    let mut protocols = Vec::new();
    let mut training = None;
    let mut ranker_name = "formula";
    let mut history = Vec::new();
    for split in &splits {
        // Each protocol's model learns from that protocol's training events
        // only, so no held-out event leaks into it.
        let model_path = match model {
            Some(p) => p.to_path_buf(),
            None => {
                let p = scratch
                    .path()
                    .join(format!("{:?}.safetensors", split.protocol));
                let report = train_ranker(videos, &split.train, &[], &p, 300)?;
                if split.protocol == Protocol::TimeSplit {
                    training = Some(report);
                }
                p
            }
        };
        let ranker =
            || -> Result<Option<Ranker>> { Ok(Some(Ranker::Model(RankModel::load(&model_path)?))) };
        let engine = build_engine(videos, &split.train, ranker()?)?;
        ranker_name = engine.ranker_name();
        let (report, rich) = evaluate_split(videos, split, &engine, &ranker, &embs, cfg)?;
        protocols.push(report);
        if split.protocol == Protocol::TimeSplit {
            history = growth(videos, split, &rich, &ranker, &embs, cfg)?;
        }
    }
    Ok(Report {
        videos: videos.len(),
        events: events.len(),
        ranker: ranker_name,
        training,
        protocols,
        history,
        baselines: cfg.baselines.clone(),
    })
}

/// Every method on one split; also returns the users rich enough for the
/// history experiment.
fn evaluate_split(
    videos: &[(VideoDoc, Vec<f32>)],
    split: &Split,
    engine: &Engine,
    ranker: &dyn Fn() -> Result<Option<Ranker>>,
    embs: &HashMap<&str, &[f32]>,
    cfg: &EvalConfig,
) -> Result<(ProtocolReport, Vec<String>)> {
    let formula = build_engine(videos, &split.train, None)?;
    let b = &cfg.baselines;
    let baselines: Vec<(&'static str, Box<dyn Baseline>)> = vec![
        ("popularity", Box::new(Popularity::all_time(&split.train))),
        (
            "popularity_recent",
            Box::new(Popularity::recent(
                &split.train,
                b.recent_window_secs,
                split.now,
            )),
        ),
        (
            "item_knn",
            Box::new(ItemKnn::fit(&split.train, b.max_items, b.knn_neighbours)),
        ),
        (
            "ease",
            Box::new(
                Ease::fit(&split.train, b.max_items, b.ease_lambda)
                    .map_err(|e| InferenceError::Ranker(format!("EASE baseline: {e}")))?,
            ),
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut lists: BTreeMap<&'static str, Vec<Vec<String>>> = BTreeMap::new();
    let empty = Vec::new();
    // Leave-last-out asks the feed and popularity at each held-out moment.
    let asked_then = split.protocol == Protocol::LeaveLastOut;
    let replayed = if asked_then {
        let (all, recent) = replay::popularity_lists(split, b.recent_window_secs, 10);
        lists.insert("popularity", all);
        lists.insert("popularity_recent", recent);
        Some((
            replay::feed_pages(videos, split, ranker()?)?,
            replay::feed_pages(videos, split, None)?,
        ))
    } else {
        None
    };
    for u in &split.users {
        match &replayed {
            Some((model, formula)) => {
                lists.entry("feed").or_default().push(model[u].clone());
                lists
                    .entry("feed_formula")
                    .or_default()
                    .push(formula[u].clone());
            }
            None => {
                lists
                    .entry("feed")
                    .or_default()
                    .push(first_page(engine, u, split.now)?);
                lists
                    .entry("feed_formula")
                    .or_default()
                    .push(first_page(&formula, u, split.now)?);
            }
        }
        let history: Vec<&str> = split
            .history
            .get(u)
            .unwrap_or(&empty)
            .iter()
            .map(String::as_str)
            .collect();
        let exclude: HashSet<&str> = history.iter().copied().collect();
        for (name, b) in &baselines {
            if asked_then && name.starts_with("popularity") {
                continue;
            }
            lists
                .entry(name)
                .or_default()
                .push(b.recommend(&history, &exclude, 10));
        }
        let mut pool = engine.unwatched_ids(u);
        pool.shuffle(&mut rng);
        pool.truncate(10);
        lists.entry("random").or_default().push(pool);
    }
    let methods: BTreeMap<&'static str, MethodResult> = lists
        .iter()
        .map(|(name, l)| (*name, metrics::score(split, l, embs, videos.len())))
        .collect();
    let strongest = methods
        .iter()
        .filter(|(name, _)| !name.starts_with("feed") && **name != "random")
        .max_by(|a, b| a.1.all.hr_at_10.total_cmp(&b.1.all.hr_at_10))
        .map_or("popularity", |(name, _)| *name);
    let lift = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    let feed = methods["feed"].all;
    let best = methods[strongest].all;
    let max_step = cfg.history_steps.iter().copied().max().unwrap_or(0);
    let rich = split
        .users
        .iter()
        .filter(|u| split.train_events(u) >= max_step)
        .cloned()
        .collect();
    Ok((
        ProtocolReport {
            protocol: split.protocol,
            train_events: split.train.len(),
            users: split.users.len(),
            users_per_cohort: split.cohort_sizes(),
            strongest_baseline: strongest,
            feed_hr_lift_over_strongest: lift(feed.hr_at_10, best.hr_at_10),
            feed_ndcg_lift_over_strongest: lift(feed.ndcg_at_10, best.ndcg_at_10),
            methods,
        },
        rich,
    ))
}

/// The rich users replayed with only their first N training events.
fn growth(
    videos: &[(VideoDoc, Vec<f32>)],
    split: &Split,
    rich: &[String],
    ranker: &dyn Fn() -> Result<Option<Ranker>>,
    embs: &HashMap<&str, &[f32]>,
    cfg: &EvalConfig,
) -> Result<Vec<HistoryPoint>> {
    let rich_set: HashSet<&str> = rich.iter().map(String::as_str).collect();
    let users: Vec<&str> = rich.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for &step in &cfg.history_steps {
        let mut kept: HashMap<&str, usize> = HashMap::new();
        let truncated: Vec<Watch> = split
            .train
            .iter()
            .filter(|w| {
                if !rich_set.contains(w.user.as_str()) {
                    return true;
                }
                let k = kept.entry(&w.user).or_default();
                *k += 1;
                *k <= step
            })
            .cloned()
            .collect();
        let engine = build_engine(videos, &truncated, ranker()?)?;
        // The engine knows only the first `step` events, so it may offer
        // videos the user watched later in training; those are neither
        // hits nor misses (the baselines never list a watched video), so
        // they are passed over, as the baselines' exclusion does.
        let lists = users
            .iter()
            .map(|u| {
                let watched: HashSet<&str> = split
                    .history
                    .get(*u)
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                first_unwatched(&engine, u, split.now, &watched)
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(HistoryPoint {
            train_events_per_user: step,
            feed: metrics::metrics(&lists, &users, &split.positives, embs, videos.len()),
        });
    }
    Ok(out)
}

/// The first ten videos of `user`'s feed not in `watched`, scrolling on
/// as far as needed (a bounded number of pages).
fn first_unwatched(
    engine: &Engine,
    user: &str,
    now: i64,
    watched: &HashSet<&str>,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(10);
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = engine.feed(FeedKind::ForYou, Some(user), 50, cursor.as_deref(), now)?;
        out.extend(
            page.items
                .into_iter()
                .map(|i| i.video_id)
                .filter(|v| !watched.contains(v.as_str())),
        );
        cursor = page.next_cursor;
        if out.len() >= 10 || cursor.is_none() {
            break;
        }
    }
    out.truncate(10);
    Ok(out)
}

fn first_page(engine: &Engine, user: &str, now: i64) -> Result<Vec<String>> {
    Ok(engine
        .feed(FeedKind::ForYou, Some(user), 10, None, now)?
        .items
        .into_iter()
        .map(|i| i.video_id)
        .collect())
}

/// Reads an interaction log of `user,video,completion,timestamp` lines (a
/// header line is allowed). Completion is 0..1; timestamp is Unix seconds.
pub fn parse_log(text: &str) -> std::result::Result<Vec<Watch>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("user")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [user, video, completion, ts] = f[..] else {
            return Err(format!(
                "line {}: expected user,video,completion,timestamp",
                n + 1
            ));
        };
        let completion: f32 = completion
            .parse()
            .ok()
            .filter(|c: &f32| (0.0..=1.0).contains(c))
            .ok_or_else(|| {
                format!(
                    "line {}: completion {completion:?} is not a number in 0..1",
                    n + 1
                )
            })?;
        let ts: i64 = ts
            .parse()
            .map_err(|_| format!("line {}: timestamp {ts:?} is not Unix seconds", n + 1))?;
        out.push(Watch {
            user: user.to_string(),
            video: video.to_string(),
            watch_ms: (completion * 10_000.0) as u64,
            duration_ms: 10_000,
            completed: completion >= 0.999,
            liked: false,
            shared: false,
            ts,
        });
    }
    out.sort_by_key(|w| w.ts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_parse_and_bad_ones_say_where() {
        let log = parse_log("user,video,completion,timestamp\nu1,v2,0.5,20\nu1,v1,1,10\n").unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].video, "v1");
        assert!((log[1].completion() - 0.5).abs() < 1e-6);
        assert!(parse_log("u1,v1,2,10").unwrap_err().contains("line 1"));
        assert!(parse_log("u1,v1,0.5").unwrap_err().contains("expected"));
    }
}
