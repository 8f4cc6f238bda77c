//! What is popular: trending (velocity × quality), the most watched, and
//! the early check that pushes a new video that holds attention.

use super::*;

impl Engine {
    /// Recomputes trending (velocity × quality, velocity decaying with the
    /// configured half-life) and runs the early performance check on new
    /// videos: one that holds attention is pushed to four times as many
    /// nearby users; one that does not just fades from the pools.
    pub fn refresh(&self, now: i64) -> Result<()> {
        let half = self.cfg.trending_half_life_secs;
        let cat = self.catalog.read();
        let mut scored: Vec<(f32, u32)> = Vec::new();
        let mut expand: Vec<(u32, Vec<f32>)> = Vec::new();
        let mut popular: Vec<(f32, u32)> = Vec::new();
        let mut recent: Vec<(f32, u32)> = Vec::new();
        for (slot, v) in cat.videos.iter().enumerate() {
            if !v.alive {
                continue;
            }
            let s = *v.stats.lock();
            let quality = s.completion_rate() + 2.0 * s.rate(s.shares, 0.01);
            let score = s.velocity_at(now, half) * quality;
            if score > 0.0 {
                scored.push((score, slot as u32));
            }
            if s.views > 0.0 {
                popular.push((s.views * (0.5 + s.completion_rate()), slot as u32));
                recent.push((s.recent_at(now), slot as u32));
            }
            if now - v.doc.created_at < 3600
                && s.views >= 5.0
                && s.completion_rate() >= 0.6
                && !v.expanded.swap(true, Ordering::Relaxed)
            {
                expand.push((slot as u32, v.emb.to_vec()));
            }
        }
        drop(cat);
        *self.popular.write() = Arc::new(top_slots(popular, TRENDING_LEN));
        *self.recent_popular.write() = Arc::new(top_slots(recent, TRENDING_LEN));
        if !self.external_trending.load(Ordering::Relaxed) {
            *self.trending.write() = Arc::new(top_slots(scored, TRENDING_LEN));
        }
        for (slot, emb) in expand {
            self.fan_out(slot, &emb, 4 * self.cfg.new_video_fanout, now)?;
        }
        Ok(())
    }

    /// Replaces trending with a list computed elsewhere (best first);
    /// unknown ids are skipped. From now on `refresh` keeps it.
    pub fn set_trending(&self, ids: &[String]) {
        let cat = self.catalog.read();
        let slots: Vec<u32> = ids
            .iter()
            .filter_map(|id| cat.by_id.get(id).copied())
            .filter(|&s| cat.live(s).is_some())
            .take(TRENDING_LEN)
            .collect();
        drop(cat);
        self.external_trending.store(true, Ordering::Relaxed);
        *self.trending.write() = Arc::new(slots);
    }
}

/// The `n` best-scored slots, best first (ties by slot). Selects before it
/// sorts: a refresh of a million-video catalog sorts `n`, not a million.
pub(super) fn top_slots(mut scored: Vec<(f32, u32)>, n: usize) -> Vec<u32> {
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > n {
        scored.select_nth_unstable_by(n, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored.into_iter().map(|(_, s)| s).collect()
}
