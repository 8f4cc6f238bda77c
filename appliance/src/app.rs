//! The appliance behind the HTTP API: the `api::Service` implementation
//! over the catalog, the object store, the status hub and the job queue.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::service::{IdempotencyBegin, OriginLookup, OriginMeta, Service};
use api::wire::*;
use api::{ApiError, ApiResult, ErrorCode};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use bytes::Bytes;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::catalog::{self as cat, now_ms, rfc3339, Catalog, KeyState, UploadRow, VideoRow};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::objects::{self, Objects};

/// Containers a creator may declare when starting an upload; the content
/// itself is checked by `media::probe` when the upload completes.
const VIDEO_MIME_TYPES: &[&str] = &[
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/mp2t",
    "video/x-msvideo",
    "video/mpeg",
    "application/octet-stream",
];

pub struct App {
    pub config: Config,
    pub catalog: Catalog,
    pub objects: Objects,
    pub hub: Hub,
    pub inventory: hardware::Inventory,
    /// Wakes idle workers when a job is enqueued.
    pub work_ready: Notify,
    /// Uploads being completed right now (a second complete waits its turn
    /// with a 409 instead of assembling the same file twice).
    completing: Mutex<HashSet<String>>,
    pub work_dir: PathBuf,
    pub counters: crate::jobs::Counters,
    pub feed: Arc<crate::recommend::Recommender>,
    pub engagement: Arc<crate::engagement::Engagement>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn forbidden_or_missing(what: &str) -> ApiError {
    // Not 403: whether someone else's upload or private video exists is
    // itself private.
    ApiError::not_found(what)
}

impl App {
    pub fn new(
        config: Config,
        catalog: Catalog,
        objects: Objects,
        inventory: hardware::Inventory,
    ) -> Result<Self> {
        let work_dir = config.storage.data_dir.join("work");
        let feed = Arc::new(crate::recommend::Recommender::new(&config));
        let engagement = Arc::new(crate::engagement::Engagement::new(
            &config,
            catalog.clone(),
        )?);
        Ok(Self {
            feed,
            engagement,
            config,
            catalog,
            objects,
            hub: Hub::default(),
            inventory,
            work_ready: Notify::new(),
            completing: Mutex::new(HashSet::new()),
            work_dir,
            counters: Default::default(),
        })
    }

