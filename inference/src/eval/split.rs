//! The two standard offline protocols, each turning one interaction log
//! into training events, held-out positives per user and the cohort each
//! evaluated user falls in (by training events), so every method is scored
//! on exactly the same split and users.
//!
//! - **Time split** (global): the first `train_share` of events (by time)
//!   train; a user's positives are the videos they went on to enjoy
//!   (completion ≥ 0.7 or liked) and had not watched in training. This is
//!   how the box lives: trained on the past, asked about the future, with
//!   many users who have no past.
//! - **Leave last out**: each user's last enjoyed video they had not
//!   watched before is held out; everything else trains (other users'
//!   later events included, as the protocol is usually run, for the
//!   collaborative baselines); the whole catalog is ranked for them. The
//!   feed and the popularity baselines are asked at the moment of the
//!   held-out event, knowing only the events before it: a box cannot see
//!   the future, and the user was choosing then, not at the log's end.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::engine::Watch;

/// A held-out event counts as a positive when the user enjoyed it.
pub fn enjoyed(w: &Watch) -> bool {
    w.completion() >= 0.7 || w.liked
}

/// Training-history buckets a result is reported in.
pub const COHORTS: [&str; 4] = ["none", "1-9", "10-49", "50+"];

pub fn cohort(train_events: usize) -> &'static str {
    match train_events {
        0 => COHORTS[0],
        1..=9 => COHORTS[1],
        10..=49 => COHORTS[2],
        _ => COHORTS[3],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    TimeSplit,
    LeaveLastOut,
}

pub struct Split {
    pub protocol: Protocol,
    /// Sorted by time.
    pub train: Vec<Watch>,
    /// What each evaluated user went on to enjoy.
    pub positives: HashMap<String, HashSet<String>>,
    /// The evaluated users (sampled to at most `max_users`), in a fixed order.
    pub users: Vec<String>,
    /// Each user's training videos, in time order.
    pub history: HashMap<String, Vec<String>>,
    /// When recommendations are asked for.
    pub now: i64,
    /// Leave-last-out: when each user's held-out event happened. The feed
    /// is asked then, having seen only the training events before it
    /// (`replay`); the time split asks everyone at `now`.
    pub asked_at: HashMap<String, i64>,
}

impl Split {
    pub fn time_split(events: &[Watch], train_share: f64, max_users: usize, seed: u64) -> Self {
        let cut = ((events.len() as f64) * train_share) as usize;
        let (train, test) = events.split_at(cut.min(events.len()));
        let history = histories(train);
        let mut positives: HashMap<String, HashSet<String>> = HashMap::new();
        for w in test {
            let seen = history
                .get(&w.user)
                .is_some_and(|h| h.iter().any(|v| v == &w.video));
            if enjoyed(w) && !seen {
                positives
                    .entry(w.user.clone())
                    .or_default()
                    .insert(w.video.clone());
            }
        }
        let now = test.first().or(train.last()).map_or(0, |w| w.ts);
        Self::finish(
            Protocol::TimeSplit,
            train.to_vec(),
            positives,
            history,
            (now, HashMap::new()),
            max_users,
            seed,
        )
    }

