//! Sounds and the copyright check: what happens to an upload's audio
//! fingerprint, and the `api::Sounds` / `api::Copyright` endpoints.
//!
//! ```text
//! transcode (media) ── ProgressEvent::AudioFingerprint, before the first Playable ──▶
//!   videos::publishing::Publisher::audio_fingerprint (job thread, the job waits) ──▶ Sounds::vet:
//!     not distinctive (silence, a steady tone)? ─▶ nothing (no sound, nothing to check)
//!     reference index ─candidates─▶ matcher::verify ─▶ block: record, the job fails with
//!        the reason (nothing was served) · flag: record (GET /ops/flags) · allow: nothing
//!     soundId given? keep it · else sound index ─candidates─▶ catalog fingerprints ─▶ verify
//!        ─▶ best match: link the video · none: a new "original sound - <user>", indexed
//! ```
//!
//! Owns: `index` (the in-memory inverted index, rebuilt from the catalog at
//! start by [`Sounds::load`]), `matcher` (verification, confidence, what
//! counts as distinctive), `copyright` (the reference library). May call:
//! `store::catalog` (sounds, reference_audio, audio_matches, videos'
//! `sound_id`), `media::fingerprint` (reference tracks).
//!
//! Invariants: a video with audio is vetted before it is first served (the
//! media layer sends the fingerprint before any `Playable`, also when the
//! source's audio is copied); a `block` match means nothing of the video
//! is ever published; sound `n` of the index is `ids[n]` (entries are only
//! appended: sounds are never deleted).

pub mod copyright;
pub mod index;
pub mod matcher;

use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult};
use media::AudioFingerprint;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog, SoundRow};
use crate::store::{new_id, video_wire};
use index::Index;
use matcher::Match;

/// Candidates the index hands the matcher per query.
const CANDIDATES: usize = 8;
/// Fingerprints read back per catalog page when the index is rebuilt.
const LOAD_PAGE: u32 = 5_000;
/// What "trending" looks back over.
const TRENDING_WINDOW_MS: i64 = 7 * 86_400_000;

/// What the copyright check decided for an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Publish (flags, if any, are recorded).
    Clear,
    /// Never publish; the reason is the video's `failureReason`.
    Blocked(String),
}

/// The sounds index: entry `n` is sound `ids[n]`.
#[derive(Default)]
struct SoundIndex {
    index: Index,
    ids: Vec<String>,
}

pub struct Sounds {
    catalog: Catalog,
    sounds: RwLock<SoundIndex>,
    references: RwLock<copyright::Library>,
    loaded: watch::Sender<bool>,
    /// One vet links or creates a sound at a time, so two uploads of the
    /// same new audio make one sound.
    creating: tokio::sync::Mutex<()>,
}

