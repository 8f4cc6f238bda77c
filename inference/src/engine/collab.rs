//! Item-to-item collaborative filtering, kept online: every watch adds one
//! co-watch count between the video and each of the viewer's last
//! [`RECENT`] videos (both ways), so "people who watched this also watched
//! that" is known the moment it happens, with no batch job. A viewer's
//! collaborative score for a video is the cosine-normalised sum over their
//! recent videos: item-kNN (Sarwar et al. 2001), whose batch form is one
//! of the baselines `eval-feed` compares the feed against.
//!
//! Memory is bounded: a video keeps at most [`MAX_CO`] neighbours; when it
//! has more, it keeps the strongest half (newer videos first among equal
//! counts), since the long tail of single co-watches carries little signal.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::state::{Catalog, User};

/// Videos of a viewer's history the collaborative signal looks back on.
pub(super) const RECENT: usize = 20;
/// Neighbours kept per video.
const MAX_CO: usize = 256;

/// Records that the viewer `u` watched `slot`: one co-watch with each of
/// their recent videos. Call before `slot` joins `u.recent`.
pub(super) fn co_watch(cat: &Catalog, u: &User, slot: u32) {
    let Some(v) = cat.videos.get(slot as usize) else {
        return;
    };
    for &p in &u.recent {
        if p == slot {
            continue;
        }
        if let Some(other) = cat.videos.get(p as usize) {
            bump(&other.co, slot);
            bump(&v.co, p);
        }
    }
}

/// Collaborative scores of every video co-watched with the viewer's recent
/// videos: Σ over recent p of co(p, v) / √(views p · views v).
pub(super) fn scores(cat: &Catalog, u: &User) -> HashMap<u32, f32> {
    let mut raw: HashMap<u32, f32> = HashMap::new();
    for &p in &u.recent {
        let Some(pv) = cat.live(p) else { continue };
        let np = pv.stats.lock().views.max(1.0).sqrt();
        for (&v, &c) in pv.co.lock().iter() {
            *raw.entry(v).or_default() += c / np;
        }
    }
    raw.retain(|&v, s| match cat.live(v) {
        Some(video) if !u.watched.contains(&v) => {
            *s /= video.stats.lock().views.max(1.0).sqrt();
            true
        }
        _ => false,
    });
    raw
}

/// The collaborative score of one video for the viewer (as [`scores`]).
pub(super) fn score(cat: &Catalog, u: &User, slot: u32) -> f32 {
    let Some(v) = cat.live(slot) else { return 0.0 };
    let nv = v.stats.lock().views.max(1.0).sqrt();
    let mut sum = 0.0;
    for &p in &u.recent {
        if let Some(pv) = cat.live(p) {
            if let Some(&c) = pv.co.lock().get(&slot) {
                sum += c / (pv.stats.lock().views.max(1.0).sqrt() * nv);
            }
        }
    }
    sum
}

/// The `n` best-scored videos, best first; ties by newer slot, so the
/// order never depends on a hash map's iteration.
pub(super) fn top(scores: &HashMap<u32, f32>, n: usize) -> Vec<u32> {
    let mut all: Vec<(f32, u32)> = scores.iter().map(|(&v, &s)| (s, v)).collect();
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));
    if all.len() > n {
        all.select_nth_unstable_by(n, order);
        all.truncate(n);
    }
    all.sort_by(order);
    all.into_iter().map(|(_, v)| v).collect()
}

fn bump(co: &Mutex<HashMap<u32, f32>>, other: u32) {
    let mut co = co.lock();
    *co.entry(other).or_default() += 1.0;
    if co.len() > MAX_CO {
        let mut all: Vec<(f32, u32)> = co.iter().map(|(&v, &c)| (c, v)).collect();
        all.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        all.truncate(MAX_CO / 2);
        *co = all.into_iter().map(|(c, v)| (v, c)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_neighbour_list_keeps_its_strongest_half() {
        let co = Mutex::new(HashMap::new());
        for v in 0..MAX_CO as u32 {
            bump(&co, v);
        }
        bump(&co, 7);
        bump(&co, 9);
        assert_eq!(co.lock().len(), MAX_CO);
        bump(&co, 10_000);
        let kept = co.lock();
        assert_eq!(kept.len(), MAX_CO / 2);
        assert_eq!(kept[&7], 2.0);
        assert_eq!(kept[&9], 2.0);
        // Among equal counts the newest slots stay.
        assert!(kept.contains_key(&10_000));
        assert!(!kept.contains_key(&0));
        let top = top(&kept, 3);
        assert_eq!(top, vec![9, 7, 10_000]);
    }
}