    pub(crate) async fn issue_token(&self, user: &cat::UserRow) -> Result<AuthResponse> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::Task(format!("no randomness: {e}")))?;
        let token = hex::encode(raw);
        let hash = sha256_hex(token.as_bytes());
        let expires = now_ms() + (self.config.auth.token_ttl_hours as i64) * 3_600_000;
        let user_id = user.id.clone();
        self.catalog
            .call(move |c| cat::insert_token(c, &hash, &user_id, expires))
            .await?;
        Ok(AuthResponse {
            token,
            expires_at: rfc3339(expires),
            user: user_wire(user),
        })
    }

    /// Creates a user (also used by `appliance user add`).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<cat::UserRow> {
        validate_username(username)?;
        if password.chars().count() < 10 || password.len() > 1024 {
            return Err(ApiError::validation("passwords are 10–1024 characters")
                .with_details(serde_json::json!({"field": "password"}))
                .into());
        }
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || {
            let salt = SaltString::from_b64(&salt_b64()?)
                .map_err(|e| Error::Task(format!("salt: {e}")))?;
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Task(format!("hashing a password: {e}")))
        })
        .await??;
        let user = cat::UserRow {
            id: new_id(),
            username: username.to_owned(),
            password_hash: hash,
            role: role.as_str().to_owned(),
            created_at: now_ms(),
        };
        let row = user.clone();
        let inserted = self
            .catalog
            .call(move |c| cat::insert_user(c, &row))
            .await?;
        if !inserted {
            return Err(ApiError::conflict(format!("username `{username}` is taken")).into());
        }
        Ok(user)
    }

    async fn upload_of(
        &self,
        caller: &Principal,
        upload_id: &str,
    ) -> Result<(UploadRow, Vec<cat::ChunkRow>)> {
        let id = upload_id.to_owned();
        let found = self
            .catalog
            .call(move |c| {
                let Some(u) = cat::upload(c, &id)? else {
                    return Ok(None);
                };
                let chunks = cat::chunks(c, &id)?;
                Ok(Some((u, chunks)))
            })
            .await?;
        match found {
            Some((u, chunks)) if caller.may_manage(&u.owner_id) => Ok((u, chunks)),
            Some(_) | None => Err(forbidden_or_missing("upload").into()),
        }
    }

    /// Refuses writes to a session that is no longer open.
    async fn ensure_open(&self, u: &UploadRow) -> Result<()> {
        match u.status.as_str() {
            "open" if u.expires_at <= now_ms() => {
                let id = u.id.clone();
                self.catalog
                    .call(move |c| cat::set_upload_status(c, &id, "expired"))
                    .await?;
                Err(upload_expired(u).into())
            }
            "open" => Ok(()),
            "expired" => Err(upload_expired(u).into()),
            "completed" => Err(ApiError::conflict("this upload is already complete").into()),
            "rejected" => {
                Err(ApiError::conflict("this upload was refused; start a new one").into())
            }
            _ => Err(ApiError::not_found("upload").into()),
        }
    }

    fn session_wire(u: &UploadRow, chunks: &[cat::ChunkRow]) -> UploadSession {
        let received: Vec<u32> = chunks.iter().map(|c| c.n).collect();
        let have: HashSet<u32> = received.iter().copied().collect();
        UploadSession {
            upload_id: u.id.clone(),
            filename: u.filename.clone(),
            file_size: u.file_size,
            chunk_size: u.chunk_size,
            total_chunks: u.total_chunks,
            expires_at: rfc3339(u.expires_at),
            status: u.status.clone(),
            missing_chunks: (0..u.total_chunks).filter(|n| !have.contains(n)).collect(),
            received_chunks: received,
            bytes_received: chunks.iter().map(|c| c.size).sum(),
            video_id: (u.status == "completed").then(|| u.video_id.clone()),
        }
    }

    async fn new_upload(
        &self,
        caller: &Principal,
        req: UploadInit,
        chunk_size: u64,
    ) -> Result<UploadRow> {
        let name = req.filename.trim();
        if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', '\0']) {
            return Err(ApiError::validation(
                "filename must be 1–255 characters without path separators",
            )
            .with_details(serde_json::json!({"field": "filename"}))
            .into());
        }
        if req.file_size == 0 {
            return Err(ApiError::validation("fileSize must be positive")
                .with_details(serde_json::json!({"field": "fileSize"}))
                .into());
        }
        if req.file_size > self.config.uploads.max_file_size {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "{} bytes is over the {} byte limit",
                    req.file_size, self.config.uploads.max_file_size
                ),
            )
            .into());
        }
        let mime = req.mime_type.to_ascii_lowercase();
        if !VIDEO_MIME_TYPES.contains(&mime.as_str()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedFormat,
                format!("`{}` is not a video type this box accepts", req.mime_type),
            )
            .with_details(serde_json::json!({"accepted": VIDEO_MIME_TYPES}))
            .into());
        }
        // Counted once the request is valid: a typo does not use up quota.
        self.limit(
            "uploads",
            &caller.user_id,
            self.config.limits.uploads_per_hour,
            Duration::from_secs(3600),
        )
        .await?;
        let now = now_ms();
        let total = req.file_size.div_ceil(chunk_size);
        let row = UploadRow {
            id: new_id(),
            owner_id: caller.user_id.clone(),
            video_id: new_id(),
            filename: name.to_owned(),
            file_size: req.file_size,
            mime_type: mime,
            chunk_size,
            total_chunks: u32::try_from(total)
                .map_err(|_| ApiError::validation("too many chunks"))?,
            status: "open".into(),
            created_at: now,
            expires_at: now + (self.config.uploads.session_ttl_secs as i64) * 1000,
        };
        let r = row.clone();
        self.catalog
            .call(move |c| cat::insert_upload(c, &r))
            .await?;
        Ok(row)
    }

    async fn store_chunk(
        &self,
        u: &UploadRow,
        n: u32,
        body: Bytes,
        digest: Option<String>,
    ) -> Result<ChunkReceipt> {
        if n >= u.total_chunks {
            return Err(ApiError::validation(format!(
                "chunk {n} is out of range: this upload has chunks 0–{}",
                u.total_chunks - 1
            ))
            .into());
        }
        let expected = if n + 1 == u.total_chunks {
            u.file_size - u.chunk_size * u64::from(u.total_chunks - 1)
        } else {
            u.chunk_size
        };
        if body.len() as u64 != expected {
            return Err(ApiError::validation(format!(
                "chunk {n} must be {expected} bytes, got {}",
                body.len()
            ))
            .with_details(serde_json::json!({"expected": expected, "received": body.len()}))
            .into());
        }
        let sha = sha256_hex(&body);
        if let Some(d) = digest {
            if d != sha {
                return Err(ApiError::validation(format!(
                    "chunk {n} does not match its X-Chunk-SHA256 (received bytes hash to {sha}); nothing was stored"
                ))
                .into());
            }
        }
        let (id, m) = (u.id.clone(), n);
        let existing = self.catalog.call(move |c| cat::chunk(c, &id, m)).await?;
        if existing.as_ref().is_some_and(|c| c.sha256 == sha) {
            return Ok(ChunkReceipt {
                upload_id: u.id.clone(),
                chunk: n,
                size: expected,
                sha256: sha,
                created: false,
            });
        }
        self.objects
            .put(&objects::chunk_key(&u.id, n), body)
            .await?;
        let row = cat::ChunkRow {
            n,
            size: expected,
            sha256: sha.clone(),
        };
        let id = u.id.clone();
        self.catalog
            .call(move |c| cat::record_chunk(c, &id, &row))
            .await?;
        Ok(ChunkReceipt {
            upload_id: u.id.clone(),
            chunk: n,
            size: expected,
            sha256: sha,
            created: true,
        })
    }

    async fn complete(
        &self,
        caller: &Principal,
        upload_id: &str,
        meta: VideoMeta,
    ) -> Result<Accepted> {
        let meta = validate_meta(meta)?;
        let (u, chunks) = self.upload_of(caller, upload_id).await?;
        if u.status == "completed" {
            return Ok(Accepted {
                video_id: u.video_id,
                status: VideoState::Processing,
            });
        }
        self.ensure_open(&u).await?;
        let missing: Vec<u32> = Self::session_wire(&u, &chunks).missing_chunks;
        if !missing.is_empty() {
            return Err(ApiError::new(
                ErrorCode::UploadIncomplete,
                format!("{} of {} chunks are missing", missing.len(), u.total_chunks),
            )
            .with_details(serde_json::json!({ "missingChunks": missing }))
            .into());
        }
        {
            let mut busy = self.completing.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(u.id.clone()) {
                return Err(ApiError::conflict(
                    "this upload is being completed by another request",
                )
                .into());
            }
        }
        let result = self.assemble_and_queue(&u, meta).await;
        self.completing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&u.id);
        result
    }

    async fn assemble_and_queue(&self, u: &UploadRow, meta: VideoMeta) -> Result<Accepted> {
        let parts: Vec<String> = (0..u.total_chunks)
            .map(|n| objects::chunk_key(&u.id, n))
            .collect();
        let source = objects::source_key(&u.video_id);
        let size = self.objects.concat(&parts, &source).await?;
        if size != u.file_size {
            return Err(Error::Task(format!(
                "assembled {size} bytes for upload {} of {} bytes",
                u.id, u.file_size
            )));
        }
        if let Err(e) = self.check_source(&u.video_id, &source).await {
            if matches!(&e, Error::Media(m) if m.reject_code().is_some()) {
                let id = u.id.clone();
                self.catalog
                    .call(move |c| cat::set_upload_status(c, &id, "rejected"))
                    .await?;
                self.objects
                    .delete_prefix(&objects::video_prefix(&u.video_id))
                    .await?;
                self.drop_chunks(&u.id).await;
            }
            return Err(e);
        }
        let now = now_ms();
        let video = VideoRow {
            id: u.video_id.clone(),
            owner_id: u.owner_id.clone(),
            title: meta.title,
            description: meta.description,
            hashtags: meta.hashtags,
            sound_id: meta.sound_id,
            visibility: meta.visibility.as_str().to_owned(),
            state: "processing".into(),
            stage: "queued".into(),
            failure: None,
            source_key: source,
            source_name: u.filename.clone(),
            ladder: None,
            created_at: now,
            updated_at: now,
        };
        let upload_id = u.id.clone();
        let max_attempts = self.config.jobs.max_attempts;
        self.catalog
            .call(move |c| {
                let tx = c
                    .transaction()
                    .map_err(Error::catalog("completing an upload"))?;
                cat::insert_video(&tx, &video)?;
                cat::enqueue(&tx, &video.id, max_attempts)?;
                cat::set_upload_status(&tx, &upload_id, "completed")?;
                tx.commit().map_err(Error::catalog("completing an upload"))
            })
            .await?;
        self.work_ready.notify_one();
        self.drop_chunks(&u.id).await;
        Ok(Accepted {
            video_id: u.video_id.clone(),
            status: VideoState::Processing,
        })
    }

    /// Probes the assembled source so a file the engine would refuse is
    /// refused now, with its reason, instead of failing later in a job.
    async fn check_source(&self, video_id: &str, key: &str) -> Result<()> {
        std::fs::create_dir_all(&self.work_dir)
            .map_err(Error::io("creating", self.work_dir.display()))?;
        let scratch = self.work_dir.join(format!("probe-{video_id}"));
        let path = self.objects.local_copy(key, &scratch).await?;
        let limits = media::Limits {
            max_bytes: self.config.uploads.max_file_size,
            ..Default::default()
        };
        let result = tokio::task::spawn_blocking(move || media::probe(&path, &limits)).await?;
        let _ = std::fs::remove_file(&scratch);
        result.map(|_| ()).map_err(Error::from)
    }

    /// Chunks are not needed once an upload is finished; a failure here is
    /// retried by the janitor.
    async fn drop_chunks(&self, upload_id: &str) {
        if let Err(e) = self
            .objects
            .delete_prefix(&objects::upload_prefix(upload_id))
            .await
        {
            tracing::warn!(upload = upload_id, "keeping chunks for the janitor: {e}");
            return;
        }
        let id = upload_id.to_owned();
        if let Err(e) = self.catalog.call(move |c| cat::forget_chunks(c, &id)).await {
            tracing::warn!(
                upload = upload_id,
                "chunk records stay for the janitor: {e}"
            );
        }
    }

    pub(crate) async fn visible_video(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> Result<VideoRow> {
        let vid = id.to_owned();
        let row = self.catalog.call(move |c| cat::video(c, &vid)).await?;
        let Some(v) = row else {
            return Err(ApiError::not_found("video").into());
        };
        let manager = caller.is_some_and(|p| p.may_manage(&v.owner_id));
        let visible = match v.state.as_str() {
            "deleting" => false,
            "ready" => v.visibility != "private" || manager,
            _ => manager,
        };
        if visible {
            Ok(v)
        } else {
            Err(forbidden_or_missing("video").into())
        }
    }

    /// The status of a video: durable state from the catalog, live
    /// progress from the hub.
    pub async fn status_of(&self, v: &VideoRow) -> Result<VideoStatus> {
        let vid = v.id.clone();
        let job = self
            .catalog
            .call(move |c| cat::job_for_video(c, &vid))
            .await?;
        let live = self.hub.live(&v.id);
        Ok(status_wire(v, job.as_ref(), live.as_ref()))
    }

    pub async fn delete_now(&self, video_id: &str) -> Result<()> {
        let id = video_id.to_owned();
        let existed = self
            .catalog
            .call(move |c| cat::begin_delete(c, &id))
            .await?;
        if existed {
            self.hub.publish(deleted_event(video_id));
        }
        self.feed.forget_video(video_id);
        self.engagement.forget_video(video_id);
        self.finish_delete(video_id).await
    }

    /// Removes a `deleting` video's objects, then its row (the janitor
    /// re-runs this for deletions a crash interrupted).
    pub async fn finish_delete(&self, video_id: &str) -> Result<()> {
        self.objects
            .delete_prefix(&objects::video_prefix(video_id))
            .await?;
        let id = video_id.to_owned();
        self.catalog.call(move |c| cat::finish_delete(c, &id)).await
    }

    fn ladder_wire(v: &VideoRow) -> (Option<LadderInfo>, Vec<Rendition>) {
        let Some(info) = v
            .ladder
            .as_deref()
            .and_then(|l| serde_json::from_str::<LadderInfo>(l).ok())
        else {
            return (None, Vec::new());
        };
        let renditions = info
            .renditions
            .iter()
            .map(|r| Rendition {
                name: r.name.clone(),
                width: r.width,
                height: r.height,
                codecs: r.codecs.clone(),
                bandwidth: r.bandwidth,
                average_bandwidth: r.average_bandwidth,
                playlist_url: format!("/hls/{}/{}/index.m3u8", v.id, r.name),
            })
            .collect();
        (Some(info), renditions)
    }

    pub(crate) fn video_wire(v: &VideoRow) -> Video {
        let (info, renditions) = Self::ladder_wire(v);
        let ready = v.state == "ready";
        Video {
            id: v.id.clone(),
            owner_id: v.owner_id.clone(),
            title: v.title.clone(),
            description: v.description.clone(),
            hashtags: v.hashtags.clone(),
            sound_id: v.sound_id.clone(),
            visibility: Visibility::parse(&v.visibility).unwrap_or_default(),
            status: video_state(&v.state),
            failure_reason: v.failure.clone(),
            created_at: rfc3339(v.created_at),
            duration_secs: info.as_ref().map(|i| i.duration_secs),
            width: info.as_ref().map(|i| i.width),
            height: info.as_ref().map(|i| i.height),
            master_url: ready.then(|| format!("/hls/{}/master.m3u8", v.id)),
            poster_url: ready.then(|| format!("/thumbs/{}/poster.jpg", v.id)),
            renditions,
            stats: VideoStats::default(),
            viewer: ViewerEngagement::default(),
        }
    }
}

