//! The recommendation engine: in-memory state for every ready video and
//! every viewer, the candidate sources of the spec, batched ranking,
//! diversity re-rank and paged sessions. It knows nothing of HTTP or of the
//! catalog database; `appliance` feeds it and persists what it learns.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::Rng;

use crate::embed::{dot, normalize, DIM};
use crate::error::{InferenceError, Result};
use crate::experiment::{Experiment, Variant};
use crate::index::{IndexKind, VectorIndex};
use crate::rank::{Example, Features, Ranker, FEATURES};
use crate::rerank::{diversify, Ranked, Rules};
use crate::session::{decode_cursor, encode_cursor, Session, Sessions};

mod candidates;
mod cold;
mod collab;
mod features;
mod fusion;
mod lookup;
mod popularity;
mod state;
mod types;

use lookup::tokens;
use state::{Catalog, Entry, Stats, User, Video};
pub use types::{EngineConfig, FeedItem, FeedKind, FeedPage, Reason, Source, VideoDoc, Watch};

pub struct Engine {
    cfg: EngineConfig,
    catalog: RwLock<Catalog>,
    users: RwLock<HashMap<String, Arc<Mutex<User>>>>,
    user_names: RwLock<Vec<String>>,
    dirty_users: Mutex<HashSet<u32>>,
    pub videos_index: VectorIndex,
    pub users_index: VectorIndex,
    trending: RwLock<Arc<Vec<u32>>>,
    /// Most viewed overall (smoothed by completion), best first: what a
    /// stranger most likely watches; recomputed with trending.
    popular: RwLock<Arc<Vec<u32>>>,
    /// Most viewed in the last days (views decaying over three days).
    recent_popular: RwLock<Arc<Vec<u32>>>,
    /// Set once trending comes from outside (the analytics rollups):
    /// `refresh` then leaves the list alone.
    external_trending: std::sync::atomic::AtomicBool,
    ranker: RwLock<Arc<Ranker>>,
    experiment: RwLock<Option<Arc<Experiment>>>,
    sessions: Mutex<Sessions<Entry>>,
    next_session: AtomicU64,
}

