//! Keeping the index current without scanning the catalog per query.
//!
//! Every [`TICK`] the sweep reads what was appended or changed since its
//! last read, through indexes the catalog already has:
//! - users and sounds after the highest rowid indexed (both tables are
//!   append-only, and a rowid never changes); where an index opened from
//!   disk resumes is the highest `seq` it holds, so a restart re-reads
//!   nothing;
//! - follows after the last rowid read: each followed user's count is
//!   recounted on `follows_followee`;
//! - videos changed since the last read, on `videos_updated`, re-reading
//!   the last [`OVERLAP_MS`] each time (a transaction can commit a little
//!   after the `updated_at` it wrote): a video that became listed (ready and
//!   public) adds one to each of its hashtags, one that stopped being
//!   listed (made private, being deleted) takes it off, and its sound's
//!   uses are recounted on `videos_sound`;
//! - the trending hashtags `engagement` last computed: every tag whose
//!   score moved is rewritten.
//!
//! Two changes leave no trace such a read can see: an unfollow (the row is
//! deleted) and a video's sound or hashtags changed after it was listed.
//! The periodic reconciliation catches them (and anything else that
//! drifted): it recounts followers, sound uses and hashtags in full from
//! the catalog and rewrites every document whose counts differ. It costs a
//! scan of `follows` and of the listed videos, so it runs every
//! [`RECONCILE_FACTOR`]× its own last duration, and at least
//! [`RECONCILE_MIN`] apart: every 30 s on a box of thousands, once a few
//! minutes at millions, a few percent of one core at most.
//!
//! Hashtag counts live in memory (the catalog has no index on tags inside
//! the JSON): tag → listed videos, and the set of listed videos counted
//! (8-byte hashes). Both are rebuilt by each reconciliation, the first at
//! start.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::index::{tag_seq, Doc, Indexes};
use super::{Kind, Search, SERVER_HEAP};
use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, Catalog};

/// How often the sweep reads what changed.
pub const TICK: Duration = Duration::from_secs(1);
/// Rows read per catalog call (a fresh index of millions fills in batches).
const BATCH: u32 = 5_000;
/// How far back each read of changed videos starts again.
pub const OVERLAP_MS: i64 = 5_000;
pub const RECONCILE_MIN: Duration = Duration::from_secs(30);
pub const RECONCILE_FACTOR: u32 = 20;