/// What the catalog keeps about a published ladder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LadderInfo {
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    pub renditions: Vec<RenditionInfo>,
    pub placement: String,
    pub frames: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RenditionInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

pub fn video_state(s: &str) -> VideoState {
    match s {
        "ready" => VideoState::Ready,
        "failed" | "deleting" => VideoState::Failed,
        _ => VideoState::Processing,
    }
}

pub fn status_wire(
    v: &VideoRow,
    job: Option<&cat::JobRow>,
    live: Option<&crate::hub::Live>,
) -> VideoStatus {
    let state = video_state(&v.state);
    let (stage, rungs, percent) = match (state, live) {
        (VideoState::Processing, Some(l)) if !l.stage.is_empty() => {
            (l.stage.clone(), l.rungs.clone(), l.percent())
        }
        (VideoState::Ready, _) => (v.stage.clone(), Default::default(), 100.0),
        (VideoState::Processing | VideoState::Failed, _) => {
            (v.stage.clone(), Default::default(), 0.0)
        }
    };
    VideoStatus {
        video_id: v.id.clone(),
        status: state,
        stage,
        percent,
        rungs,
        attempts: job.map_or(0, |j| j.attempts),
        error: v.failure.clone(),
        updated_at: rfc3339(v.updated_at),
    }
}

