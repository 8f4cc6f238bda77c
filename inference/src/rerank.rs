//! Diversity re-rank: no two consecutive videos from one creator, at most
//! three per sound per page, and about one slot in five given to
//! exploration so the feed does not collapse onto what it already knows.

/// A scored candidate, as the re-rank sees it.
#[derive(Debug, Clone)]
pub struct Ranked<R> {
    pub slot: u32,
    pub score: f32,
    pub creator: u32,
    pub sound: Option<u32>,
    pub reason: R,
    pub exploratory: bool,
}

pub struct Rules {
    pub page: usize,
    pub max_per_sound: usize,
    /// One position in `explore_every` is filled from exploratory items.
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

/// Orders candidates (best first within each group) into a feed of up to
/// `len` items honouring [`Rules`]. When the rules cannot all be met (a
/// catalog of one creator), the best remaining item is used instead of
/// ending the feed early.
pub fn diversify<R: Clone>(mut items: Vec<Ranked<R>>, rules: &Rules, len: usize) -> Vec<Ranked<R>> {
    items.sort_by(|a, b| b.score.total_cmp(&a.score));
    let (mut explore, mut main): (Vec<_>, Vec<_>) = items.into_iter().partition(|r| r.exploratory);
    let mut out: Vec<Ranked<R>> = Vec::with_capacity(len.min(main.len() + explore.len()));
    let mut sounds: Vec<u32> = Vec::new();
    while out.len() < len && !(main.is_empty() && explore.is_empty()) {
        if out.len().is_multiple_of(rules.page) {
            sounds.clear();
        }
        let want_explore =
            rules.explore_every > 0 && out.len() % rules.explore_every == rules.explore_every - 1;
        let last_creator = out.last().map(|r| r.creator);
        let ok = |r: &Ranked<R>| {
            Some(r.creator) != last_creator
                && r.sound.is_none_or(|s| {
                    sounds.iter().filter(|&&x| x == s).count() < rules.max_per_sound
                })
        };
        let (first, second) = if want_explore {
            (&mut explore, &mut main)
        } else {
            (&mut main, &mut explore)
        };
        let pick = if let Some(i) = first.iter().position(ok) {
            first.remove(i)
        } else if let Some(i) = second.iter().position(ok) {
            second.remove(i)
        } else if !first.is_empty() {
            first.remove(0)
        } else {
            second.remove(0)
        };
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
    fn a_single_creator_catalog_still_fills_the_feed() {
        let items: Vec<_> = (0..5).map(|i| item(i, 1.0, 7, None, false)).collect();
        assert_eq!(diversify(items, &Rules::default(), 10).len(), 5);
    }
}