/// Opens the indexes, catches up and reconciles once, then sweeps every
/// [`TICK`] until `stop`.
pub(super) async fn run(search: Arc<Search>, mut stop: watch::Receiver<bool>) {
    let dir = search.dir.clone();
    let opened = tokio::task::spawn_blocking(move || Indexes::open(&dir, 1, SERVER_HEAP)).await;
    let indexes = match opened {
        Ok(Ok(i)) => Arc::new(i),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "search index unusable; search answers 503");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "opening the search index panicked; search answers 503");
            return;
        }
    };
    for (kind, why) in &indexes.rebuilt {
        tracing::info!(kind = kind.name(), reason = %why, "search index built anew from the catalog");
    }
    // Answers (partial, while a fresh index fills) from now on.
    let _ = search.indexes.set(indexes.clone());
    let engagement = search.engagement.clone();
    let mut sweeper = Sweeper::new(
        search.catalog.clone(),
        indexes,
        Box::new(move || {
            engagement
                .trending_tags()
                .into_iter()
                .map(|(tag, score, _)| (tag, score))
                .collect()
        }),
    );
    let mut first = true;
    loop {
        let result = async {
            if first {
                sweeper.start().await?;
            }
            sweeper.sweep().await?;
            if sweeper.reconcile_due() {
                sweeper.reconcile().await?;
            }
            Ok::<_, crate::error::Error>(())
        }
        .await;
        match result {
            Ok(()) => first = false,
            Err(e) => tracing::warn!(error = %e, "search sweep failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Where the hashtags' trending scores come from.
pub type TrendingSource = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

/// The sweep's state: how far each source has been read, and the hashtag
/// counts.
pub struct Sweeper {
    catalog: Catalog,
    indexes: Arc<Indexes>,
    trending: TrendingSource,
    users_seq: i64,
    sounds_seq: i64,
    follows_seq: i64,
    /// `(updated_at, rowid)` of the last changed video read.
    videos_at: (i64, i64),
    /// Listed videos per hashtag.
    tags: HashMap<String, u64>,
    /// The listed videos counted in `tags` (hashes of their ids).
    counted: HashSet<u64>,
    trend: HashMap<String, f64>,
    next_reconcile: Option<Instant>,
}

impl Sweeper {
    pub fn new(catalog: Catalog, indexes: Arc<Indexes>, trending: TrendingSource) -> Self {
        Self {
            catalog,
            indexes,
            trending,
            users_seq: 0,
            sounds_seq: 0,
            follows_seq: 0,
            videos_at: (0, 0),
            tags: HashMap::new(),
            counted: HashSet::new(),
            trend: HashMap::new(),
            next_reconcile: None,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Indexes) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let indexes = self.indexes.clone();
        tokio::task::spawn_blocking(move || f(&indexes)).await?
    }

    /// Where each incremental read starts: users and sounds after the
    /// highest indexed `seq`; follows and videos from now (the first
    /// reconciliation, which follows, covers what came before).
    pub async fn start(&mut self) -> Result<()> {
        let (users, sounds) = self
            .blocking(|i| Ok((i.max_seq(Kind::Users)?, i.max_seq(Kind::Sounds)?)))
            .await?;
        self.users_seq = users as i64;
        self.sounds_seq = sounds as i64;
        self.follows_seq = self.catalog.read(|c| cat::max_rowid(c, "follows")).await?;
        self.videos_at = (now_ms() - OVERLAP_MS, 0);
        self.next_reconcile = None;
        Ok(())
    }

    pub fn reconcile_due(&self) -> bool {
        self.next_reconcile.is_none_or(|at| Instant::now() >= at)
    }

    /// Reads what changed since the last sweep and writes it to the index.
    pub async fn sweep(&mut self) -> Result<()> {
        let mut touched: HashSet<Kind> = HashSet::new();
        // New users, with their followers.
        loop {
            let after = self.users_seq;
            let rows = self
                .catalog
                .read(move |c| cat::users_after(c, after, BATCH))
                .await?;
            let Some(last) = rows.last() else { break };
            self.users_seq = last.seq;
            let full = rows.len() == BATCH as usize;
            let docs: Vec<Doc> = rows.iter().map(Doc::user).collect();
            self.blocking(move |i| i.upsert(Kind::Users, &docs)).await?;
            touched.insert(Kind::Users);
            if !full {
                break;
            }
        }
        // New follows: their followees' counts.
        loop {
            let after = self.follows_seq;
            let (followees, last, read) = self
                .catalog
                .read(move |c| cat::follows_after(c, after, BATCH * 10))
                .await?;
            if read == 0 {
                break;
            }
            self.follows_seq = last;
            let rows = self
                .catalog
                .read(move |c| cat::users_by_id(c, &followees))
                .await?;
            let docs: Vec<Doc> = rows.iter().map(Doc::user).collect();
            self.blocking(move |i| i.upsert(Kind::Users, &docs)).await?;
            touched.insert(Kind::Users);
            if read < (BATCH * 10) as usize {
                break;
            }
        }
        // New sounds, with their uses.
        loop {
            let after = self.sounds_seq;
            let rows = self
                .catalog
                .read(move |c| cat::sounds_after(c, after, BATCH))
                .await?;
            let Some(last) = rows.last() else { break };
            self.sounds_seq = last.seq;
            let full = rows.len() == BATCH as usize;
            let docs: Vec<Doc> = rows.iter().map(Doc::sound).collect();
            self.blocking(move |i| i.upsert(Kind::Sounds, &docs))
                .await?;
            touched.insert(Kind::Sounds);
            if !full {
                break;
            }
        }
        // Changed videos: hashtag counts and sound uses.
        let mut dirty_tags: HashSet<String> = HashSet::new();
        let mut dirty_sounds: HashSet<String> = HashSet::new();
        let mut at = self.videos_at;
        let mut newest = self.videos_at.0;
        loop {
            let rows = self
                .catalog
                .read(move |c| cat::videos_changed(c, at, BATCH))
                .await?;
            let Some(last) = rows.last() else { break };
            at = (last.updated_at, last.rowid);
            newest = newest.max(last.updated_at);
            let full = rows.len() == BATCH as usize;
            for v in rows {
                self.count_video(&v, &mut dirty_tags);
                if let Some(s) = v.sound_id {
                    dirty_sounds.insert(s);
                }
            }
            if !full {
                break;
            }
        }
        // Read again from a little before the newest change seen.
        self.videos_at = (self.videos_at.0.max(newest - OVERLAP_MS), 0);
        if !dirty_sounds.is_empty() {
            let ids: Vec<String> = dirty_sounds.into_iter().collect();
            let rows = self
                .catalog
                .read(move |c| cat::sounds_by_id(c, &ids))
                .await?;
            if !rows.is_empty() {
                let docs: Vec<Doc> = rows.iter().map(Doc::sound).collect();
                self.blocking(move |i| i.upsert(Kind::Sounds, &docs))
                    .await?;
                touched.insert(Kind::Sounds);
            }
        }
        // Trending moved.
        let trend: HashMap<String, f64> = (self.trending)().into_iter().collect();
        for (tag, score) in &trend {
            if self.trend.get(tag) != Some(score) {
                dirty_tags.insert(tag.clone());
            }
        }
        for tag in self.trend.keys() {
            if !trend.contains_key(tag) {
                dirty_tags.insert(tag.clone());
            }
        }
        self.trend = trend;
        if !dirty_tags.is_empty() {
            self.write_tags(dirty_tags.into_iter().collect()).await?;
            touched.insert(Kind::Hashtags);
        }
        for kind in touched {
            self.blocking(move |i| i.commit(kind)).await?;
        }
        Ok(())
    }

    /// Counts a changed video in (or out of) its hashtags.
    fn count_video(&mut self, v: &cat::VideoTags, dirty: &mut HashSet<String>) {
        let h = tag_seq(&v.id);
        let counted = self.counted.contains(&h);
        if v.listed == counted {
            return;
        }
        if v.listed {
            self.counted.insert(h);
        } else {
            self.counted.remove(&h);
        }
        for t in &v.hashtags {
            let n = self.tags.entry(t.clone()).or_default();
            *n = if v.listed {
                *n + 1
            } else {
                n.saturating_sub(1)
            };
            dirty.insert(t.clone());
        }
    }

    /// Writes these hashtags' documents from the counts and trending
    /// scores (a tag with neither is removed).
    async fn write_tags(&mut self, tags: Vec<String>) -> Result<()> {
        let mut docs = Vec::new();
        let mut gone = Vec::new();
        for t in tags {
            let n = self.tags.get(&t).copied().unwrap_or(0);
            let trend = self.trend.get(&t).copied().unwrap_or(0.0);
            if n == 0 && trend <= 0.0 {
                self.tags.remove(&t);
                gone.push(t);
            } else {
                docs.push(Doc::hashtag(&t, n, trend));
            }
        }
        self.blocking(move |i| {
            i.delete(Kind::Hashtags, &gone);
            i.upsert(Kind::Hashtags, &docs)
        })
        .await
    }

    /// Recounts followers, sound uses and hashtags from the catalog and
    /// rewrites every document that differs.
    pub async fn reconcile(&mut self) -> Result<()> {
        let started = Instant::now();
        // Followers.
        let want: HashMap<String, u64> = self
            .catalog
            .read(cat::follower_counts)
            .await?
            .into_iter()
            .collect();
        let stale = self.stale(Kind::Users, want).await?;
        let users = stale.len();
        for chunk in stale.chunks(BATCH as usize) {
            let ids = chunk.to_vec();
            let rows = self
                .catalog
                .read(move |c| cat::users_by_id(c, &ids))
                .await?;
            let docs: Vec<Doc> = rows.iter().map(Doc::user).collect();
            self.blocking(move |i| i.upsert(Kind::Users, &docs)).await?;
        }
        // Sound uses.
        let want: HashMap<String, u64> = self
            .catalog
            .read(cat::sound_use_counts)
            .await?
            .into_iter()
            .collect();
        let stale = self.stale(Kind::Sounds, want).await?;
        let sounds = stale.len();
        for chunk in stale.chunks(BATCH as usize) {
            let ids = chunk.to_vec();
            let rows = self
                .catalog
                .read(move |c| cat::sounds_by_id(c, &ids))
                .await?;
            let docs: Vec<Doc> = rows.iter().map(Doc::sound).collect();
            self.blocking(move |i| i.upsert(Kind::Sounds, &docs))
                .await?;
        }
        // Hashtags, counted again from every listed video.
        let (tags, counted) = self
            .catalog
            .read(|c| {
                let mut tags: HashMap<String, u64> = HashMap::new();
                let mut counted = HashSet::new();
                cat::for_each_listed(c, |id, hashtags| {
                    counted.insert(tag_seq(id));
                    for t in hashtags {
                        *tags.entry(t).or_default() += 1;
                    }
                })?;
                Ok((tags, counted))
            })
            .await?;
        self.tags = tags;
        self.counted = counted;
        let indexed = self.blocking(|i| i.contents(Kind::Hashtags)).await?;
        let mut dirty: HashSet<String> = HashSet::new();
        for (tag, n, trend) in &indexed {
            let want_n = self.tags.get(tag).copied().unwrap_or(0);
            let want_trend = self.trend.get(tag).copied().unwrap_or(0.0);
            if want_n != *n || want_trend != *trend {
                dirty.insert(tag.clone());
            }
        }
        let present: HashSet<&String> = indexed.iter().map(|(t, _, _)| t).collect();
        for tag in self.tags.keys().chain(self.trend.keys()) {
            if !present.contains(tag) {
                dirty.insert(tag.clone());
            }
        }
        let hashtags = dirty.len();
        self.write_tags(dirty.into_iter().collect()).await?;
        for kind in Kind::ALL {
            self.blocking(move |i| i.commit(kind)).await?;
        }
        let took = started.elapsed();
        self.next_reconcile = Some(Instant::now() + (took * RECONCILE_FACTOR).max(RECONCILE_MIN));
        tracing::debug!(
            users,
            sounds,
            hashtags,
            took_ms = took.as_millis() as u64,
            "search index reconciled with the catalog"
        );
        Ok(())
    }

    /// The ids whose indexed popularity differs from `want` (absent from
    /// `want`: 0), and those `want` has that the index lacks.
    async fn stale(&self, kind: Kind, mut want: HashMap<String, u64>) -> Result<Vec<String>> {
        let indexed = self.blocking(move |i| i.contents(kind)).await?;
        let mut stale = Vec::new();
        for (id, pop, _) in indexed {
            if want.remove(&id).unwrap_or(0) != pop {
                stale.push(id);
            }
        }
        stale.extend(want.into_keys());
        Ok(stale)
    }
}