/// The last event subscribers of a deleted video get.
pub fn deleted_event(video_id: &str) -> StatusEvent {
    StatusEvent {
        name: "transcode.failed",
        status: VideoStatus {
            video_id: video_id.to_owned(),
            status: VideoState::Failed,
            stage: "deleted".into(),
            percent: 0.0,
            rungs: Default::default(),
            attempts: 0,
            error: Some("the video was deleted".into()),
            updated_at: rfc3339(now_ms()),
        },
    }
}

fn user_wire(u: &cat::UserRow) -> User {
    User {
        id: u.id.clone(),
        username: u.username.clone(),
        role: Role::parse(&u.role).unwrap_or(Role::Viewer),
        created_at: rfc3339(u.created_at),
    }
}

fn upload_expired(u: &UploadRow) -> ApiError {
    ApiError::new(
        ErrorCode::UploadExpired,
        format!("upload {} expired at {}", u.id, rfc3339(u.expires_at)),
    )
}

fn salt_b64() -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Task(format!("no randomness: {e}")))?;
    Ok(SaltString::encode_b64(&salt)
        .map_err(|e| Error::Task(format!("salt: {e}")))?
        .as_str()
        .to_owned())
}

fn validate_username(name: &str) -> Result<()> {
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::validation("usernames are 3–32 characters: letters, digits, `_`, `.`, `-`")
                .with_details(serde_json::json!({"field": "username"}))
                .into(),
        )
    }
}

