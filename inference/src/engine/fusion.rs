//! Reciprocal rank fusion (Cormack, Clarke & Büttcher 2009) of the
//! ranker's order with the two popularity orders (most watched overall and
//! lately). A learned ranker is sharp where it has seen a viewer's history
//! and blunt where it has not; plain popularity is the opposite. Fusing by
//! rank, not by score, needs no calibration between them, and the
//! popularity orders' weight shrinks as the viewer's history grows
//! ([`popularity_weight`]), so a stranger's page is popularity-led and a
//! regular's is the ranker's.

use std::collections::HashMap;

/// The usual constant damps the head of each list; 10 (not 60) because a
/// page is ten videos long and its head is what matters.
const K: f32 = 10.0;
/// History (events) at which the popularity orders weigh half as much.
const HALF_WEIGHT_EVENTS: f32 = 10.0;

/// How much the popularity orders count for a viewer with `events`.
pub(super) fn popularity_weight(events: u32) -> f32 {
    HALF_WEIGHT_EVENTS / (HALF_WEIGHT_EVENTS + events as f32)
}

/// Fused scores of `slots`, aligned with them: 1/(K + rank by the ranker)
/// plus `weight` × Σ 1/(K + rank) over the popularity orders a slot is in.
pub(super) fn fuse(slots: &[u32], scores: &[f32], popular: &[&[u32]], weight: f32) -> Vec<f32> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(slots[a].cmp(&slots[b]))
    });
    let mut fused = vec![0.0f32; slots.len()];
    for (rank, &i) in order.iter().enumerate() {
        fused[i] = 1.0 / (K + rank as f32);
    }
    if weight > 0.0 {
        for list in popular {
            let rank: HashMap<u32, usize> = list.iter().enumerate().map(|(r, &s)| (s, r)).collect();
            for (i, s) in slots.iter().enumerate() {
                if let Some(&r) = rank.get(s) {
                    fused[i] += weight / (K + r as f32);
                }
            }
        }
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_leads_for_strangers_and_the_ranker_for_regulars() {
        let slots = [1, 2, 3];
        // The ranker prefers 3; both popularity orders put 1 first.
        let scores = [0.1, 0.2, 0.9];
        let most: &[u32] = &[1, 2, 3];
        let stranger = fuse(&slots, &scores, &[most, most], popularity_weight(0));
        assert!(stranger[0] > stranger[2], "{stranger:?}");
        let regular = fuse(&slots, &scores, &[most, most], popularity_weight(200));
        assert!(regular[2] > regular[0], "{regular:?}");
        // Without popularity it is the ranker's order.
        let plain = fuse(&slots, &scores, &[], 1.0);
        assert!(plain[2] > plain[1] && plain[1] > plain[0]);
    }
}
