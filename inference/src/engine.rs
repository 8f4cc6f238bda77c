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
use crate::index::{IndexKind, VectorIndex};
use crate::experiment::{Experiment, Variant};
use crate::rank::{Example, Features, Ranker, FEATURES};
use crate::rerank::{diversify, Ranked, Rules};
use crate::session::{decode_cursor, encode_cursor, Session, Sessions};

/// What the engine needs to know about a ready, public video.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VideoDoc {
    pub id: String,
    pub creator: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub sound: Option<String>,
    /// Unix seconds when it became ready.
    pub created_at: i64,
}

/// One watch, as the engagement API records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    pub user: String,
    pub video: String,
    pub watch_ms: u64,
    pub duration_ms: u64,
    pub completed: bool,
    pub liked: bool,
    pub shared: bool,
    /// Unix seconds.
    pub ts: i64,
}

impl Watch {
    pub fn completion(&self) -> f32 {
        if self.completed {
            return 1.0;
        }
        (self.watch_ms as f32 / self.duration_ms.max(1) as f32).clamp(0.0, 1.0)
    }

    /// The spec's engagement weight: completion, plus likes and shares;
    /// a skip (under a quarter watched, not liked) pulls the other way.
    pub fn weight(&self) -> f32 {
        let c = self.completion();
        if c < 0.25 && !self.liked {
            return -0.3;
        }
        c + 0.5 * f32::from(u8::from(self.liked)) + 0.5 * f32::from(u8::from(self.shared))
    }

    fn positive(&self) -> bool {
        self.completion() >= 0.7 || self.liked
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SimilarToWatched,
    SimilarUsers,
    CoWatched,
    Following,
    Hashtag,
    Sound,
    Trending,
    /// Among the most watched overall.
    Popular,
    Exploration,
    ColdStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Retrieved and ranked for this viewer.
    Personalized,
    /// The viewer has no history or interests yet: popular and diverse.
    ColdStart,
    Following,
    Trending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    ForYou,
    Following,
    Trending,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedItem {
    pub video_id: String,
    pub reason: Reason,
    pub score: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Position of the first item in the viewer's session (0 on the first
    /// page): impressions record where each video was shown.
    pub offset: u32,
    pub next_cursor: Option<String>,
    pub prefetch_ids: Vec<String>,
    pub source: Source,
    pub ranker: &'static str,
    /// The viewer's side of the running experiment (control when none).
    pub variant: Variant,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Nearest videos fetched from FAISS per request.
    pub ann_k: usize,
    /// Nearest users consulted for collaborative candidates.
    pub neighbours: usize,
    /// Users a new video is pushed to, and how long it stays in their pool.
    pub new_video_fanout: usize,
    pub exploration_ttl_secs: i64,
    /// Weight of the newest watch in the user's moving average.
    pub ema_alpha: f32,
    /// Items ranked per session refill.
    pub list_len: usize,
    pub session_ttl_secs: i64,
    pub max_sessions: usize,
    pub prefetch: usize,
    /// Half-life of trending velocity.
    pub trending_half_life_secs: f32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ann_k: 300,
            neighbours: 16,
            new_video_fanout: 50,
            exploration_ttl_secs: 3600,
            ema_alpha: 0.15,
            list_len: 200,
            session_ttl_secs: 1800,
            max_sessions: 100_000,
            prefetch: 5,
            trending_half_life_secs: 6.0 * 3600.0,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    views: f32,
    completion_sum: f32,
    likes: f32,
    shares: f32,
    comments: f32,
    velocity: f32,
    velocity_at: i64,
}

impl Stats {
    fn completion_rate(&self) -> f32 {
        (self.completion_sum + 0.4 * 5.0) / (self.views + 5.0)
    }
    fn rate(&self, count: f32, prior: f32) -> f32 {
        (count + prior * 5.0) / (self.views + 5.0)
    }
    fn velocity_at(&self, now: i64, half_life: f32) -> f32 {
        self.velocity
            * (-(now - self.velocity_at).max(0) as f32 * std::f32::consts::LN_2 / half_life).exp()
    }
}

struct Video {
    doc: VideoDoc,
    creator: u32,
    sound: Option<u32>,
    words: Vec<String>,
    emb: Box<[f32]>,
    stats: Mutex<Stats>,
    completers: Mutex<VecDeque<u32>>,
    expanded: AtomicBool,
    alive: bool,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.to_string()).or_insert(next)
    }
}