fn validate_meta(mut meta: VideoMeta) -> Result<VideoMeta> {
    let field = |f: &str, m: &str| -> Error {
        ApiError::validation(m.to_owned())
            .with_details(serde_json::json!({ "field": f }))
            .into()
    };
    meta.title = meta.title.trim().to_owned();
    if meta.title.is_empty() || meta.title.chars().count() > 150 {
        return Err(field("title", "title must be 1–150 characters"));
    }
    if meta.description.chars().count() > 5000 {
        return Err(field(
            "description",
            "description is at most 5000 characters",
        ));
    }
    if meta.hashtags.len() > 30 {
        return Err(field("hashtags", "at most 30 hashtags"));
    }
    let mut tags = Vec::with_capacity(meta.hashtags.len());
    for tag in &meta.hashtags {
        let t = tag.trim().trim_start_matches('#').to_lowercase();
        if t.is_empty()
            || t.chars().count() > 64
            || !t.chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            return Err(field(
                "hashtags",
                &format!("`{tag}` is not a hashtag (letters, digits, `_`)"),
            ));
        }
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    meta.hashtags = tags;
    if meta
        .sound_id
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.len() > 64)
    {
        return Err(field("soundId", "soundId must be 1–64 characters"));
    }
    Ok(meta)
}

fn cursor_encode(created_at: i64, id: &str) -> String {
    hex::encode(format!("{created_at}:{id}"))
}

fn cursor_decode(cursor: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::validation("cursor is not one this server issued");
    let raw = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    let t = t.parse().map_err(|_| bad())?;
    if id.is_empty() || !api::origin::valid_id(id) {
        return Err(bad());
    }
    Ok((t, id.to_owned()))
}

/// The handle the HTTP layer holds (the `Service` seam is implemented on it).
#[derive(Clone)]
pub struct Handle(pub Arc<App>);

impl std::ops::Deref for Handle {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl Service for Handle {
    async fn register(&self, req: RegisterRequest) -> ApiResult<AuthResponse> {
        if !self.config.auth.open_registration {
            return Err(ApiError::forbidden("registration is closed on this box"));
        }
        let role = req.role.unwrap_or(Role::Viewer);
        if role == Role::Admin {
            return Err(ApiError::forbidden(
                "admins are created by an operator (`appliance user add --role admin`)",
            ));
        }
        let user = self.create_user(&req.username, &req.password, role).await?;
        Ok(self.issue_token(&user).await?)
    }

    async fn login(&self, req: LoginRequest) -> ApiResult<AuthResponse> {
        let name = req.username.clone();
        let user = self
            .catalog
            .call(move |c| cat::user_by_name(c, &name))
            .await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = req.password;
        let ok = tokio::task::spawn_blocking(move || {
            // An unknown user costs the same as a wrong password.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| {
                let salt = SaltString::encode_b64(b"appliance-dummy!").expect("16-byte salt");
                Argon2::default()
                    .hash_password(b"not a password", &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            let stored = hash.as_deref().unwrap_or(dummy);
            let parsed =
                PasswordHash::new(stored).map_err(|e| Error::Task(format!("stored hash: {e}")))?;
            Ok::<_, Error>(
                hash.is_some()
                    && Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
            )
        })
        .await
        .map_err(Error::from)??;
        match user {
            Some(u) if ok => Ok(self.issue_token(&u).await?),
            Some(_) | None => Err(ApiError::unauthorized("wrong username or password")),
        }
    }

    async fn authenticate(&self, token: &str) -> ApiResult<Principal> {
        let hash = sha256_hex(token.as_bytes());
        let user = self
            .catalog
            .call(move |c| cat::user_by_token(c, &hash))
            .await?;
        match user {
            Some(u) => Ok(Principal {
                user_id: u.id,
                role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            }),
            None => Err(ApiError::unauthorized(
                "the bearer token is unknown or expired",
            )),
        }
    }

    async fn get_user(&self, id: &str) -> ApiResult<User> {
        let id = id.to_owned();
        match self.catalog.call(move |c| cat::user_by_id(c, &id)).await? {
            Some(u) => Ok(user_wire(&u)),
            None => Err(ApiError::not_found("user")),
        }
    }

    async fn user_videos(
        &self,
        caller: Option<&Principal>,
        user_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Video>> {
        let limit = page.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::validation("limit must be 1–100"));
        }
        let after = page.cursor.as_deref().map(cursor_decode).transpose()?;
        self.get_user(user_id).await?;
        let public_only = !caller.is_some_and(|p| p.may_manage(user_id));
        let owner = user_id.to_owned();
        let rows = self
            .catalog
            .call(move |c| cat::videos_of(c, &owner, public_only, after, limit + 1))
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<Video> = rows
            .iter()
            .take(limit as usize)
            .map(App::video_wire)
            .collect();
        let next_cursor = more
            .then(|| rows.get(limit as usize - 1))
            .flatten()
            .map(|v| cursor_encode(v.created_at, &v.id));
        Ok(Page { items, next_cursor })
    }

