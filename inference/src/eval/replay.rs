//! Leave-last-out as a box lives it: the training events are replayed in
//! time order through one engine, and each evaluated user is asked for a
//! first page at the moment of their held-out event, when the engine has
//! seen only what happened before it (trending and the most watched are
//! recomputed, and the user index rebuilt, before each question, as the
//! server's refresh loop does). The popularity baselines are computed as
//! of the same moment; item-kNN and EASE are fitted on every training
//! event, later ones included, as the protocol is usually run — an
//! advantage the feed does not get.

use std::collections::{HashMap, HashSet};

use super::split::Split;
use super::{first_page, VideoDoc};
use crate::baselines::{Baseline, Popularity};
use crate::engine::{Engine, EngineConfig};
use crate::error::Result;
use crate::rank::Ranker;

/// Each evaluated user's first page, asked at [`Split::asked_at`].
pub fn feed_pages(
    videos: &[(VideoDoc, Vec<f32>)],
    split: &Split,
    ranker: Option<Ranker>,
) -> Result<HashMap<String, Vec<String>>> {
    let engine = Engine::new(EngineConfig::default());
    for (doc, emb) in videos {
        engine.load_video(doc.clone(), emb.clone())?;
    }
    engine.rebuild_video_index(None)?;
    if let Some(r) = ranker {
        engine.set_ranker(r);
    }
    let mut asks: Vec<(i64, &str)> = split
        .users
        .iter()
        .map(|u| (split.asked_at(u), u.as_str()))
        .collect();
    asks.sort_unstable();
    let mut asks = asks.into_iter().peekable();
    let mut out = HashMap::with_capacity(split.users.len());
    let mut changed = true;
    let mut ask = |engine: &Engine, t: i64, u: &str, changed: &mut bool| -> Result<()> {
        if std::mem::take(changed) {
            engine.refresh(t)?;
            engine.rebuild_user_index()?;
        }
        out.insert(u.to_owned(), first_page(engine, u, t)?);
        Ok(())
    };
    for w in &split.train {
        // A question at the same second as an event comes first: the
        // held-out event itself is never in the training events.
        while let Some((t, u)) = asks.next_if(|(t, _)| *t <= w.ts) {
            ask(&engine, t, u, &mut changed)?;
        }
        engine.record_watch(w, false);
        changed = true;
    }
    for (t, u) in asks {
        ask(&engine, t, u, &mut changed)?;
    }
    Ok(out)
}

/// Popularity (all-time and recent) for each evaluated user as of the
/// moment they are asked.
pub fn popularity_lists(
    split: &Split,
    window_secs: i64,
    k: usize,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let empty = Vec::new();
    let mut all = Vec::with_capacity(split.users.len());
    let mut recent = Vec::with_capacity(split.users.len());
    for u in &split.users {
        let t = split.asked_at(u);
        let before = &split.train[..split.train.partition_point(|w| w.ts < t)];
        let history: Vec<&str> = split
            .history
            .get(u)
            .unwrap_or(&empty)
            .iter()
            .map(String::as_str)
            .collect();
        let exclude: HashSet<&str> = history.iter().copied().collect();
        all.push(Popularity::all_time(before).recommend(&history, &exclude, k));
        recent.push(Popularity::recent(before, window_secs, t).recommend(&history, &exclude, k));
    }
    (all, recent)
}