const MAX_POSITIVES: usize = 50;
const MAX_POOL: usize = 100;
const TRENDING_LEN: usize = 500;
/// What a client shows per page (the cap above is per page of the list).
const PAGE_SIZE: usize = 10;

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let seed: u64 = rand::rng().random();
        Self {
            sessions: Mutex::new(Sessions::new(cfg.max_sessions, cfg.session_ttl_secs)),
            cfg,
            catalog: RwLock::new(Catalog::default()),
            users: RwLock::new(HashMap::new()),
            user_names: RwLock::new(Vec::new()),
            dirty_users: Mutex::new(HashSet::new()),
            videos_index: VectorIndex::unloaded("video", DIM),
            users_index: VectorIndex::unloaded("user", DIM),
            trending: RwLock::new(Arc::new(Vec::new())),
            popular: RwLock::new(Arc::new(Vec::new())),
            recent_popular: RwLock::new(Arc::new(Vec::new())),
            external_trending: std::sync::atomic::AtomicBool::new(false),
            ranker: RwLock::new(Arc::new(Ranker::Formula)),
            experiment: RwLock::new(None),
            next_session: AtomicU64::new(seed),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn set_ranker(&self, ranker: Ranker) {
        *self.ranker.write() = Arc::new(ranker);
    }

    pub fn ranker_name(&self) -> &'static str {
        self.ranker.read().name()
    }

    /// Starts (or with `None` ends) an A/B experiment: its share of viewers
    /// are ranked by its candidate ranker, everyone else by the current one.
    pub fn set_experiment(&self, experiment: Option<Experiment>) {
        *self.experiment.write() = experiment.map(Arc::new);
    }

    /// The running experiment's name and candidate share.
    pub fn experiment(&self) -> Option<(String, f32)> {
        self.experiment
            .read()
            .as_ref()
            .map(|e| (e.name.clone(), e.share))
    }

    /// The side `user` is on (control when no experiment runs).
    pub fn variant_of(&self, user: &str) -> Variant {
        self.experiment
            .read()
            .as_ref()
            .map_or(Variant::Control, |e| e.variant_of(user))
    }

    /// The ranker that ranks `user`'s feed, and the variant it stands for.
    fn ranker_for(&self, user: &str) -> (Arc<Ranker>, Variant) {
        if let Some(e) = self.experiment.read().as_ref() {
            if e.variant_of(user) == Variant::Candidate {
                return (e.candidate.clone(), Variant::Candidate);
            }
        }
        (self.ranker.read().clone(), Variant::Control)
    }

    pub fn video_count(&self) -> usize {
        self.catalog
            .read()
            .videos
            .iter()
            .filter(|v| v.alive)
            .count()
    }

    pub fn user_count(&self) -> usize {
        self.users.read().len()
    }

    /// Adds a video (or replaces its embedding) without touching the
    /// indexes; used for bulk loads followed by [`Engine::rebuild_video_index`].
    pub fn load_video(&self, doc: VideoDoc, emb: Vec<f32>) -> Result<u32> {
        if emb.len() != DIM {
            return Err(InferenceError::Invalid(format!(
                "embedding of {} has {} dimensions",
                doc.id,
                emb.len()
            )));
        }
        let mut cat = self.catalog.write();
        if let Some(&slot) = cat.by_id.get(&doc.id) {
            if let Some(v) = cat.videos.get_mut(slot as usize) {
                v.emb = emb.into_boxed_slice();
                v.alive = true;
            }
            return Ok(slot);
        }
        let slot = cat.videos.len() as u32;
        let creator = cat.creators.intern(&doc.creator);
        let sound = doc.sound.as_deref().map(|s| cat.sounds.intern(s));
        for tag in &doc.hashtags {
            cat.by_tag.entry(tag.to_lowercase()).or_default().push(slot);
        }
        if let Some(s) = sound {
            cat.by_sound.entry(s).or_default().push(slot);
        }
        cat.by_creator.entry(creator).or_default().push(slot);
        cat.by_id.insert(doc.id.clone(), slot);
        let words = tokens(&format!("{} {}", doc.caption, doc.hashtags.join(" ")));
        let tags = doc.hashtags.iter().map(|t| t.to_lowercase()).collect();
        cat.videos.push(Video {
            doc,
            creator,
            sound,
            words,
            tags,
            emb: emb.into_boxed_slice(),
            stats: Mutex::new(Stats::default()),
            co: Mutex::new(HashMap::new()),
            expanded: AtomicBool::new(false),
            alive: true,
        });
        Ok(slot)
    }

    /// A video just became ready: index it and put it into the exploration
    /// pools of the users whose taste is nearest to it.
    pub fn add_video(&self, doc: VideoDoc, emb: Vec<f32>, now: i64) -> Result<usize> {
        let slot = self.load_video(doc, emb.clone())?;
        if self.videos_index.is_loaded() {
            self.videos_index.upsert(&[u64::from(slot)], &emb)?;
        }
        self.fan_out(slot, &emb, self.cfg.new_video_fanout, now)
    }

    fn fan_out(&self, slot: u32, emb: &[f32], users: usize, now: i64) -> Result<usize> {
        if !self.users_index.is_loaded() || users == 0 {
            return Ok(0);
        }
        // Users whose taste changed in the last second are not in the index
        // yet; a new video must not miss them.
        self.flush_users()?;
        let hits = self.users_index.search(emb, users)?;
        let handles = self.handles(hits.iter().map(|h| h.id as u32));
        let mut reached = 0;
        for user in handles {
            let mut u = user.lock();
            if u.watched.contains(&slot) || u.exploration.iter().any(|(s, _)| *s == slot) {
                continue;
            }
            if u.exploration.len() >= MAX_POOL {
                u.exploration.remove(0);
            }
            u.exploration
                .push((slot, now + self.cfg.exploration_ttl_secs));
            reached += 1;
        }
        Ok(reached)
    }

    pub fn remove_video(&self, id: &str) -> Result<()> {
        let slot = {
            let mut cat = self.catalog.write();
            let Some(&slot) = cat.by_id.get(id) else {
                return Ok(());
            };
            if let Some(v) = cat.videos.get_mut(slot as usize) {
                v.alive = false;
            }
            slot
        };
        if self.videos_index.is_loaded() {
            self.videos_index.remove(&[u64::from(slot)])?;
        }
        Ok(())
    }

    /// Ids of live videos in slot order, the key saved beside the index.
    pub fn video_ids(&self) -> Vec<String> {
        self.catalog
            .read()
            .videos
            .iter()
            .filter(|v| v.alive)
            .map(|v| v.doc.id.clone())
            .collect()
    }

    /// Rebuilds the FAISS video index from the in-memory embeddings.
    pub fn rebuild_video_index(&self, kind: Option<IndexKind>) -> Result<()> {
        let (ids, vecs) = {
            let cat = self.catalog.read();
            let mut ids = Vec::new();
            let mut vecs = Vec::new();
            for (slot, v) in cat.videos.iter().enumerate() {
                if v.alive {
                    ids.push(slot as u64);
                    vecs.extend_from_slice(&v.emb);
                }
            }
            (ids, vecs)
        };
        self.videos_index.rebuild(&ids, &vecs, kind)
    }

    /// Rebuilds the user index from every user that has an embedding.
    pub fn rebuild_user_index(&self) -> Result<()> {
        let (ids, vecs) = {
            let all: Vec<Arc<Mutex<User>>> = self.users.read().values().cloned().collect();
            let mut ids = Vec::new();
            let mut vecs = Vec::new();
            for u in all {
                let u = u.lock();
                if let Some(e) = &u.emb {
                    ids.push(u64::from(u.slot));
                    vecs.extend_from_slice(e);
                }
            }
            (ids, vecs)
        };
        self.dirty_users.lock().clear();
        self.users_index.rebuild(&ids, &vecs, Some(IndexKind::Flat))
    }

    /// Pushes changed user embeddings into the user index; cheap, called
    /// every second so a watch reaches collaborative retrieval at once.
    pub fn flush_users(&self) -> Result<usize> {
        let dirty: Vec<u32> = self.dirty_users.lock().drain().collect();
        if dirty.is_empty() || !self.users_index.is_loaded() {
            return Ok(0);
        }
        let mut ids = Vec::new();
        let mut vecs = Vec::new();
        for u in self.handles(dirty.into_iter()) {
            let u = u.lock();
            if let Some(e) = &u.emb {
                ids.push(u64::from(u.slot));
                vecs.extend_from_slice(e);
            }
        }
        self.users_index.upsert(&ids, &vecs)?;
        Ok(ids.len())
    }

    /// User handles by slot, taken without holding the maps while any user
    /// is locked (lock order: a user's mutex may be held while the maps are
    /// read, never the other way round).
    fn handles(&self, slots: impl Iterator<Item = u32>) -> Vec<Arc<Mutex<User>>> {
        // Same order as `user()`: the map, then the names.
        let map = self.users.read();
        let names = self.user_names.read();
        slots
            .filter_map(|s| names.get(s as usize).and_then(|n| map.get(n)).cloned())
            .collect()
    }

    fn user(&self, id: &str) -> Arc<Mutex<User>> {
        if let Some(u) = self.users.read().get(id) {
            return u.clone();
        }
        let mut map = self.users.write();
        map.entry(id.to_string())
            .or_insert_with(|| {
                let mut names = self.user_names.write();
                names.push(id.to_string());
                Arc::new(Mutex::new(User {
                    slot: names.len() as u32 - 1,
                    emb: None,
                    events: 0,
                    interest_only: false,
                    watched: HashSet::new(),
                    positives: VecDeque::new(),
                    recent: VecDeque::new(),
                    follows: HashSet::new(),
                    tag_aff: HashMap::new(),
                    sound_aff: HashMap::new(),
                    exploration: Vec::new(),
                }))
            })
            .clone()
    }

    pub fn user_embedding(&self, id: &str) -> Option<Vec<f32>> {
        self.users.read().get(id).and_then(|u| u.lock().emb.clone())
    }

    pub fn set_follow(&self, user: &str, creator: &str, on: bool) {
        let c = self.catalog.write().creators.intern(creator);
        let u = self.user(user);
        let mut u = u.lock();
        if on {
            u.follows.insert(c);
        } else {
            u.follows.remove(&c);
        }
    }

    /// Onboarding: the mean embedding of the most-watched videos carrying
    /// the chosen hashtags (plus the embedded interest words themselves, so
    /// an interest with no videos yet still steers) becomes the first
    /// embedding. A user with history keeps theirs.
    pub fn set_interests(
        &self,
        user: &str,
        interests: &[String],
        interest_vectors: &[Vec<f32>],
    ) -> Result<()> {
        let mut acc = vec![0.0f32; DIM];
        let mut n = 0.0f32;
        {
            let cat = self.catalog.read();
            for tag in interests {
                let mut slots: Vec<u32> = cat
                    .by_tag
                    .get(&tag.to_lowercase())
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|&s| cat.live(s).is_some())
                            .collect()
                    })
                    .unwrap_or_default();
                slots.sort_by(|&a, &b| {
                    let va = cat.videos[a as usize].stats.lock().views;
                    let vb = cat.videos[b as usize].stats.lock().views;
                    vb.total_cmp(&va)
                });
                for &s in slots.iter().take(20) {
                    acc.iter_mut()
                        .zip(cat.videos[s as usize].emb.iter())
                        .for_each(|(a, b)| *a += b);
                    n += 1.0;
                }
            }
        }
        for v in interest_vectors.iter().filter(|v| v.len() == DIM) {
            // Each interest word counts like a handful of its videos.
            acc.iter_mut().zip(v).for_each(|(a, b)| *a += 3.0 * b);
            n += 3.0;
        }
        if n == 0.0 {
            return Err(InferenceError::Invalid(
                "none of the interests matches a hashtag or could be embedded".into(),
            ));
        }
        normalize(&mut acc);
        let u = self.user(user);
        let mut u = u.lock();
        for tag in interests {
            u.tag_aff.insert(tag.to_lowercase(), 1.0);
        }
        if u.events == 0 {
            u.emb = Some(acc);
            u.interest_only = true;
            self.dirty_users.lock().insert(u.slot);
        }
        Ok(())
    }

    /// Applies one watch: video and creator statistics, the user's moving
    /// average, affinities and co-watch lists. Unknown videos are ignored
    /// (false). With `example`, the ranking features as they stood before
    /// the watch are returned for training.
    pub fn record_watch(&self, w: &Watch, example: bool) -> (bool, Option<Example>) {
        let cat = self.catalog.read();
        let Some(&slot) = cat.by_id.get(&w.video) else {
            return (false, None);
        };
        let Some(video) = cat.live(slot) else {
            return (false, None);
        };
        let user = self.user(&w.user);
        let mut u = user.lock();
        // Labelled by what the feed is judged on: did the viewer enjoy it.
        let ex = example.then(|| Example {
            features: self.features(&cat, &u, video, w.ts, collab::score(&cat, &u, slot)),
            positive: w.positive(),
            weight: 1.0,
        });
        let c = w.completion();
        let weight = w.weight();
        {
            let mut s = video.stats.lock();
            let half = self.cfg.trending_half_life_secs;
            s.velocity = s.velocity_at(w.ts, half)
                + c
                + f32::from(u8::from(w.liked))
                + 2.0 * f32::from(u8::from(w.shared));
            s.velocity_at = s.velocity_at.max(w.ts);
            s.views += 1.0;
            s.completion_sum += c;
            s.likes += f32::from(u8::from(w.liked));
            s.shares += f32::from(u8::from(w.shared));
            s.enjoyed += f32::from(u8::from(w.positive()));
            s.add_recent(w.ts);
        }
        {
            let mut cs = cat.creator_stats.write();
            let cs = cs.entry(video.creator).or_default();
            cs.views += 1.0;
            cs.completion_sum += c;
        }
        u.events += 1;
        u.watched.insert(slot);
        u.exploration.retain(|(s, _)| *s != slot);
        if w.positive() {
            if u.positives.len() >= MAX_POSITIVES {
                u.positives.pop_front();
            }
            u.positives.push_back(slot);
        }
        if !u.recent.contains(&slot) {
            collab::co_watch(&cat, &u, slot);
            if u.recent.len() >= collab::RECENT {
                u.recent.pop_front();
            }
            u.recent.push_back(slot);
        }
        let alpha = self.cfg.ema_alpha;
        let had_history = u.events > 1 && !u.interest_only;
        let events = u.events as f32;
        match u.emb.as_mut() {
            Some(e) => {
                // Early watches move a fresh profile faster than the steady
                // state, so ten events already say something.
                let a = if had_history {
                    alpha.max(1.0 / events)
                } else {
                    0.5
                };
                e.iter_mut()
                    .zip(video.emb.iter())
                    .for_each(|(x, v)| *x = (1.0 - a) * *x + a * weight * v);
                normalize(e);
            }
            None if weight > 0.0 => u.emb = Some(video.emb.to_vec()),
            None => {}
        }
        u.interest_only = false;
        for tag in video.tags.iter() {
            match u.tag_aff.get_mut(tag.as_str()) {
                Some(a) => *a += weight,
                None => {
                    u.tag_aff.insert(tag.clone(), weight);
                }
            }
        }
        if let Some(s) = video.sound {
            *u.sound_aff.entry(s).or_default() += weight;
        }
        self.dirty_users.lock().insert(u.slot);
        (true, ex)
    }

    /// Ranking features for `user` and `video` as the engine stands now,
    /// without recording anything (training negatives).
    pub fn features_for(&self, user: &str, video: &str, now: i64) -> Option<Features> {
        let cat = self.catalog.read();
        let v = cat.by_id.get(video).and_then(|&s| cat.live(s))?;
        let handle = self.users.read().get(user).cloned()?;
        let u = handle.lock();
        if u.watched.contains(&cat.by_id[video]) {
            return None;
        }
        let slot = cat.by_id[video];
        Some(self.features(&cat, &u, v, now, collab::score(&cat, &u, slot)))
    }

    /// One page of a feed. With a cursor, the page continues that session;
    /// a cursor whose session has expired starts a new one.
    pub fn feed(
        &self,
        kind: FeedKind,
        user: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
        now: i64,
    ) -> Result<FeedPage> {
        let limit = limit.clamp(1, 50);
        let who = user.unwrap_or("");
        if let Some(c) = cursor {
            let (sid, _page) = decode_cursor(c)?;
            if let Some(page) = self.continue_session(kind, sid, who, limit, now)? {
                return Ok(page);
            }
        }
        let (list, source) = self.compute(kind, user, &HashSet::new(), now)?;
        let sid = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.sessions.lock().insert(
            sid,
            Session {
                user: who.to_string(),
                list,
                pos: 0,
                served: HashSet::new(),
                touched: now,
            },
        );
        self.continue_session(kind, sid, who, limit, now)?
            .map(|mut p| {
                p.source = source;
                p
            })
            .ok_or(InferenceError::Invalid("session vanished".into()))
    }

    fn continue_session(
        &self,
        kind: FeedKind,
        sid: u64,
        who: &str,
        limit: usize,
        now: i64,
    ) -> Result<Option<FeedPage>> {
        let needs_refill = {
            let mut sessions = self.sessions.lock();
            let Some(s) = sessions.get(sid, who, now) else {
                return Ok(None);
            };
            (s.pos + limit > s.list.len()).then(|| s.served.clone())
        };
        // Ranking happens outside the session lock; only for-you refills
        // (following and trending lists are complete from the start).
        let refill = match (needs_refill, kind) {
            (Some(served), FeedKind::ForYou) => Some(
                self.compute(kind, Some(who).filter(|w| !w.is_empty()), &served, now)?
                    .0,
            ),
            (Some(_), FeedKind::Following | FeedKind::Trending) | (None, _) => None,
        };
        let mut sessions = self.sessions.lock();
        let Some(s) = sessions.get(sid, who, now) else {
            return Ok(None);
        };
        if let Some(more) = refill {
            let served = &s.served;
            let fresh: Vec<Entry> = more
                .into_iter()
                .filter(|e| !served.contains(&e.slot))
                .collect();
            s.list.truncate(s.pos.min(s.list.len()));
            s.list.extend(fresh);
        }
        s.touched = now;
        // One read of the experiment: the variant, its ranker and its name
        // always agree, even when the experiment is paused meanwhile.
        let (ranker, variant, experiment) = match kind {
            FeedKind::ForYou => {
                let exp = self.experiment.read().clone();
                match exp {
                    Some(e) if e.variant_of(who) == Variant::Candidate => {
                        (e.candidate.name(), Variant::Candidate, Some(e.name.clone()))
                    }
                    Some(e) => (self.ranker_name(), Variant::Control, Some(e.name.clone())),
                    None => (self.ranker_name(), Variant::Control, None),
                }
            }
            FeedKind::Following | FeedKind::Trending => ("none", self.variant_of(who), None),
        };
        let cat = self.catalog.read();
        let offset = s.served.len() as u32;
        let mut items = Vec::with_capacity(limit);
        while items.len() < limit && s.pos < s.list.len() {
            let e = &s.list[s.pos];
            s.pos += 1;
            if s.served.insert(e.slot) {
                if let Some(v) = cat.live(e.slot) {
                    items.push(FeedItem {
                        video_id: v.doc.id.clone(),
                        reason: e.reason,
                        score: e.score,
                    });
                }
            }
        }
        let prefetch_ids = s.list[s.pos..]
            .iter()
            .filter_map(|e| cat.live(e.slot))
            .take(self.cfg.prefetch)
            .map(|v| v.doc.id.clone())
            .collect::<Vec<_>>();
        let more = s.pos < s.list.len() || kind == FeedKind::ForYou && !items.is_empty();
        let page_no = (s.pos / limit.max(1)) as u32;
        Ok(Some(FeedPage {
            offset,
            next_cursor: more.then(|| encode_cursor(sid, page_no)),
            prefetch_ids,
            items,
            source: match kind {
                FeedKind::ForYou => Source::Personalized,
                FeedKind::Following => Source::Following,
                FeedKind::Trending => Source::Trending,
            },
            ranker,
            variant,
            experiment,
        }))
    }

    fn compute(
        &self,
        kind: FeedKind,
        user: Option<&str>,
        exclude: &HashSet<u32>,
        now: i64,
    ) -> Result<(Vec<Entry>, Source)> {
        match (kind, user) {
            (FeedKind::Trending, _) | (FeedKind::ForYou | FeedKind::Following, None) => Ok((
                self.trending_entries(exclude, Reason::Trending),
                Source::Trending,
            )),
            (FeedKind::Following, Some(u)) => Ok((self.following_entries(u), Source::Following)),
            (FeedKind::ForYou, Some(u)) => self.for_you(u, exclude, now),
        }
    }
}
