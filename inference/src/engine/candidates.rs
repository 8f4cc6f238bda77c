//! Where a feed's videos come from: trending, following, the personalised
//! candidate sources and their ranking, and the cold-start page.

use super::*;

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
            drop(u);
            return Ok((self.cold_start(exclude), Source::ColdStart));
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
            let mut co = Vec::new();
            for &p in u.positives.iter().rev().take(5) {
                co.extend(
                    cat.videos[p as usize]
                        .completers
                        .lock()
                        .iter()
                        .copied()
                        .filter(|&c| c != me)
                        .take(10),
                );
            }
            for other in self.handles(co.into_iter()) {
                if let Some(other) = other.try_lock() {
                    cands.extend(
                        other
                            .positives
                            .iter()
                            .rev()
                            .take(5)
                            .map(|&s| (s, Reason::CoWatched)),
                    );
                }
            }
        }
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
                .take(100)
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
            .map(|&(s, _)| self.features(&cat, &u, &cat.videos[s as usize], now))
            .collect();
        drop(u);
        let (ranker, _) = self.ranker_for(user);
        let scores = ranker.score(&feats)?;
        let ranked: Vec<Ranked<Reason>> = picked
            .iter()
            .zip(scores)
            .map(|(&(slot, reason), score)| {
                let v = &cat.videos[slot as usize];
                Ranked {
                    slot,
                    score,
                    creator: v.creator,
                    sound: v.sound,
                    reason,
                    exploratory: matches!(reason, Reason::Exploration | Reason::Trending),
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

    /// No history, no interests: the most popular videos now (trending
    /// velocity, newest to fill), only lightly diversified — at most
    /// [`COLD_PER_TOPIC`] per leading hashtag on a page — since on real
    /// logs what most people watch is the best guess for someone unknown.
    fn cold_start(&self, exclude: &HashSet<u32>) -> Vec<Entry> {
        // What is hot now and what most people watched, alternately.
        let hot = self.trending_entries(exclude, Reason::ColdStart);
        let most = self.popular.read().clone();
        let cat = self.catalog.read();
        let mut taken = HashSet::new();
        let mut popular = Vec::with_capacity(hot.len() + most.len());
        let mut most = most
            .iter()
            .filter(|s| !exclude.contains(s) && cat.live(**s).is_some())
            .map(|&slot| Entry {
                slot,
                reason: Reason::ColdStart,
                score: 0.0,
            });
        for e in hot {
            if let Some(m) = most.next() {
                if taken.insert(m.slot) {
                    popular.push(m);
                }
            }
            if taken.insert(e.slot) {
                popular.push(e);
            }
        }
        popular.extend(most.filter(|e| taken.insert(e.slot)));
        let mut per_topic: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(self.cfg.list_len);
        let mut held = Vec::new();
        for e in popular {
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
        // Too few topics to honour the cap: the rest in popularity order.
        out.extend(
            held.into_iter()
                .take(self.cfg.list_len.saturating_sub(out.len())),
        );
        out
    }
}
