//! Ranking metrics of top-10 lists against held-out positives: HR@10,
//! NDCG@10, catalog coverage, intra-list diversity; over all evaluated
//! users and per training-history cohort.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::embed::dot;

use super::split::{cohort, Split, COHORTS};

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

/// A method's results: over every evaluated user, and per cohort.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    pub all: Metrics,
    pub cohorts: BTreeMap<&'static str, Metrics>,
}

/// Scores one list per user of `split.users` (same order).
pub fn score(
    split: &Split,
    lists: &[Vec<String>],
    embs: &HashMap<&str, &[f32]>,
    catalog: usize,
) -> MethodResult {
    let users: Vec<&str> = split.users.iter().map(String::as_str).collect();
    let all = metrics(lists, &users, &split.positives, embs, catalog);
    let mut cohorts = BTreeMap::new();
    for c in COHORTS {
        let (l, u): (Vec<Vec<String>>, Vec<&str>) = lists
            .iter()
            .zip(&users)
            .filter(|(_, u)| cohort(split.train_events(u)) == c)
            .map(|(l, u)| (l.clone(), *u))
            .unzip();
        cohorts.insert(c, metrics(&l, &u, &split.positives, embs, catalog));
    }
    MethodResult { all, cohorts }
}

pub fn metrics(
    lists: &[Vec<String>],
    users: &[&str],
    positives: &HashMap<String, HashSet<String>>,
    embs: &HashMap<&str, &[f32]>,
    catalog: usize,
) -> Metrics {
    let mut hr = 0.0;
    let mut ndcg = 0.0;
    let mut div = 0.0;
    let mut covered: HashSet<&str> = HashSet::new();
    for (list, user) in lists.iter().zip(users) {
        let empty = HashSet::new();
        let pos = positives.get(*user).unwrap_or(&empty);
        let gains: Vec<f64> = list
            .iter()
            .take(10)
            .map(|v| f64::from(u8::from(pos.contains(v))))
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