#[derive(Default)]
struct Catalog {
    videos: Vec<Video>,
    by_id: HashMap<String, u32>,
    by_tag: HashMap<String, Vec<u32>>,
    by_sound: HashMap<u32, Vec<u32>>,
    by_creator: HashMap<u32, Vec<u32>>,
    creators: Interner,
    sounds: Interner,
    creator_stats: Mutex<HashMap<u32, Stats>>,
}

impl Catalog {
    fn live(&self, slot: u32) -> Option<&Video> {
        self.videos.get(slot as usize).filter(|v| v.alive)
    }
}

struct User {
    slot: u32,
    emb: Option<Vec<f32>>,
    events: u32,
    interest_only: bool,
    watched: HashSet<u32>,
    positives: VecDeque<u32>,
    follows: HashSet<u32>,
    tag_aff: HashMap<String, f32>,
    sound_aff: HashMap<u32, f32>,
    exploration: Vec<(u32, i64)>,
}

struct Entry {
    slot: u32,
    reason: Reason,
    score: f32,
}

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
    /// Set once trending comes from outside (the analytics rollups):
    /// `refresh` then leaves the list alone.
    external_trending: std::sync::atomic::AtomicBool,
    ranker: RwLock<Arc<Ranker>>,
    experiment: RwLock<Option<Arc<Experiment>>>,
    sessions: Mutex<Sessions<Entry>>,
    next_session: AtomicU64,
}

const MAX_POSITIVES: usize = 50;
const MAX_COMPLETERS: usize = 30;
const MAX_POOL: usize = 100;
const TRENDING_LEN: usize = 500;
/// A cold-start page holds at most this many videos of one leading hashtag.
const COLD_PER_TOPIC: usize = 3;
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
        cat.videos.push(Video {
            doc,
            creator,
            sound,
            words,
            emb: emb.into_boxed_slice(),
            stats: Mutex::new(Stats::default()),
            completers: Mutex::new(VecDeque::new()),
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
        let ex = example.then(|| {
            let c = w.completion();
            Example {
                features: self.features(&cat, &u, video, w.ts),
                completed: c >= 0.8,
                weight: if c >= 0.8 {
                    1.0 + w.duration_ms as f32 / 60_000.0
                } else {
                    1.0
                },
            }
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
        }
        {
            let mut cs = cat.creator_stats.lock();
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
            let mut comp = video.completers.lock();
            if comp.len() >= MAX_COMPLETERS {
                comp.pop_front();
            }
            if !comp.contains(&u.slot) {
                comp.push_back(u.slot);
            }
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
        for tag in &video.doc.hashtags {
            *u.tag_aff.entry(tag.to_lowercase()).or_default() += weight;
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
        Some(self.features(&cat, &u, v, now))
    }

    fn features(&self, cat: &Catalog, u: &User, v: &Video, now: i64) -> Features {
        let s = *v.stats.lock();
        let cs = cat
            .creator_stats
            .lock()
            .get(&v.creator)
            .copied()
            .unwrap_or_default();
        let sim = u.emb.as_ref().map_or(0.0, |e| dot(e, &v.emb));
        let age_h = (now - v.doc.created_at).max(0) as f32 / 3600.0;
        let aff: f32 = v
            .doc
            .hashtags
            .iter()
            .filter_map(|t| u.tag_aff.get(&t.to_lowercase()))
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
        f
    }

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
            ranker: self.ranker_for(who).0.name(),
            variant: self.variant_of(who),
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

    fn trending_entries(&self, exclude: &HashSet<u32>, reason: Reason) -> Vec<Entry> {
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

    fn following_entries(&self, user: &str) -> Vec<Entry> {
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

    fn for_you(
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

/// The `n` best-scored slots, best first (ties by slot). Selects before it
/// sorts: a refresh of a million-video catalog sorts `n`, not a million.
fn top_slots(mut scored: Vec<(f32, u32)>, n: usize) -> Vec<u32> {
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > n {
        scored.select_nth_unstable_by(n, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored.into_iter().map(|(_, s)| s).collect()
}

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}
