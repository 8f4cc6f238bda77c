//! Diversity re-rank: no two consecutive videos from one creator, at most
//! three per sound per page, and at least one slot in five given to
//! exploration so the feed does not collapse onto what it already knows.
//!
//! Exploratory items (not retrieved for this viewer's taste: trending,
//! popular, the new-video boost, random picks) compete with the others on
//! score everywhere; the rule only forces one in when a run of five has
//! none. Confining them to the forced slots instead (as this once did)
//! kept the most watched videos off a newcomer's page except in two slots
//! out of ten, which on real-shaped logs cost more than any ranker gained.

/// A scored candidate, as the re-rank sees it.
#[derive(Debug, Clone)]
pub struct Ranked<R> {
    pub slot: u32,
    pub score: f32,
    pub creator: u32,
    pub sound: Option<u32>,
    pub reason: R,
    pub exploratory: bool,
    /// Pushed to this viewer (the new-video boost): a forced exploration
    /// slot takes these before other exploratory items, so a new video gets
    /// its audience even when the popular outscore it.
    pub pushed: bool,
}

pub struct Rules {
    pub page: usize,
    pub max_per_sound: usize,
    /// At least one position in each run of `explore_every` (aligned:
    /// 0..5, 5..10, …) holds an exploratory item, when one is left.
    pub explore_every: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            page: 10,
            max_per_sound: 3,
            explore_every: 5,
        }
    }
}

/// Orders candidates (best first) into a feed of up to `len` items
/// honouring [`Rules`]. When the rules cannot all be met (a catalog of one
/// creator), the best remaining item is used instead of ending the feed
/// early.
pub fn diversify<R: Clone>(mut items: Vec<Ranked<R>>, rules: &Rules, len: usize) -> Vec<Ranked<R>> {
    items.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out: Vec<Ranked<R>> = Vec::with_capacity(len.min(items.len()));
    let mut sounds: Vec<u32> = Vec::new();
    while out.len() < len && !items.is_empty() {
        if out.len().is_multiple_of(rules.page) {
            sounds.clear();
        }
        let e = rules.explore_every;
        let must_explore = e > 0
            && out.len() % e == e - 1
            && !out[out.len() + 1 - e..].iter().any(|r| r.exploratory);
        let last_creator = out.last().map(|r| r.creator);
        let ok = |r: &Ranked<R>| {
            Some(r.creator) != last_creator
                && r.sound.is_none_or(|s| {
                    sounds.iter().filter(|&&x| x == s).count() < rules.max_per_sound
                })
        };
        let forced = must_explore
            .then(|| {
                items
                    .iter()
                    .position(|r| r.pushed && ok(r))
                    .or_else(|| items.iter().position(|r| r.exploratory && ok(r)))
            })
            .flatten();
        let i = forced.or_else(|| items.iter().position(ok)).unwrap_or(0);
        let pick = items.remove(i);
        if let Some(s) = pick.sound {
            sounds.push(s);
        }
        out.push(pick);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        slot: u32,
        score: f32,
        creator: u32,
        sound: Option<u32>,
        exploratory: bool,
    ) -> Ranked<()> {
        Ranked {
            slot,
            score,
            creator,
            sound,
            reason: (),
            exploratory,
            pushed: false,
        }
    }

    #[test]
    fn no_consecutive_creator_and_sound_cap_per_page() {
        // Creator 1 owns the six best items, all with sound 9.
        let mut items: Vec<_> = (0..6)
            .map(|i| item(i, 10.0 - i as f32, 1, Some(9), false))
            .collect();
        items.extend((6..20).map(|i| item(i, 1.0 - i as f32 * 0.01, i, None, false)));
        let out = diversify(items, &Rules::default(), 20);
        assert_eq!(out.len(), 20);
        for w in out.windows(2) {
            assert_ne!(w[0].creator, w[1].creator);
        }
        for page in out.chunks(10) {
            assert!(page.iter().filter(|r| r.sound == Some(9)).count() <= 3);
        }
        assert_eq!(out[0].slot, 0, "the best item still leads");
    }

    #[test]
    fn every_fifth_slot_explores_when_possible() {
        let mut items: Vec<_> = (0..20).map(|i| item(i, 5.0, i, None, false)).collect();
        items.extend((20..25).map(|i| item(i, 0.1, i, None, true)));
        let out = diversify(items, &Rules::default(), 20);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.exploratory, i % 5 == 4, "position {i}");
        }
    }

    #[test]
    fn exploratory_items_compete_on_score_and_pushed_ones_take_forced_slots() {
        // Two strong exploratory items lead on merit; after them the run of
        // five is satisfied, so the weak ones wait for the next run.
        let mut items = vec![item(0, 9.0, 0, None, true), item(1, 8.0, 1, None, true)];
        items.extend((2..12).map(|i| item(i, 5.0 - i as f32 * 0.1, i, None, false)));
        let mut pushed = item(12, 0.01, 12, None, true);
        pushed.pushed = true;
        items.push(pushed);
        items.push(item(13, 0.5, 13, None, true));
        let out = diversify(items, &Rules::default(), 10);
        let slots: Vec<u32> = out.iter().map(|r| r.slot).collect();
        assert_eq!(&slots[..5], &[0, 1, 2, 3, 4]);
        // 5..10 had no exploratory item by position 9: the pushed one goes
        // there, ahead of the better-scored random pick.
        assert_eq!(slots[9], 12, "{slots:?}");
    }

    #[test]
    fn a_single_creator_catalog_still_fills_the_feed() {
        let items: Vec<_> = (0..5).map(|i| item(i, 1.0, 7, None, false)).collect();
        assert_eq!(diversify(items, &Rules::default(), 10).len(), 5);
    }
}
