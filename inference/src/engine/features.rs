//! The ranking features of one (viewer, video) pair, as the engine stands
//! (the order and meaning are [`crate::rank::FEATURE_NAMES`]). Counts enter
//! as `ln(1 + n)`: the ranker standardises them, and a log keeps one viral
//! video from flattening every other difference.

use super::*;

impl Engine {
    /// `collab` is the pair's collaborative score ([`collab::score`]),
    /// computed once per page for all candidates by the caller.
    pub(super) fn features(
        &self,
        cat: &Catalog,
        u: &User,
        v: &Video,
        now: i64,
        collab: f32,
    ) -> Features {
        let s = *v.stats.lock();
        let cs = cat
            .creator_stats
            .read()
            .get(&v.creator)
            .copied()
            .unwrap_or_default();
        let sim = u.emb.as_ref().map_or(0.0, |e| dot(e, &v.emb));
        let age_h = (now - v.doc.created_at).max(0) as f32 / 3600.0;
        let aff: f32 = v
            .tags
            .iter()
            .filter_map(|t| u.tag_aff.get(t.as_str()))
            .sum();
        let hour = (now.rem_euclid(86_400)) as f32 / 3600.0;
        let angle = hour / 24.0 * std::f32::consts::TAU;
        let mut f = [0.0f32; FEATURES];
        f[0] = sim;
        f[1] = s.completion_rate();
        f[2] = s.rate(s.likes, 0.05);
        f[3] = s.rate(s.shares, 0.01);
        f[4] = s.rate(s.comments, 0.01);
        f[5] = cs.completion_rate();
        f[6] = (-age_h / 48.0).exp();
        f[7] = f32::from(u8::from(u.follows.contains(&v.creator)));
        f[8] = (aff / 3.0).tanh();
        f[9] = angle.sin();
        f[10] = angle.cos();
        f[11] = (s.views.ln_1p() / 10.0).min(1.0);
        f[12] = s.enjoyed.ln_1p();
        f[13] = s.likes.ln_1p();
        f[14] = s.recent_at(now).ln_1p();
        f[15] = s.velocity_at(now, self.cfg.trending_half_life_secs).ln_1p();
        f[16] = collab;
        f[17] = (u.events as f32).ln_1p();
        f[18] = age_h.ln_1p();
        f
    }
}