impl Sounds {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            sounds: RwLock::new(SoundIndex::default()),
            references: RwLock::new(copyright::Library::default()),
            loaded: watch::channel(false).0,
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// Rebuilds both indexes from the catalog (at start, in the
    /// background); vetting and the reference endpoints wait for it.
    pub async fn load(self: &Arc<Self>) -> Result<()> {
        let started = std::time::Instant::now();
        let refs = self.catalog.read(cat::all_references).await?;
        *self.references.write() = copyright::Library::from_rows(refs);
        let mut fresh = SoundIndex::default();
        let mut after = 0;
        loop {
            let page = self
                .catalog
                .read(move |c| cat::sound_fingerprints_after(c, after, LOAD_PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = last.0;
            for (_, id, bytes) in page {
                fresh
                    .index
                    .insert(&AudioFingerprint::items_from_bytes(&bytes));
                fresh.ids.push(id);
            }
        }
        fresh.index.shrink();
        tracing::info!(
            sounds = fresh.ids.len(),
            references = self.references.read().count(),
            index_mb = fresh.index.memory_bytes() / 1_000_000,
            secs = started.elapsed().as_secs_f32(),
            "sound and reference indexes built"
        );
        *self.sounds.write() = fresh;
        self.loaded.send_replace(true);
        Ok(())
    }

    /// Starts [`load`](Self::load) in the background.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.load().await {
                tracing::error!("building the sound indexes: {e}");
            }
        })
    }

    async fn wait_loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The copyright check and the sound of a video, from its audio's
    /// fingerprint; run before anything of the video is served.
    pub async fn vet(&self, video_id: &str, fp: &AudioFingerprint) -> Result<Verdict> {
        self.wait_loaded().await;
        if !matcher::distinctive(&fp.items) {
            tracing::info!(video = %video_id, "audio too uniform to fingerprint usefully (silence or a steady tone): no sound, nothing to check");
            return Ok(Verdict::Clear);
        }
        if let Verdict::Blocked(reason) = self.check_copyright(video_id, &fp.items).await? {
            return Ok(Verdict::Blocked(reason));
        }
        self.link_sound(video_id, fp).await?;
        Ok(Verdict::Clear)
    }

    /// Links the video to the sound its audio matches, or makes its audio
    /// a new original sound; a video that named its sound keeps it.
    async fn link_sound(&self, video_id: &str, fp: &AudioFingerprint) -> Result<()> {
        let _one = self.creating.lock().await;
        let vid = video_id.to_owned();
        let Some(video) = self.catalog.read(move |c| cat::video(c, &vid)).await? else {
            return Ok(());
        };
        if video.sound_id.is_some() {
            return Ok(());
        }
        if let Some((sound, m)) = self.best_sound(&fp.items).await? {
            tracing::info!(video = %video_id, sound = %sound, at_secs = m.query_secs, confidence = m.confidence, "audio matches an existing sound: linked");
            let (vid, sid) = (video_id.to_owned(), sound);
            return self
                .catalog
                .call(move |c| cat::set_video_sound(c, &vid, &sid))
                .await;
        }
        let owner = video.owner_id.clone();
        let user = self
            .catalog
            .read(move |c| cat::user_by_id(c, &owner))
            .await?;
        let row = SoundRow {
            id: new_id(),
            title: format!(
                "original sound - {}",
                user.map_or_else(|| video.owner_id.clone(), |u| u.username)
            ),
            owner_id: Some(video.owner_id.clone()),
            origin_video_id: Some(video.id.clone()),
            duration_ms: fp.duration_ms as i64,
            created_at: now_ms(),
        };
        let (r, bytes) = (row.clone(), fp.to_bytes());
        self.catalog
            .call(move |c| cat::insert_sound(c, &r, &bytes))
            .await?;
        let mut s = self.sounds.write();
        s.index.insert(&fp.items);
        s.ids.push(row.id.clone());
        tracing::info!(video = %video_id, sound = %row.id, "a new original sound");
        Ok(())
    }

    /// The sound `items` match best (verified), if any.
    async fn best_sound(&self, items: &[u32]) -> Result<Option<(String, Match)>> {
        let ids: Vec<String> = {
            let s = self.sounds.read();
            s.index
                .candidates(items, CANDIDATES)
                .into_iter()
                .filter_map(|c| s.ids.get(c.entry as usize).cloned())
                .collect()
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let prints = self
            .catalog
            .read(move |c| cat::sound_fingerprints(c, &ids))
            .await?;
        Ok(prints
            .into_iter()
            .filter_map(|(id, bytes)| {
                let m = matcher::verify(items, &AudioFingerprint::items_from_bytes(&bytes))?;
                Some((id, m))
            })
            .max_by(|a, b| {
                (a.1.confidence * a.1.duration_secs)
                    .total_cmp(&(b.1.confidence * b.1.duration_secs))
            }))
    }

    fn wire(row: SoundRow, usage: i64, recent: Option<i64>) -> Sound {
        Sound {
            id: row.id,
            title: row.title,
            owner_id: row.owner_id,
            duration_secs: row.duration_ms as f64 / 1000.0,
            usage_count: usage,
            original_video_id: row.origin_video_id,
            created_at: rfc3339(row.created_at),
            recent_usage: recent,
        }
    }

    async fn existing(&self, id: &str) -> ApiResult<SoundRow> {
        let key = id.to_owned();
        self.catalog
            .read(move |c| cat::sound(c, &key))
            .await?
            .ok_or_else(|| ApiError::not_found("sound"))
    }
}

impl api::service::Sounds for Sounds {
    async fn sound(&self, id: &str) -> ApiResult<Sound> {
        let row = self.existing(id).await?;
        let key = id.to_owned();
        let usage = self
            .catalog
            .read(move |c| cat::sound_usage(c, &key))
            .await?;
        Ok(Self::wire(row, usage, None))
    }

    async fn sound_videos(&self, id: &str, page: PageQuery) -> ApiResult<Page<Video>> {
        let (limit, after) = page.by_created()?;
        self.existing(id).await?;
        let key = id.to_owned();
        let rows = self
            .catalog
            .read(move |c| cat::sound_videos(c, &key, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |v| api::cursor::created(v.created_at, &v.id),
            |v| video_wire(&v),
        ))
    }

    async fn trending_sounds(&self, page: PageQuery) -> ApiResult<Page<Sound>> {
        use api::wire::Params;
        page.check()?;
        let limit = page.limit.unwrap_or(20);
        let start = page
            .cursor
            .as_deref()
            .map(api::cursor::parse_offset)
            .transpose()?
            .unwrap_or(0);
        let since = now_ms() - TRENDING_WINDOW_MS;
        let rows = self
            .catalog
            .read(move |c| cat::trending_sounds(c, since, start as u32, limit + 1))
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<Sound> = rows
            .into_iter()
            .take(limit as usize)
            .map(|(row, recent, usage)| Self::wire(row, usage, Some(recent)))
            .collect();
        let next_cursor = more.then(|| api::cursor::offset(start + items.len()));
        Ok(Page { items, next_cursor })
    }
}