    pub fn leave_last_out(events: &[Watch], max_users: usize, seed: u64) -> Self {
        // Each user's last enjoyed event whose video they had not watched
        // before it.
        let mut first_seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, w) in events.iter().enumerate() {
            first_seen.entry((&w.user, &w.video)).or_insert(i);
        }
        let mut held: HashMap<&str, usize> = HashMap::new();
        for (i, w) in events.iter().enumerate() {
            if enjoyed(w) && first_seen[&(w.user.as_str(), w.video.as_str())] == i {
                held.insert(&w.user, i);
            }
        }
        let held_out: HashSet<usize> = held.values().copied().collect();
        let mut positives: HashMap<String, HashSet<String>> = HashMap::new();
        let mut train = Vec::with_capacity(events.len());
        for (i, w) in events.iter().enumerate() {
            if held_out.contains(&i) {
                positives
                    .entry(w.user.clone())
                    .or_default()
                    .insert(w.video.clone());
            } else if held
                .get(w.user.as_str())
                .is_none_or(|&h| events[h].video != w.video)
            {
                // A later rewatch of the held-out video would give it away.
                train.push(w.clone());
            }
        }
        let history = histories(&train);
        let now = events.last().map_or(0, |w| w.ts);
        let asked_at = held
            .iter()
            .map(|(u, &i)| ((*u).to_owned(), events[i].ts))
            .collect();
        Self::finish(
            Protocol::LeaveLastOut,
            train,
            positives,
            history,
            (now, asked_at),
            max_users,
            seed,
        )
    }

    fn finish(
        protocol: Protocol,
        train: Vec<Watch>,
        positives: HashMap<String, HashSet<String>>,
        history: HashMap<String, Vec<String>>,
        (now, asked_at): (i64, HashMap<String, i64>),
        max_users: usize,
        seed: u64,
    ) -> Self {
        let mut users: Vec<String> = positives.keys().cloned().collect();
        users.sort_unstable();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        users.shuffle(&mut rng);
        users.truncate(max_users);
        Self {
            protocol,
            train,
            positives,
            users,
            history,
            now,
            asked_at,
        }
    }

    /// When `user` is asked for recommendations.
    pub fn asked_at(&self, user: &str) -> i64 {
        self.asked_at.get(user).copied().unwrap_or(self.now)
    }

    pub fn train_events(&self, user: &str) -> usize {
        self.history.get(user).map_or(0, Vec::len)
    }

    /// Evaluated users per cohort.
    pub fn cohort_sizes(&self) -> BTreeMap<&'static str, usize> {
        let mut out: BTreeMap<&'static str, usize> = COHORTS.iter().map(|c| (*c, 0)).collect();
        for u in &self.users {
            *out.entry(cohort(self.train_events(u))).or_default() += 1;
        }
        out
    }
}

fn histories(train: &[Watch]) -> HashMap<String, Vec<String>> {
    let mut h: HashMap<String, Vec<String>> = HashMap::new();
    for w in train {
        h.entry(w.user.clone()).or_default().push(w.video.clone());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(user: &str, video: &str, completion: f32, ts: i64) -> Watch {
        Watch {
            user: user.into(),
            video: video.into(),
            watch_ms: (completion * 10_000.0) as u64,
            duration_ms: 10_000,
            completed: completion >= 0.999,
            liked: false,
            shared: false,
            ts,
        }
    }

    #[test]
    fn leave_last_out_holds_out_each_users_last_new_enjoyed_video() {
        let log = vec![
            w("a", "v1", 1.0, 1),
            w("a", "v2", 1.0, 2),
            w("b", "v1", 0.2, 3),
            w("a", "v1", 1.0, 4), // a rewatch is not new
            w("b", "v3", 0.9, 5),
        ];
        let s = Split::leave_last_out(&log, 10, 1);
        assert_eq!(s.positives["a"], HashSet::from(["v2".to_owned()]));
        assert_eq!(s.positives["b"], HashSet::from(["v3".to_owned()]));
        assert_eq!(s.train.len(), 3);
        assert_eq!(s.train_events("a"), 2);
        assert_eq!(s.train_events("b"), 1);
        assert_eq!(s.cohort_sizes()["1-9"], 2);
    }

    #[test]
    fn the_time_split_scores_only_new_enjoyed_videos_after_the_cut() {
        let log = vec![
            w("a", "v1", 1.0, 1),
            w("b", "v2", 1.0, 2),
            w("a", "v1", 1.0, 3), // seen in training
            w("a", "v3", 0.1, 4), // not enjoyed
            w("c", "v2", 0.8, 5), // a user with no past
        ];
        let s = Split::time_split(&log, 0.4, 10, 1);
        assert_eq!(s.users, vec!["c".to_owned()]);
        assert_eq!(s.cohort_sizes()["none"], 1);
        assert_eq!(s.now, 3);
        assert_eq!(cohort(0), "none");
        assert_eq!(cohort(9), "1-9");
        assert_eq!(cohort(10), "10-49");
        assert_eq!(cohort(50), "50+");
    }
}
