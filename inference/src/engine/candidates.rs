//! Where a feed's videos come from: trending, following, the personalised
//! candidate sources and their ranking, and the cold-start page.

use super::*;

/// Most watched (overall) candidates per page; half as many recent ones.
const POPULAR_CANDIDATES: usize = 200;
/// Collaborative neighbours per page.
const COLLAB_CANDIDATES: usize = 100;

impl Engine {
    pub(super) fn trending_entries(&self, exclude: &HashSet<u32>, reason: Reason) -> Vec<Entry> {
        let t = self.trending.read().clone();
        let cat = self.catalog.read();
        let mut out: Vec<Entry> = t
            .iter()
            .filter(|s| !exclude.contains(s) && cat.live(**s).is_some())
            .enumerate()
            .map(|(i, &slot)| Entry {
                slot,
                reason,
                score: 1.0 / (1.0 + i as f32),
            })
            .collect();
        if out.len() < self.cfg.list_len {
            // A young box has little velocity yet: fill with the newest.
            let have: HashSet<u32> = out.iter().map(|e| e.slot).collect();
            let newest = cat
                .videos
                .iter()
                .enumerate()
                .rev()
                .filter(|(s, v)| {
                    v.alive && !have.contains(&(*s as u32)) && !exclude.contains(&(*s as u32))
                })
                .take(self.cfg.list_len - out.len())
                .map(|(s, _)| Entry {
                    slot: s as u32,
                    reason,
                    score: 0.0,
                })
                .collect::<Vec<_>>();
            out.extend(newest);
        }
        out
    }

    pub(super) fn following_entries(&self, user: &str) -> Vec<Entry> {
        let u = self.user(user);
        let follows: Vec<u32> = u.lock().follows.iter().copied().collect();
        let cat = self.catalog.read();
        let mut slots: Vec<u32> = follows
            .iter()
            .filter_map(|c| cat.by_creator.get(c))
            .flatten()
            .copied()
            .filter(|&s| cat.live(s).is_some())
            .collect();
        slots.sort_by_key(|&s| std::cmp::Reverse((cat.videos[s as usize].doc.created_at, s)));
        slots.truncate(1000);
        slots
            .into_iter()
            .map(|slot| Entry {
                slot,
                reason: Reason::Following,
                score: 0.0,
            })
            .collect()
    }

    pub(super) fn for_you(
        &self,
        user: &str,
        exclude: &HashSet<u32>,
        now: i64,
    ) -> Result<(Vec<Entry>, Source)> {
        let handle = self.user(user);
        let mut u = handle.lock();
        u.exploration.retain(|(_, until)| *until > now);
        let Some(emb) = u.emb.clone() else {
            let (ranker, _) = self.ranker_for(user);
            let list = self.cold_start(&u, exclude, now, &ranker)?;
            return Ok((list, Source::ColdStart));
        };
        // Everything is gathered under one read of the catalog; indexes have
        // their own locks and allow concurrent searches.
        let cat = self.catalog.read();
        let mut cands: Vec<(u32, Reason)> = Vec::with_capacity(self.cfg.ann_k + 400);
        // Pool entries first: a video pushed to this user by the new-video
        // boost keeps `exploration` as its reason even when ANN finds it too.
        cands.extend(u.exploration.iter().map(|&(s, _)| (s, Reason::Exploration)));
        let ann_reason = if u.interest_only {
            Reason::ColdStart
        } else {
            Reason::SimilarToWatched
        };
        for hit in self.videos_index.search(&emb, self.cfg.ann_k)? {
            cands.push((hit.id as u32, ann_reason));
        }
        if !u.interest_only {
            // Other users are only try-locked: a busy neighbour is skipped
            // rather than waited for.
            let me = u.slot;
            let near = self.users_index.search(&emb, self.cfg.neighbours)?;
            for other in self.handles(near.iter().map(|h| h.id as u32).filter(|&s| s != me)) {
                if let Some(other) = other.try_lock() {
                    cands.extend(
                        other
                            .positives
                            .iter()
                            .rev()
                            .take(10)
                            .map(|&s| (s, Reason::SimilarUsers)),
                    );
                }
            }
        }
        // People who watched what this viewer watched also watched these
        // (item-kNN, kept online): on real logs the strongest personal
        // signal. The scores are features too, so computed once here.
        let collab = collab::scores(&cat, &u);
        cands.extend(
            collab::top(&collab, COLLAB_CANDIDATES)
                .into_iter()
                .map(|s| (s, Reason::CoWatched)),
        );
        for c in &u.follows {
            if let Some(slots) = cat.by_creator.get(c) {
                cands.extend(slots.iter().rev().take(10).map(|&s| (s, Reason::Following)));
            }
        }
        let mut tags: Vec<(&String, &f32)> = u.tag_aff.iter().filter(|(_, a)| **a > 0.0).collect();
        tags.sort_by(|a, b| b.1.total_cmp(a.1));
        for (tag, _) in tags.into_iter().take(3) {
            if let Some(slots) = cat.by_tag.get(tag) {
                cands.extend(slots.iter().rev().take(30).map(|&s| (s, Reason::Hashtag)));
            }
        }
        let mut sounds: Vec<(&u32, &f32)> = u.sound_aff.iter().filter(|(_, a)| **a > 0.0).collect();
        sounds.sort_by(|a, b| b.1.total_cmp(a.1));
        for (s, _) in sounds.into_iter().take(2) {
            if let Some(slots) = cat.by_sound.get(s) {
                cands.extend(slots.iter().rev().take(20).map(|&s| (s, Reason::Sound)));
            }
        }
        cands.extend(
            self.trending
                .read()
                .iter()
                .take(50)
                .map(|&s| (s, Reason::Trending)),
        );
        // What most people watch: on real logs the strongest single signal,
        // left to the ranker to weigh against taste.
        cands.extend(
            self.popular
                .read()
                .iter()
                .take(POPULAR_CANDIDATES)
                .map(|&s| (s, Reason::Popular)),
        );
        // And what is being watched lately (views of the last days).
        cands.extend(
            self.recent_popular
                .read()
                .iter()
                .take(POPULAR_CANDIDATES / 2)
                .map(|&s| (s, Reason::Popular)),
        );
        // A few random recent videos keep the exploration share filled even
        // when pools are empty.
        let recent_from = cat.videos.len().saturating_sub(2000) as u32;
        let total = cat.videos.len() as u32;
        if total > recent_from {
            // Seeded by viewer and minute: the same question gets the same
            // page (an evaluation can be rerun), the next minute new picks.
            let mut rng = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (user, now / 60).hash(&mut h);
                <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(h.finish())
            };
            cands.extend(
                (0..20).map(|_| (rng.random_range(recent_from..total), Reason::Exploration)),
            );
        }

