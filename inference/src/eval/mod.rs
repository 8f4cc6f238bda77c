//! Offline evaluation: replay an interaction log split by time, ask the
//! real feed (and popularity and random baselines) for ten videos per
//! held-out user, and score them against what the user went on to enjoy.

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::embed::dot;
use crate::engine::{Engine, EngineConfig, FeedKind, VideoDoc, Watch};
use crate::error::Result;
use crate::rank::{Example, RankModel, Ranker, TrainReport};

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Metrics {
    pub hr_at_10: f64,
    pub ndcg_at_10: f64,
    /// Share of the catalog recommended to at least one user.
    pub coverage: f64,
    /// Mean of 1 − cosine between the items of a list.
    pub intra_list_diversity: f64,
    pub users: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct HistoryPoint {
    pub train_events_per_user: usize,
    pub feed: Metrics,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub videos: usize,
    pub events: usize,
    pub train_events: usize,
    pub test_events: usize,
    pub split_ts: i64,
    /// `model`: trained on the training split (sampled negatives), as
    /// `train-ranker` does on the box; or the model file given.
    pub ranker: &'static str,
    pub training: Option<TrainReport>,
    pub feed: Metrics,
    /// The same feed ranked by the hand formula, for comparison.
    pub feed_formula: Metrics,
    pub popularity: Metrics,
    pub random: Metrics,
    pub hr_lift_over_popularity: f64,
    pub ndcg_lift_over_popularity: f64,
    /// The same users, measured with only their first N training events.
    pub history: Vec<HistoryPoint>,
}

pub struct EvalConfig {
    pub train_share: f64,
    pub max_users: usize,
    pub history_steps: Vec<usize>,
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            train_share: 0.8,
            max_users: 300,
            history_steps: vec![0, 10, 50],
            seed: 1,
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

/// Replays events chronologically through a fresh engine and takes, for
/// each, the features as they stood just before it (label: completed) plus
/// one sampled unwatched video as a negative, so the model learns what a
/// user picks and finishes, not only how long they watch what they picked.
pub fn training_examples(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    seed: u64,
) -> Result<Vec<Example>> {
    use rand::Rng;
    let engine = Engine::new(EngineConfig::default());
    for (doc, emb) in videos {
        engine.load_video(doc.clone(), emb.clone())?;
    }
    engine.rebuild_video_index(None)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut examples = Vec::with_capacity(events.len() * 2);
    let mut last_refresh = i64::MIN;
    for w in events {
        if w.ts - last_refresh > 3600 {
            engine.refresh(w.ts)?;
            last_refresh = w.ts;
        }
        if !videos.is_empty() {
            let other = &videos[rng.random_range(0..videos.len())].0.id;
            if let Some(features) = engine.features_for(&w.user, other, w.ts) {
                examples.push(Example {
                    features,
                    completed: false,
                    weight: 1.0,
                });
            }
        }
        if let (_, Some(ex)) = engine.record_watch(w, true) {
            examples.push(ex);
        }
    }
    Ok(examples)
}

/// Trains a ranker on `events` and writes it to `out`.
pub fn train_ranker(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    out: &std::path::Path,
    epochs: usize,
) -> Result<TrainReport> {
    let examples = training_examples(videos, events, 7)?;
    crate::rank::train(&examples, epochs, out)
}

/// Runs the evaluation. `events` must be sorted by time.
pub fn evaluate(
    videos: &[(VideoDoc, Vec<f32>)],
    events: &[Watch],
    cfg: &EvalConfig,
    model: Option<&std::path::Path>,
) -> Result<Report> {
    let split = ((events.len() as f64) * cfg.train_share) as usize;
    let (train, test) = events.split_at(split);
    let split_ts = test.first().map_or(0, |w| w.ts);
    let mut trained_on: HashMap<&str, HashSet<&str>> = HashMap::new();
    for w in train {
        trained_on.entry(&w.user).or_default().insert(&w.video);
    }
    let mut positives: HashMap<&str, HashSet<&str>> = HashMap::new();
    for w in test {
        let seen = trained_on
            .get(w.user.as_str())
            .is_some_and(|s| s.contains(w.video.as_str()));
        if (w.completion() >= 0.7 || w.liked) && !seen {
            positives.entry(&w.user).or_default().insert(&w.video);
        }
    }
    let mut users: Vec<&str> = positives.keys().copied().collect();
    users.sort_unstable();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    users.shuffle(&mut rng);
    users.truncate(cfg.max_users);

    let scratch =
        tempfile::tempdir().map_err(|e| crate::error::InferenceError::io("temp dir", e))?;
    let (model_path, training) = match model {
        Some(p) => (p.to_path_buf(), None),
        None => {
            let p = scratch.path().join("ranker.safetensors");
            let report = train_ranker(videos, train, &p, 300)?;
            (p, Some(report))
        }
    };
    let ranker =
        || -> Result<Option<Ranker>> { Ok(Some(Ranker::Model(RankModel::load(&model_path)?))) };
    let engine = build_engine(videos, train, ranker()?)?;
    let formula_engine = build_engine(videos, train, None)?;
    let embs: HashMap<&str, &[f32]> = videos
        .iter()
        .map(|(d, e)| (d.id.as_str(), e.as_slice()))
        .collect();
    let now = split_ts;
    let mut feed_lists = Vec::new();
    let mut formula_lists = Vec::new();
    let mut pop_lists = Vec::new();
    let mut rand_lists = Vec::new();
    for &u in &users {
        feed_lists.push(first_page(&engine, u, now)?);
        formula_lists.push(first_page(&formula_engine, u, now)?);
        pop_lists.push(engine.popular_for(u, 10));
        let mut pool = engine.unwatched_ids(u);
        pool.shuffle(&mut rng);
        pool.truncate(10);
        rand_lists.push(pool);
    }
    let score = |lists: &[Vec<String>], users: &[&str]| {
        metrics(lists, users, &positives, &embs, videos.len())
    };
    let feed = score(&feed_lists, &users);
    let feed_formula = score(&formula_lists, &users);
    let popularity = score(&pop_lists, &users);
    let random = score(&rand_lists, &users);

    // History growth: users with at least the largest step of training
    // events, replayed with only their first N.
    let max_step = cfg.history_steps.iter().copied().max().unwrap_or(0);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in train {
        *counts.entry(&w.user).or_default() += 1;
    }
    let rich: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| counts.get(u).copied().unwrap_or(0) >= max_step)
        .collect();
    let rich_set: HashSet<&str> = rich.iter().copied().collect();
    let mut history = Vec::new();
    for &step in &cfg.history_steps {
        let mut kept: HashMap<&str, usize> = HashMap::new();
        let truncated: Vec<Watch> = train
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
        let lists = rich
            .iter()
            .map(|u| first_page(&engine, u, now))
            .collect::<Result<Vec<_>>>()?;
        history.push(HistoryPoint {
            train_events_per_user: step,
            feed: score(&lists, &rich),
        });
    }
    let lift = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    Ok(Report {
        videos: videos.len(),
        events: events.len(),
        train_events: train.len(),
        test_events: test.len(),
        split_ts,
        ranker: engine.ranker_name(),
        training,
        feed_formula,
        hr_lift_over_popularity: lift(feed.hr_at_10, popularity.hr_at_10),
        ndcg_lift_over_popularity: lift(feed.ndcg_at_10, popularity.ndcg_at_10),
        feed,
        popularity,
        random,
        history,
    })
}

fn first_page(engine: &Engine, user: &str, now: i64) -> Result<Vec<String>> {
    Ok(engine
        .feed(FeedKind::ForYou, Some(user), 10, None, now)?
        .items
        .into_iter()
        .map(|i| i.video_id)
        .collect())
}

fn metrics(
    lists: &[Vec<String>],
    users: &[&str],
    positives: &HashMap<&str, HashSet<&str>>,
    embs: &HashMap<&str, &[f32]>,
    catalog: usize,
) -> Metrics {
    let mut hr = 0.0;
    let mut ndcg = 0.0;
    let mut div = 0.0;
    let mut covered: HashSet<&str> = HashSet::new();
    for (list, user) in lists.iter().zip(users) {
        let empty = HashSet::new();
        let pos = positives.get(user).unwrap_or(&empty);
        let gains: Vec<f64> = list
            .iter()
            .take(10)
            .map(|v| f64::from(u8::from(pos.contains(v.as_str()))))
            .collect();
        if gains.iter().any(|&g| g > 0.0) {
            hr += 1.0;
        }
        let dcg: f64 = gains
            .iter()
            .enumerate()
            .map(|(i, g)| g / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..pos.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        if ideal > 0.0 {
            ndcg += dcg / ideal;
        }
        covered.extend(list.iter().map(String::as_str));
        let vecs: Vec<&[f32]> = list
            .iter()
            .filter_map(|v| embs.get(v.as_str()).copied())
            .collect();
        let mut pairs = 0.0;
        let mut dissim = 0.0;
        for i in 0..vecs.len() {
            for j in i + 1..vecs.len() {
                dissim += 1.0 - f64::from(dot(vecs[i], vecs[j]));
                pairs += 1.0;
            }
        }
        if pairs > 0.0 {
            div += dissim / pairs;
        }
    }
    let n = lists.len().max(1) as f64;
    Metrics {
        hr_at_10: hr / n,
        ndcg_at_10: ndcg / n,
        coverage: covered.len() as f64 / catalog.max(1) as f64,
        intra_list_diversity: div / n,
        users: lists.len(),
    }
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
