//! The cold-start page: a viewer with no usable history or interests.
//! What most people watch is the best guess for someone unknown (on real
//! logs plain popularity is hard to beat), so the page is popularity-led
//! and only lightly diversified — at most [`COLD_PER_TOPIC`] videos of one
//! leading hashtag per page.

use super::*;

/// A cold-start page holds at most this many videos of one leading hashtag.
const COLD_PER_TOPIC: usize = 3;

impl Engine {
    /// With a trained ranker, the most watched, the lately most watched and
    /// the trending videos are ranked by it (it has learnt from every
    /// viewer's first watches how much overall, recent and enjoyed
    /// popularity, velocity and freshness each predict), and its order is
    /// fused with the two popularity orders (`fusion`). With the hand
    /// formula (which knows no popularity), the most watched and the
    /// trending alternate.
    pub(super) fn cold_start(
        &self,
        u: &User,
        exclude: &HashSet<u32>,
        now: i64,
        ranker: &Ranker,
    ) -> Result<Vec<Entry>> {
        let hot = self.trending_entries(exclude, Reason::ColdStart);
        let most = self.popular.read().clone();
        let recent = self.recent_popular.read().clone();
        let cat = self.catalog.read();
        let usable =
            |s: u32| !exclude.contains(&s) && !u.watched.contains(&s) && cat.live(s).is_some();
        let ordered: Vec<Entry> = match ranker {
            Ranker::Formula => alternate(hot, &most, usable),
            Ranker::Model(_) => {
                let mut seen = HashSet::new();
                let slots: Vec<u32> = most
                    .iter()
                    .chain(recent.iter())
                    .copied()
                    .chain(hot.iter().map(|e| e.slot))
                    .filter(|&s| usable(s) && seen.insert(s))
                    .collect();
                let collab = collab::scores(&cat, u);
                let feats: Vec<Features> = slots
                    .iter()
                    .map(|s| {
                        let c = collab.get(s).copied().unwrap_or(0.0);
                        self.features(&cat, u, &cat.videos[*s as usize], now, c)
                    })
                    .collect();
                let scores = ranker.score(&feats)?;
                // Popularity-led: the model's order fused with both
                // popularity orders at full weight for a stranger.
                let fused = fusion::fuse(
                    &slots,
                    &scores,
                    &[&most, &recent],
                    fusion::popularity_weight(u.events),
                );
                let mut scored: Vec<(f32, u32)> = fused.into_iter().zip(slots).collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                scored
                    .into_iter()
                    .map(|(score, slot)| Entry {
                        slot,
                        reason: Reason::ColdStart,
                        score,
                    })
                    .collect()
            }
        };
        let mut per_topic: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(self.cfg.list_len);
        let mut held = Vec::new();
        for e in ordered {
            let topic = cat.videos[e.slot as usize]
                .doc
                .hashtags
                .first()
                .map_or("", String::as_str);
            let n = per_topic.entry(topic).or_default();
            // The cap applies within each page's worth of the list.
            if *n < COLD_PER_TOPIC * (out.len() / PAGE_SIZE + 1) {
                *n += 1;
                out.push(e);
            } else {
                held.push(e);
            }
            if out.len() >= self.cfg.list_len {
                break;
            }
        }
        // Too few topics to honour the cap: the rest in their order.
        out.extend(
            held.into_iter()
                .take(self.cfg.list_len.saturating_sub(out.len())),
        );
        Ok(out)
    }
}

/// The most watched and the trending, alternately, each once.
fn alternate(hot: Vec<Entry>, most: &[u32], usable: impl Fn(u32) -> bool) -> Vec<Entry> {
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(hot.len() + most.len());
    let mut most = most
        .iter()
        .copied()
        .filter(|&s| usable(s))
        .map(|slot| Entry {
            slot,
            reason: Reason::ColdStart,
            score: 0.0,
        });
    for e in hot.into_iter().filter(|e| usable(e.slot)) {
        if let Some(m) = most.next() {
            if taken.insert(m.slot) {
                out.push(m);
            }
        }
        if taken.insert(e.slot) {
            out.push(e);
        }
    }
    out.extend(most.filter(|e| taken.insert(e.slot)));
    out
}
