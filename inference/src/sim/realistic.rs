//! A log shaped like real interaction logs, for an evaluation on which
//! plain popularity is hard to beat (as it is on real logs):
//!
//! - **long-tailed activity**: a user's event count is log-normal with a
//!   median of 8 (clamped to `events_per_user`), so most users have a
//!   handful of events and a few have hundreds;
//! - **arrivals**: users join over the whole period (their events spread
//!   from their arrival to the end), and 70 % of the videos are published
//!   during it (`World::generate`), so a time split meets many users and
//!   videos it never saw;
//! - **popularity and position drive choices**: at each event the user is
//!   shown a page of [`PAGE`] videos drawn by exposure — intrinsic appeal ×
//!   views so far (rich get richer) × freshness × a little interest — the
//!   page is ordered by views (the platform's own ranking), and the user
//!   picks a position with a 1/(position+1) bias times their interest in
//!   the video;
//! - **drifting interests**: now and then a user takes up a new topic and
//!   half-forgets an old one.
//!
//! Completion then follows the same watch model as the uniform log.

use std::collections::HashSet;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use super::{World, WorldConfig, TOPICS};
use crate::engine::Watch;

/// Videos on a page the user chooses from.
pub const PAGE: usize = 8;
/// Chance per event that a user's interests drift.
const DRIFT: f32 = 0.02;
/// A video's freshness halves about every week.
const FRESH_DAYS: f64 = 7.0;

pub fn log(world: &mut World, cfg: &WorldConfig) -> Vec<Watch> {
    let end = world.start + cfg.days.max(1) * 86_400;
    let activity = LogNormal::new(8f64.ln(), 1.3).unwrap_or_else(|_| unreachable!());
    let (lo, hi) = (cfg.events_per_user.0.max(1), cfg.events_per_user.1.max(1));
    // Every (time, user) slot, in time order.
    let mut slots: Vec<(i64, usize)> = Vec::new();
    for u in 0..world.users.len() {
        let n = (activity.sample(&mut world.rng).round() as usize).clamp(lo, hi.max(lo));
        let arrival = world.start + world.rng.random_range(0..(end - world.start) * 9 / 10);
        for _ in 0..n {
            slots.push((world.rng.random_range(arrival..end), u));
        }
    }
    slots.sort_unstable();

    let mut order: Vec<usize> = (0..world.videos.len()).collect();
    order.sort_by_key(|&v| world.videos[v].doc.created_at);
    let mut views = vec![0u32; world.videos.len()];
    let mut seen: Vec<HashSet<usize>> = vec![HashSet::new(); world.users.len()];
    // Cumulative exposure over the published videos, in `order`.
    let mut cumulative: Vec<f64> = Vec::with_capacity(world.videos.len());
    let mut events = Vec::with_capacity(slots.len());
    for (ts, u) in slots {
        if world.rng.random::<f32>() < DRIFT {
            drift(world, u);
        }
        let mut total = 0.0;
        cumulative.clear();
        for &v in &order {
            let video = &world.videos[v];
            if video.doc.created_at > ts {
                break; // not published yet (the rest are later still)
            }
            let w = if seen[u].contains(&v) {
                0.0
            } else {
                let age_days = (ts - video.doc.created_at).max(0) as f64 / 86_400.0;
                let fresh = 0.5f64.powf(age_days / FRESH_DAYS) + 0.05;
                let interest = f64::from(world.users[u].interests[video.topic]);
                f64::from(video.popularity)
                    * f64::from(1 + views[v]).powf(0.7)
                    * fresh
                    * (0.5 + interest)
            };
            total += w;
            cumulative.push(total);
        }
        if total <= 0.0 {
            continue;
        }
        // The page: PAGE draws by exposure (a repeat draw is skipped).
        let mut page: Vec<usize> = Vec::with_capacity(PAGE);
        for _ in 0..PAGE * 2 {
            if page.len() == PAGE {
                break;
            }
            let x = world.rng.random::<f64>() * total;
            // The first video whose cumulative exposure passes x (a video
            // of zero weight adds nothing, so it is never the one).
            let i = cumulative
                .partition_point(|&c| c <= x)
                .min(cumulative.len() - 1);
            let v = order[i];
            if !page.contains(&v) && !seen[u].contains(&v) {
                page.push(v);
            }
        }
        if page.is_empty() {
            continue;
        }
        // Ordered as the platform would: most viewed first.
        page.sort_by(|a, b| views[*b].cmp(&views[*a]).then(a.cmp(b)));
        let choice: Vec<f64> = page
            .iter()
            .enumerate()
            .map(|(pos, &v)| {
                let interest = f64::from(world.users[u].interests[world.videos[v].topic]);
                (0.2 + interest) / (pos as f64 + 1.0)
            })
            .collect();
        let sum: f64 = choice.iter().sum();
        let mut x = world.rng.random::<f64>() * sum;
        let mut chosen = page[0];
        for (c, &v) in choice.iter().zip(&page) {
            x -= c;
            if x <= 0.0 {
                chosen = v;
                break;
            }
        }
        seen[u].insert(chosen);
        views[chosen] += 1;
        events.push(world.watch(u, chosen, ts));
    }
    events
}

/// The user takes up a new topic and half-forgets their strongest one.
fn drift(world: &mut World, u: usize) {
    let t = world.rng.random_range(0..TOPICS.len());
    let interests = &mut world.users[u].interests;
    if let Some(strongest) =
        (0..interests.len()).max_by(|&a, &b| interests[a].total_cmp(&interests[b]))
    {
        interests[strongest] *= 0.5;
    }
    interests[t] = interests[t].max(0.8);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::LogStyle;
    use super::*;

    fn world() -> (WorldConfig, Vec<Watch>) {
        let cfg = WorldConfig {
            users: 400,
            videos: 800,
            creators: 80,
            ..WorldConfig::realistic()
        };
        assert_eq!(cfg.style, LogStyle::Realistic);
        let log = World::generate(&cfg).log(&cfg);
        (cfg, log)
    }

    #[test]
    fn activity_and_popularity_are_long_tailed() {
        let (_, log) = world();
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        let mut per_video: HashMap<&str, usize> = HashMap::new();
        for w in &log {
            *per_user.entry(&w.user).or_default() += 1;
            *per_video.entry(&w.video).or_default() += 1;
        }
        let mut users: Vec<usize> = per_user.values().copied().collect();
        users.sort_unstable();
        let median = users[users.len() / 2];
        let max = *users.last().unwrap();
        assert!(
            median <= 12 && max >= 8 * median,
            "median {median}, max {max}"
        );
        let mut videos: Vec<usize> = per_video.values().copied().collect();
        videos.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = videos.iter().take(videos.len() / 10).sum();
        assert!(
            top * 2 > log.len(),
            "the top 10 % of videos take {top} of {} events",
            log.len()
        );
    }

    #[test]
    fn the_log_is_chronological_deterministic_and_never_before_publication() {
        let (cfg, a) = world();
        let b = World::generate(&cfg).log(&cfg);
        assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.video == y.video && x.user == y.user));
        let w = World::generate(&cfg);
        for e in &a {
            let v = &w.videos[w.video_index(&e.video).unwrap()];
            assert!(
                e.ts >= v.doc.created_at,
                "{} watched before it was published",
                e.video
            );
        }
        // No user watches a video twice.
        let pairs: HashSet<(&str, &str)> = a
            .iter()
            .map(|e| (e.user.as_str(), e.video.as_str()))
            .collect();
        assert_eq!(pairs.len(), a.len());
    }
}
