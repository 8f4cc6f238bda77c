//! Search, hashtag pages and the lookups evaluation uses.

use super::*;

impl Engine {
    /// Keyword and semantic search through the same embeddings: a video's
    /// score is its cosine to the query plus the share of query words it
    /// contains.
    pub fn search(
        &self,
        query: &str,
        query_emb: Option<&[f32]>,
        limit: usize,
    ) -> Result<Vec<(String, f32)>> {
        let words = tokens(query);
        let mut scores: HashMap<u32, f32> = HashMap::new();
        if let Some(q) = query_emb {
            for hit in self.videos_index.search(q, (limit * 4).max(50))? {
                *scores.entry(hit.id as u32).or_default() += hit.score;
            }
        }
        let cat = self.catalog.read();
        if !words.is_empty() {
            for (slot, v) in cat.videos.iter().enumerate().filter(|(_, v)| v.alive) {
                let matched = words.iter().filter(|w| v.words.contains(w)).count();
                if matched > 0 {
                    *scores.entry(slot as u32).or_default() += matched as f32 / words.len() as f32;
                }
            }
        }
        let mut out: Vec<(String, f32)> = scores
            .into_iter()
            .filter_map(|(s, score)| cat.live(s).map(|v| (v.doc.id.clone(), score)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    /// Videos carrying a hashtag, newest first, from `offset`.
    pub fn hashtag(&self, tag: &str, offset: usize, limit: usize) -> (Vec<String>, usize) {
        let cat = self.catalog.read();
        let slots: Vec<u32> = cat
            .by_tag
            .get(&tag.to_lowercase())
            .map(|v| {
                v.iter()
                    .rev()
                    .copied()
                    .filter(|&s| cat.live(s).is_some())
                    .collect()
            })
            .unwrap_or_default();
        let total = slots.len();
        (
            slots
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|s| cat.videos[s as usize].doc.id.clone())
                .collect(),
            total,
        )
    }

    fn watched_by(&self, user: &str) -> HashSet<u32> {
        let handle = self.users.read().get(user).cloned();
        handle.map(|u| u.lock().watched.clone()).unwrap_or_default()
    }

    /// Popularity baseline for evaluation: most-viewed videos the user has
    /// not watched.
    pub fn popular_for(&self, user: &str, limit: usize) -> Vec<String> {
        let watched = self.watched_by(user);
        let cat = self.catalog.read();
        let mut all: Vec<(f32, u32)> = cat
            .videos
            .iter()
            .enumerate()
            .filter(|(s, v)| v.alive && !watched.contains(&(*s as u32)))
            .map(|(s, v)| (v.stats.lock().views, s as u32))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.into_iter()
            .take(limit)
            .map(|(_, s)| cat.videos[s as usize].doc.id.clone())
            .collect()
    }

    pub fn unwatched_ids(&self, user: &str) -> Vec<String> {
        let watched = self.watched_by(user);
        let cat = self.catalog.read();
        cat.videos
            .iter()
            .enumerate()
            .filter(|(s, v)| v.alive && !watched.contains(&(*s as u32)))
            .map(|(_, v)| v.doc.id.clone())
            .collect()
    }
}

pub(super) fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}