    async fn init_upload(&self, caller: &Principal, req: UploadInit) -> ApiResult<UploadSession> {
        let u = self
            .new_upload(caller, req, self.config.uploads.chunk_size)
            .await?;
        Ok(App::session_wire(&u, &[]))
    }

    async fn put_chunk(
        &self,
        caller: &Principal,
        upload_id: &str,
        chunk: u32,
        body: Bytes,
        sha256: Option<String>,
    ) -> ApiResult<ChunkReceipt> {
        let (u, _) = self.upload_of(caller, upload_id).await?;
        self.ensure_open(&u).await?;
        Ok(self.store_chunk(&u, chunk, body, sha256).await?)
    }

    async fn get_upload(&self, caller: &Principal, upload_id: &str) -> ApiResult<UploadSession> {
        let (u, chunks) = self.upload_of(caller, upload_id).await?;
        if u.status == "expired" || (u.status == "open" && u.expires_at <= now_ms()) {
            return Err(upload_expired(&u));
        }
        Ok(App::session_wire(&u, &chunks))
    }

    async fn complete_upload(
        &self,
        caller: &Principal,
        upload_id: &str,
        meta: VideoMeta,
    ) -> ApiResult<Accepted> {
        Ok(self.complete(caller, upload_id, meta).await?)
    }

    async fn cancel_upload(&self, caller: &Principal, upload_id: &str) -> ApiResult<()> {
        let (u, _) = self.upload_of(caller, upload_id).await?;
        match u.status.as_str() {
            "completed" => {
                return Err(ApiError::conflict(
                    "this upload is complete; delete the video instead",
                ))
            }
            "open" | "expired" | "rejected" => {
                let id = u.id.clone();
                self.catalog
                    .call(move |c| cat::set_upload_status(c, &id, "cancelled"))
                    .await?;
            }
            _ => {}
        }
        self.drop_chunks(&u.id).await;
        Ok(())
    }

