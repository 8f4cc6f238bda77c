//! Uploads: resumable sessions (init → chunks in any order → complete)
//! and single-shot uploads (a one-chunk session underneath). Completing
//! assembles the chunks, probes the file (so a refused input is refused
//! now, with its reason), then inserts the video and its job in one
//! transaction.

use std::collections::HashSet;
use std::time::Duration;

use api::tus::TusUpload;
use api::wire::*;
use api::{ApiError, ApiResult, ErrorCode};
use bytes::Bytes;

use super::Videos;
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339, UploadRow, VideoRow};
use crate::store::{new_id, objects, sha256_hex};

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

impl Videos {
    pub(super) async fn upload_of(
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
            // Not 403: whether someone else's upload exists is itself
            // private.
            Some(_) | None => Err(ApiError::not_found("upload").into()),
        }
    }

    /// Refuses writes to a session that is no longer open.
    pub(super) async fn ensure_open(&self, u: &UploadRow) -> Result<()> {
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
        // A chunk a tus upload is still filling has a row of its own size;
        // it is not received until it is whole.
        let received: Vec<u32> = chunks
            .iter()
            .filter(|c| {
                api::chunks::expected_size(u.file_size, u.chunk_size, u.total_chunks, c.n)
                    .is_ok_and(|want| want == c.size)
            })
            .map(|c| c.n)
            .collect();
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
        let row = self.upload_row(caller, req, chunk_size).await?;
        let r = row.clone();
        self.catalog
            .call(move |c| cat::insert_upload(c, &r))
            .await?;
        Ok(row)
    }

    /// A new session's row, once the request passes the upload rules and
    /// the caller's hourly quota (not stored yet).
    pub(super) async fn upload_row(
        &self,
        caller: &Principal,
        req: UploadInit,
        chunk_size: u64,
    ) -> Result<UploadRow> {
        // Limits count characters as sent, as the API schema states them.
        let name = req.filename.trim();
        if name.is_empty() || req.filename.chars().count() > 255 || name.contains(['/', '\\', '\0'])
        {
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
        self.engagement
            .limit(
                "uploads",
                &caller.user_id,
                self.config.limits.uploads_per_hour,
                Duration::from_secs(3600),
            )
            .await?;
        let now = now_ms();
        let total = api::chunks::total(req.file_size, chunk_size)
            .ok_or_else(|| ApiError::validation("too many chunks"))?;
        Ok(UploadRow {
            id: new_id(),
            owner_id: caller.user_id.clone(),
            video_id: new_id(),
            filename: name.to_owned(),
            file_size: req.file_size,
            mime_type: mime,
            chunk_size,
            total_chunks: total,
            status: "open".into(),
            created_at: now,
            expires_at: now + (self.config.uploads.session_ttl_secs as i64) * 1000,
        })
    }

    async fn store_chunk(
        &self,
        u: &UploadRow,
        n: u32,
        body: Bytes,
        digest: Option<String>,
    ) -> Result<ChunkReceipt> {
        let expected = api::chunks::expected_size(u.file_size, u.chunk_size, u.total_chunks, n)?;
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

    pub(super) async fn complete(
        &self,
        caller: &Principal,
        upload_id: &str,
        meta: VideoMeta,
    ) -> Result<Accepted> {
        self.complete_with(caller, upload_id, meta, None).await
    }

    /// [`complete`](Self::complete), the video linked to the original it
    /// remixes when `remix` says so (`super::remix`).
    pub(super) async fn complete_with(
        &self,
        caller: &Principal,
        upload_id: &str,
        meta: VideoMeta,
        remix: Option<super::remix::RemixLink>,
    ) -> Result<Accepted> {
        let meta = validate_meta(meta)?;
        self.check_sound(&meta).await?;
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
        let result = self.assemble_and_queue(&u, meta, remix).await;
        self.completing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&u.id);
        result
    }

    async fn assemble_and_queue(
        &self,
        u: &UploadRow,
        meta: VideoMeta,
        remix: Option<super::remix::RemixLink>,
    ) -> Result<Accepted> {
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
            duet_enabled: meta.duet_enabled.unwrap_or(true),
            stitch_enabled: meta.stitch_enabled.unwrap_or(true),
            remix_of: remix.as_ref().map(|r| r.original_id.clone()),
            remix: remix.map(|r| r.json),
            speed: meta.speed.unwrap_or(1.0),
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
}

impl api::Uploads for Videos {
    async fn init_upload(&self, caller: &Principal, req: UploadInit) -> ApiResult<UploadSession> {
        let u = self
            .new_upload(caller, req, self.config.uploads.chunk_size)
            .await?;
        Ok(Self::session_wire(&u, &[]))
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
        Ok(Self::session_wire(&u, &chunks))
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

    // tus 1.0: `super::tus`.
    fn tus_max_size(&self) -> u64 {
        self.config.uploads.max_file_size
    }

    async fn tus_create(
        &self,
        caller: &Principal,
        req: api::tus::Creation,
    ) -> ApiResult<TusUpload> {
        Ok(self.tus_new(caller, req).await?)
    }

    async fn tus_state(&self, caller: &Principal, upload_id: &str) -> ApiResult<TusUpload> {
        Ok(self.tus_status(caller, upload_id).await?)
    }

    async fn tus_write(
        &self,
        caller: &Principal,
        upload_id: &str,
        offset: u64,
        declared: Option<u64>,
        checksum: Option<api::tus::Checksum>,
        body: api::tus::Body,
    ) -> ApiResult<TusUpload> {
        Ok(self
            .tus_append(caller, upload_id, offset, declared, checksum, body)
            .await?)
    }

    async fn tus_terminate(&self, caller: &Principal, upload_id: &str) -> ApiResult<()> {
        self.tus_status(caller, upload_id).await?;
        self.cancel_upload(caller, upload_id).await
    }
}

pub(super) fn upload_expired(u: &UploadRow) -> ApiError {
    ApiError::new(
        ErrorCode::UploadExpired,
        format!("upload {} expired at {}", u.id, rfc3339(u.expires_at)),
    )
}

impl Videos {
    /// A `soundId` names a sound of the library (`GET /sounds/{id}`); a
    /// video's own audio becomes one when it names none.
    pub(super) async fn check_sound(&self, meta: &VideoMeta) -> Result<()> {
        let Some(id) = meta.sound_id.clone() else {
            return Ok(());
        };
        let shown = id.clone();
        if self
            .catalog
            .read(move |c| cat::sound_exists(c, &id))
            .await?
        {
            return Ok(());
        }
        Err(ApiError::validation(format!(
            "soundId `{shown}` names no sound: reuse one from the sounds library, or leave soundId out and the video's own audio becomes its sound"
        ))
        .with_details(serde_json::json!({ "field": "soundId" }))
        .into())
    }
}

pub(super) fn validate_meta(mut meta: VideoMeta) -> Result<VideoMeta> {
    let field = |f: &str, m: &str| -> Error {
        ApiError::validation(m.to_owned())
            .with_details(serde_json::json!({ "field": f }))
            .into()
    };
    // Lengths as sent (what the API schema states); blankness after trimming.
    let long = meta.title.chars().count() > 150;
    meta.title = meta.title.trim().to_owned();
    if meta.title.is_empty() || long {
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
        .is_some_and(|s| s.is_empty() || s.chars().count() > 64)
    {
        return Err(field("soundId", "soundId must be 1–64 characters"));
    }
    if meta
        .speed
        .is_some_and(|s| !media::edit::speed::is_allowed(s))
    {
        return Err(field("speed", "speed must be 0.5, 1, 2 or 3"));
    }
    Ok(meta)
}

pub(super) fn mime_for(filename: &str) -> &'static str {
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
            VideoMeta {
                title: "x".into(),
                speed: Some(1.5),
                ..Default::default()
            },
        ] {
            assert!(validate_meta(bad).is_err());
        }
    }
}