        let mut seen = HashSet::with_capacity(cands.len());
        let mut picked: Vec<(u32, Reason)> = Vec::with_capacity(cands.len());
        for (slot, reason) in cands {
            if exclude.contains(&slot) || u.watched.contains(&slot) || !seen.insert(slot) {
                continue;
            }
            if cat.live(slot).is_some_and(|v| v.doc.creator != user) {
                picked.push((slot, reason));
            }
        }
        let feats: Vec<Features> = picked
            .iter()
            .map(|&(s, _)| {
                let c = collab.get(&s).copied().unwrap_or(0.0);
                self.features(&cat, &u, &cat.videos[s as usize], now, c)
            })
            .collect();
        let events = u.events;
        let pushed: HashSet<u32> = u.exploration.iter().map(|&(s, _)| s).collect();
        // New to this viewer: none of its hashtags is one they have taken
        // to. Exploration is about what the feed does not know of them yet,
        // whichever source found the video (a co-watched video of a topic
        // they never watched explores as much as a trending one, and is far
        // likelier to be welcome).
        let novel: Vec<bool> = picked
            .iter()
            .map(|&(s, _)| {
                !cat.videos[s as usize]
                    .tags
                    .iter()
                    .any(|t| u.tag_aff.get(t.as_str()).is_some_and(|&a| a > 0.0))
            })
            .collect();
        drop(u);
        let (ranker, _) = self.ranker_for(user);
        let mut scores = ranker.score(&feats)?;
        // A trained ranker's order is fused with what most people watch,
        // less so the more this viewer has watched (see `fusion`). The
        // formula knows no popularity and stays as it was tuned.
        if matches!(*ranker, Ranker::Model(_)) {
            let slots: Vec<u32> = picked.iter().map(|p| p.0).collect();
            let most = self.popular.read().clone();
            let recent = self.recent_popular.read().clone();
            let weight = fusion::popularity_weight(events);
            scores = fusion::fuse(&slots, &scores, &[&most, &recent], weight);
        }
        let ranked: Vec<Ranked<Reason>> = picked
            .iter()
            .zip(scores)
            .zip(novel)
            .map(|((&(slot, reason), score), novel)| {
                let v = &cat.videos[slot as usize];
                Ranked {
                    slot,
                    score,
                    creator: v.creator,
                    sound: v.sound,
                    reason,
                    exploratory: novel
                        || matches!(
                            reason,
                            Reason::Exploration | Reason::Trending | Reason::Popular
                        ),
                    pushed: pushed.contains(&slot),
                }
            })
            .collect();
        let list = diversify(ranked, &Rules::default(), self.cfg.list_len)
            .into_iter()
            .map(|r| Entry {
                slot: r.slot,
                reason: r.reason,
                score: r.score,
            })
            .collect();
        Ok((list, Source::Personalized))
    }
}