    async fn create_video(
        &self,
        caller: &Principal,
        filename: String,
        meta: VideoMeta,
        body: Bytes,
    ) -> ApiResult<Accepted> {
        let meta = validate_meta(meta)?;
        let size = body.len() as u64;
        if size > self.config.uploads.single_shot_max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                "use a resumable upload (POST /uploads/init) for files this large",
            ));
        }
        // A one-chunk upload session underneath, so a crash between storing
        // the bytes and queueing the job leaves nothing the janitor misses.
        let mime = mime_for(&filename);
        let init = UploadInit {
            filename,
            file_size: size,
            mime_type: mime.into(),
        };
        let u = self.new_upload(caller, init, size.max(1)).await?;
        self.store_chunk(&u, 0, body, None).await?;
        Ok(self.complete(caller, &u.id, meta).await?)
    }

    async fn get_video(&self, caller: Option<&Principal>, id: &str) -> ApiResult<Video> {
        let v = self.visible_video(caller, id).await?;
        Ok(self.video_with_engagement(caller, &v).await?)
    }

    async fn video_status(&self, caller: Option<&Principal>, id: &str) -> ApiResult<VideoStatus> {
        let v = self.visible_video(caller, id).await?;
        Ok(self.status_of(&v).await?)
    }

    async fn video_events(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> ApiResult<BoxStream<'static, StatusEvent>> {
        self.visible_video(caller, id).await?;
        let rx = self.hub.subscribe(id);
        // Re-read after subscribing: the snapshot is at least as new as
        // anything the subscription could have missed.
        let v = self.visible_video(caller, id).await?;
        let snapshot = self.status_of(&v).await?;
        Ok(self.hub.stream(rx, snapshot))
    }

    async fn delete_video(&self, caller: &Principal, id: &str) -> ApiResult<()> {
        let vid = id.to_owned();
        let row = self.catalog.call(move |c| cat::video(c, &vid)).await?;
        match row {
            Some(v) if v.state != "deleting" && caller.may_manage(&v.owner_id) => {
                Ok(self.delete_now(id).await?)
            }
            Some(v) if v.state == "ready" && v.visibility != "private" => Err(ApiError::forbidden(
                "only the owner or an admin may delete a video",
            )),
            Some(_) | None => Err(ApiError::not_found("video")),
        }
    }

    async fn origin_lookup(&self, video_id: &str, path: &str) -> ApiResult<OriginLookup> {
        let vid = video_id.to_owned();
        let row = self.catalog.call(move |c| cat::video(c, &vid)).await?;
        let Some(v) = row else {
            return Ok(OriginLookup::Missing);
        };
        if v.state != "ready" {
            return Ok(OriginLookup::Missing);
        }
        if v.visibility == "private" {
            return Ok(OriginLookup::Private);
        }
        let key = format!("{}/{path}", objects::ladder_prefix(video_id));
        Ok(match self.objects.head(&key).await? {
            Some(meta) => OriginLookup::Found(OriginMeta {
                size: meta.size,
                last_modified: meta.last_modified.into(),
                // S3 sends its ETag quoted; the origin adds the quotes itself.
                etag: meta
                    .e_tag
                    .map(|t| t.trim_start_matches("W/").trim_matches('"').to_owned())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| {
                        format!(
                            "{:x}-{:x}",
                            meta.size,
                            meta.last_modified.timestamp_millis()
                        )
                    }),
            }),
            None => OriginLookup::Missing,
        })
    }

    async fn origin_read(&self, video_id: &str, path: &str, range: Range<u64>) -> ApiResult<Bytes> {
        let key = format!("{}/{path}", objects::ladder_prefix(video_id));
        Ok(self.objects.get_range(&key, range).await?)
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> ApiResult<IdempotencyBegin> {
        let f = sha256_hex(fingerprint.as_bytes());
        let state = self
            .engagement
            .hot
            .idem_claim(scope, key, &f, Duration::from_secs(300))
            .await?;
        match state {
            KeyState::New => Ok(IdempotencyBegin::Proceed),
            KeyState::Done { status, body } => Ok(IdempotencyBegin::Replay {
                status,
                body: Bytes::from(body),
            }),
            KeyState::InFlight => Err(ApiError::conflict(
                "a request with this X-Idempotency-Key is still running",
            )),
            KeyState::OtherRequest => Err(ApiError::conflict(
                "this X-Idempotency-Key was used for a different request",
            )),
        }
    }

    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, body: Bytes) {
        let keep = Duration::from_secs(self.config.hot.idempotency_hours * 3600);
        if let Err(e) = self
            .engagement
            .hot
            .idem_finish(scope, key, status, &body, keep)
            .await
        {
            tracing::warn!("idempotency key {key} not recorded: {e}");
        }
    }

    async fn idempotency_abort(&self, scope: &str, key: &str) {
        if let Err(e) = self.engagement.hot.idem_drop(scope, key).await {
            tracing::warn!("idempotency key {key} not released: {e}");
        }
    }

    async fn feed(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        query: FeedQuery,
    ) -> ApiResult<Feed> {
        Ok(self.0.feed_page(caller, kind, query).await?)
    }

    async fn set_interests(&self, caller: &Principal, req: Interests) -> ApiResult<InterestsSet> {
        Ok(self.0.set_interests(caller, req).await?)
    }

    async fn watch_batch(&self, caller: &Principal, req: WatchBatch) -> ApiResult<WatchAccepted> {
        Ok(self.0.watch_batch(caller, req).await?)
    }

    async fn follow(&self, caller: &Principal, user_id: &str, on: bool) -> ApiResult<FollowState> {
        Ok(self.0.follow(caller, user_id, on).await?)
    }

    async fn search_videos(&self, query: SearchQuery) -> ApiResult<Page<Video>> {
        Ok(self.0.search_videos(query).await?)
    }

    async fn hashtag_videos(&self, tag: &str, page: PageQuery) -> ApiResult<Page<Video>> {
        Ok(self.0.hashtag_videos(tag, page).await?)
    }

    async fn like(&self, caller: &Principal, video_id: &str, on: bool) -> ApiResult<LikeState> {
        Ok(self.0.set_like(caller, video_id, on).await?)
    }

    async fn save(&self, caller: &Principal, video_id: &str, on: bool) -> ApiResult<SaveState> {
        Ok(self.0.set_save(caller, video_id, on).await?)
    }

    async fn share(
        &self,
        caller: &Principal,
        video_id: &str,
        req: ShareRequest,
    ) -> ApiResult<ShareAccepted> {
        Ok(self.0.share_video(caller, video_id, req).await?)
    }

    async fn add_comment(
        &self,
        caller: &Principal,
        video_id: &str,
        req: CommentCreate,
    ) -> ApiResult<Comment> {
        Ok(self.0.comment(caller, video_id, req).await?)
    }

    async fn comments(
        &self,
        caller: Option<&Principal>,
        video_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Comment>> {
        Ok(self
            .0
            .list_comments(caller, Some(video_id), None, page)
            .await?)
    }

    async fn replies(
        &self,
        caller: Option<&Principal>,
        comment_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Comment>> {
        Ok(self
            .0
            .list_comments(caller, None, Some(comment_id), page)
            .await?)
    }

    async fn follows(
        &self,
        user_id: &str,
        followers: bool,
        page: PageQuery,
    ) -> ApiResult<Page<FollowEntry>> {
        Ok(self.0.follow_list(user_id, followers, page).await?)
    }

    async fn trending_hashtags(&self, limit: u32) -> ApiResult<Vec<TrendingHashtag>> {
        Ok(self.0.trending_tags(limit)?)
    }

    async fn video_analytics(
        &self,
        caller: &Principal,
        video_id: &str,
        query: PeriodQuery,
    ) -> ApiResult<VideoAnalytics> {
        Ok(self.0.analytics_of_video(caller, video_id, query).await?)
    }

    async fn creator_overview(
        &self,
        caller: &Principal,
        creator_id: &str,
        query: PeriodQuery,
    ) -> ApiResult<CreatorOverview> {
        Ok(self.0.creator_summary(caller, creator_id, query).await?)
    }

    async fn inventory(&self) -> ApiResult<serde_json::Value> {
        // An impossible configured backend is part of the answer, not a 500.
        let placement = match self
            .config
            .transcode
            .backend
            .parse::<hardware::BackendRequest>()
            .and_then(|r| self.inventory.place(r))
        {
            Ok(p) => serde_json::json!(p),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let utilisation: Vec<_> = self
            .inventory
            .gpus
            .iter()
            .map(|g| {
                g.pci_bus_id
                    .as_deref()
                    .and_then(|pci| hardware::nvidia::nvml::get().ok()?.utilisation(pci))
            })
            .collect();
        Ok(serde_json::json!({
            "hardware": self.inventory,
            "stages": self.inventory.stage_report(),
            "load": self.inventory.load(),
            "utilisation": utilisation,
            "gpuFallbacks": media::gpu_fallbacks(),
            "placement": placement,
            "workers": crate::jobs::worker_count(&self.config, &self.inventory),
            "objects": self.objects.describe(),
        }))
    }

    async fn jobs(&self, limit: u32) -> ApiResult<Vec<Job>> {
        let rows = self
            .catalog
            .call(move |c| cat::recent_jobs(c, limit))
            .await?;
        Ok(rows
            .into_iter()
            .map(|j| Job {
                id: j.id,
                video_id: j.video_id,
                state: j.state,
                attempts: j.attempts,
                max_attempts: j.max_attempts,
                last_error: j.last_error,
                lease_owner: j.lease_owner,
                lease_expires: j.lease_expires.map(rfc3339),
                run_after: rfc3339(j.run_after),
                created_at: rfc3339(j.created_at),
                updated_at: rfc3339(j.updated_at),
            })
            .collect())
    }

    async fn reprocess(&self, video_id: &str) -> ApiResult<Accepted> {
        let (id, max) = (video_id.to_owned(), self.config.jobs.max_attempts);
        let ok = self
            .catalog
            .call(move |c| cat::requeue_video(c, &id, max))
            .await?;
        if !ok {
            return Err(ApiError::conflict(
                "only a ready or failed video can be reprocessed",
            ));
        }
        // The old ladder is not served while the video is `processing`; the
        // worker replaces it before publishing, and it is embedded again.
        self.feed.forget_video(video_id);
        self.work_ready.notify_one();
        Ok(Accepted {
            video_id: video_id.to_owned(),
            status: VideoState::Processing,
        })
    }

    async fn readiness(&self) -> Health {
        let mut problems = Vec::new();
        if let Err(e) = self
            .catalog
            .call(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(Error::catalog("probing"))
            })
            .await
        {
            problems.push(format!("catalog: {e}"));
        }
        if let Err(e) = self.objects.head("readiness-probe").await {
            problems.push(format!("object store: {e}"));
        }
        // Degraded, not down: events wait in the spool, counters and limits
        // carry on in process.
        if let Err(e) = self.engagement.analytics.ping().await {
            problems.push(format!(
                "analytics store: {e} ({} events waiting in the spool)",
                self.engagement.spool_depth()
            ));
        }
        if let Err(e) = self.engagement.hot.ping().await {
            problems.push(format!("hot store: {e} (running on in-process state)"));
        }
        Health {
            status: if problems.is_empty() {
                "ready"
            } else {
                "degraded"
            }
            .into(),
            problems,
        }
    }

    async fn metrics(&self) -> String {
        crate::jobs::render_metrics(self).await
    }
}

fn mime_for(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("ts") => "video/mp2t",
        Some("avi") => "video/x-msvideo",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = cursor_encode(1234, "abc");
        assert_eq!(cursor_decode(&c).unwrap(), (1234, "abc".to_owned()));
        for bad in ["zz", "", &hex::encode("nocolon"), &hex::encode("1:../x")] {
            assert!(cursor_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_is_validated_and_normalised() {
        let meta = validate_meta(VideoMeta {
            title: "  Hi  ".into(),
            hashtags: vec!["#Cats".into(), "cats".into(), "dogs_2".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(meta.title, "Hi");
        assert_eq!(meta.hashtags, vec!["cats", "dogs_2"]);
        for bad in [
            VideoMeta {
                title: " ".into(),
                ..Default::default()
            },
            VideoMeta {
                title: "x".into(),
                hashtags: vec!["no spaces".into()],
                ..Default::default()
            },
            VideoMeta {
                title: "x".into(),
                sound_id: Some(String::new()),
                ..Default::default()
            },
        ] {
            assert!(validate_meta(bad).is_err());
        }
        assert!(validate_username("ann").is_ok());
        assert!(validate_username("a/b").is_err());
        assert!(validate_username("ab").is_err());
    }
}
