//! tus uploads (the protocol is `api::routes::tus`): upload sessions of
//! the chunked API whose bytes arrive as a stream at an offset instead of
//! as numbered chunks, so that completing one is the chunked API's
//! `complete` (same assembly, probe, video row and job, same idempotency).
//!
//! Storage: the bytes land in the session's chunk objects
//! (`uploads/<id>/<n>`, the configured chunk size). A chunk that is not
//! whole yet is rewritten whole (its stored prefix, then what arrived) at
//! the end of each `PATCH`, and its `upload_chunks` row carries its current
//! size and digest. A row is written only once its object is durable, so
//! the rows are the acknowledged offset: whole chunks from 0, then at most
//! one partial chunk. An object may hold more than its row says (a crash
//! between the two); only the row's bytes count. Without `Upload-Checksum`
//! each chunk is recorded as soon as it is whole and a body that breaks off
//! keeps what arrived; with one, nothing is recorded until the whole body
//! has matched.

use std::collections::HashSet;
use std::sync::Mutex;

use api::tus::{Body, Checksum, Creation, TusUpload};
use api::wire::{Principal, UploadInit, VideoMeta};
use api::{ApiError, ErrorCode};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::uploads::{mime_for, validate_meta};
use super::Videos;
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, rfc3339, ChunkRow, TusRow, UploadRow};
use crate::store::{objects, sha256_hex};

impl Videos {
    pub(super) async fn tus_new(&self, caller: &Principal, req: Creation) -> Result<TusUpload> {
        // The metadata is checked now, not when the last byte arrives.
        let meta = validate_meta(req.meta)?;
        self.check_sound(&meta).await?;
        let mime_type = req
            .mime_type
            .unwrap_or_else(|| mime_for(&req.filename).to_owned());
        let init = UploadInit {
            filename: req.filename,
            file_size: req.length,
            mime_type,
        };
        let u = self
            .upload_row(caller, init, self.config.uploads.chunk_size)
            .await?;
        let tus = TusRow {
            meta: meta_json(&meta),
            metadata: req.metadata,
        };
        let (row, t) = (u.clone(), tus.clone());
        self.catalog
            .call(move |c| cat::insert_tus_upload(c, &row, &t))
            .await?;
        Ok(wire(&u, &tus, 0))
    }

    /// Where an upload stands: 410 once expired, 404 once terminated (and
    /// for a session of the chunked API, which has no tus URL).
    pub(super) async fn tus_status(&self, caller: &Principal, id: &str) -> Result<TusUpload> {
        let (u, chunks, tus) = self.tus_of(caller, id).await?;
        if u.status == "completed" {
            return Ok(wire(&u, &tus, u.file_size));
        }
        self.ensure_open(&u).await?;
        Ok(wire(&u, &tus, received(&u, &chunks)))
    }

    async fn tus_of(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(UploadRow, Vec<ChunkRow>, TusRow)> {
        let (u, chunks) = self.upload_of(caller, id).await?;
        let uid = u.id.clone();
        let tus = self
            .catalog
            .call(move |c| cat::tus_upload(c, &uid))
            .await?
            .ok_or_else(|| ApiError::not_found("tus upload"))?;
        Ok((u, chunks, tus))
    }

    pub(super) async fn tus_append(
        &self,
        caller: &Principal,
        id: &str,
        offset: u64,
        declared: Option<u64>,
        checksum: Option<Checksum>,
        body: Body,
    ) -> Result<TusUpload> {
        // Who may write is settled before the claim, so a stranger learns
        // nothing from a 409.
        self.tus_of(caller, id).await?;
        let _writing = Claim::take(&self.tus_writing, id)?;
        // Read under the claim: a PATCH that just ended may have moved the
        // offset, or completed the upload.
        let (u, chunks, tus) = self.tus_of(caller, id).await?;
        if u.status == "completed" {
            // A retried last PATCH: its bytes are all here and the
            // transcode is queued; nothing changes.
            if offset == u.file_size && declared.unwrap_or(0) == 0 {
                return Ok(wire(&u, &tus, u.file_size));
            }
            return Err(offset_conflict(offset, u.file_size));
        }
        self.ensure_open(&u).await?;
        let at = received(&u, &chunks);
        if offset != at {
            return Err(offset_conflict(offset, at));
        }
        let left = u.file_size - at;
        if declared.is_some_and(|d| d > left) {
            return Err(past_the_end(left).into());
        }
        if left > 0 {
            let written = self.tus_take(&u, &chunks, at, checksum, body).await?;
            if written < left {
                return Ok(wire(&u, &tus, at + written));
            }
        }
        // Every byte is in: the transcode is queued as `complete` queues it
        // (the claim keeps a second PATCH from racing this one).
        let meta: VideoMeta = serde_json::from_str(&tus.meta)
            .map_err(|e| Error::Task(format!("tus upload {id}: stored metadata: {e}")))?;
        self.complete(caller, &u.id, meta).await?;
        let mut done = wire(&u, &tus, u.file_size);
        done.completed = true;
        Ok(done)
    }

    /// Streams `body` into the chunks from offset `at` and records them;
    /// returns how many bytes were kept. A body longer than what is left
    /// keeps what fits and is a 413; one that breaks off keeps what arrived
    /// (tus clients resume from the offset the answer or a `HEAD` gives).
    async fn tus_take(
        &self,
        u: &UploadRow,
        chunks: &[ChunkRow],
        at: u64,
        checksum: Option<Checksum>,
        mut body: Body,
    ) -> Result<u64> {
        let left = u.file_size - at;
        let (mut n, mut buf) = self.tus_prefix(u, chunks, at).await?;
        // Bytes of `buf` its object already holds (the stored prefix).
        let mut stored = buf.len();
        let mut digest = checksum.as_ref().map(Checksum::start);
        let mut pending: Vec<ChunkRow> = Vec::new();
        let mut taken = 0u64;
        let mut overflow = false;
        let mut broke = None;
        while let Some(item) = body.next().await {
            let mut bytes = match item {
                Ok(b) => b,
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            };
            let room = left - taken;
            if bytes.len() as u64 > room {
                bytes.truncate(room as usize);
                overflow = true;
            }
            if let Some(d) = digest.as_mut() {
                d.update(&bytes);
            }
            taken += bytes.len() as u64;
            buf.extend_from_slice(&bytes);
            // A chunk is stored as soon as it is whole, so memory holds one.
            loop {
                let want = chunk_len(u, n);
                if want == 0 || (buf.len() as u64) < want {
                    break;
                }
                let whole = buf.split_to(want as usize).freeze();
                pending.push(self.tus_store(u, n, whole).await?);
                n += 1;
                stored = 0;
                if checksum.is_none() {
                    self.tus_record(u, std::mem::take(&mut pending)).await?;
                }
            }
            if overflow {
                break;
            }
        }
        if let Some(want) = checksum {
            if let Some(e) = &broke {
                return Err(ApiError::validation(format!(
                    "the body broke off ({e}) before Upload-Checksum could be checked; none of it was kept"
                ))
                .into());
            }
            if !digest.is_some_and(|d| d.matches(&want)) {
                return Err(ApiError::new(
                    ErrorCode::ChecksumMismatch,
                    "the body does not match Upload-Checksum; none of it was kept",
                )
                .into());
            }
        }
        if buf.len() > stored {
            pending.push(self.tus_store(u, n, buf.freeze()).await?);
        }
        self.tus_record(u, pending).await?;
        if let Some(e) = broke {
            tracing::info!(
                upload = %u.id,
                kept = taken,
                "a tus PATCH body broke off ({e}); the client resumes at {}",
                at + taken
            );
        }
        if overflow {
            return Err(past_the_end(left).into());
        }
        Ok(taken)
    }

    /// The chunk offset `at` falls in and the bytes of it already stored,
    /// checked against the row that acknowledged them.
    async fn tus_prefix(
        &self,
        u: &UploadRow,
        chunks: &[ChunkRow],
        at: u64,
    ) -> Result<(u32, BytesMut)> {
        let n = u32::try_from(at / u.chunk_size)
            .map_err(|_| Error::Task(format!("upload {}: offset {at} out of range", u.id)))?;
        let k = at - u64::from(n) * u.chunk_size;
        // Grows as bytes arrive; a chunk may be up to 256 MiB.
        let mut buf = BytesMut::with_capacity(chunk_len(u, n).min(1 << 20) as usize);
        if k > 0 {
            let prefix = self
                .objects
                .get_range(&objects::chunk_key(&u.id, n), 0..k)
                .await?;
            let row = chunks.iter().find(|c| c.n == n);
            if prefix.len() as u64 != k || row.is_none_or(|r| r.sha256 != sha256_hex(&prefix)) {
                return Err(Error::Task(format!(
                    "upload {}: chunk {n} does not hold the {k} bytes its row acknowledged",
                    u.id
                )));
            }
            buf.extend_from_slice(&prefix);
        }
        Ok((n, buf))
    }

    /// Stores chunk `n` (whole or not yet) durably; its row comes after.
    async fn tus_store(&self, u: &UploadRow, n: u32, bytes: Bytes) -> Result<ChunkRow> {
        let row = ChunkRow {
            n,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        self.objects
            .put(&objects::chunk_key(&u.id, n), bytes)
            .await?;
        Ok(row)
    }

    /// Acknowledges stored chunks: the offset moves once, to their end.
    async fn tus_record(&self, u: &UploadRow, rows: Vec<ChunkRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let id = u.id.clone();
        self.catalog
            .call(move |c| cat::record_chunks(c, &id, &rows))
            .await
    }
}

/// One `PATCH` at a time per upload: the chunk being filled is rewritten
/// from its stored prefix, so two writers would overwrite each other.
struct Claim<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl<'a> Claim<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, id: &str) -> Result<Self> {
        let mut busy = set.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(id.to_owned()) {
            return Err(ApiError::conflict(
                "another PATCH to this upload is still running; retry after a HEAD",
            )
            .into());
        }
        Ok(Self {
            set,
            id: id.to_owned(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The size chunk `n` has when whole (0 past the end).
fn chunk_len(u: &UploadRow, n: u32) -> u64 {
    api::chunks::expected_size(u.file_size, u.chunk_size, u.total_chunks, n).unwrap_or(0)
}

/// The acknowledged offset: the rows' chunks in order from 0, each whole
/// one adding its size, up to and including the first partial one.
fn received(u: &UploadRow, chunks: &[ChunkRow]) -> u64 {
    let mut at = 0;
    for (n, c) in (0u32..).zip(chunks) {
        if c.n != n {
            break;
        }
        at += c.size;
        if c.size != chunk_len(u, n) {
            break;
        }
    }
    at
}

fn offset_conflict(sent: u64, at: u64) -> Error {
    ApiError::conflict(format!(
        "Upload-Offset {sent} is not the upload's offset {at}: HEAD it and resume from there"
    ))
    .with_details(serde_json::json!({ "field": "Upload-Offset", "offset": at }))
    .into()
}

fn past_the_end(left: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body goes past Upload-Length: {left} bytes were left"),
    )
}

fn meta_json(meta: &VideoMeta) -> String {
    serde_json::json!({
        "title": meta.title,
        "description": meta.description,
        "hashtags": meta.hashtags,
        "soundId": meta.sound_id,
        "visibility": meta.visibility.as_str(),
        "duetEnabled": meta.duet_enabled,
        "stitchEnabled": meta.stitch_enabled,
        "speed": meta.speed,
    })
    .to_string()
}

fn wire(u: &UploadRow, tus: &TusRow, offset: u64) -> TusUpload {
    TusUpload {
        upload_id: u.id.clone(),
        video_id: u.video_id.clone(),
        offset,
        length: u.file_size,
        expires_at: rfc3339(u.expires_at),
        completed: u.status == "completed",
        expires_at_ms: u.expires_at,
        metadata: tus.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(size: u64, chunk: u64) -> UploadRow {
        UploadRow {
            id: "u".into(),
            owner_id: "o".into(),
            video_id: "v".into(),
            filename: "f.mp4".into(),
            file_size: size,
            mime_type: "video/mp4".into(),
            chunk_size: chunk,
            total_chunks: api::chunks::total(size, chunk).unwrap(),
            status: "open".into(),
            created_at: 0,
            expires_at: 0,
        }
    }

    fn row(n: u32, size: u64) -> ChunkRow {
        ChunkRow {
            n,
            size,
            sha256: String::new(),
        }
    }

    #[test]
    fn the_offset_is_the_contiguous_run_of_chunks_from_zero() {
        let u = upload(10, 4);
        assert_eq!(received(&u, &[]), 0);
        assert_eq!(received(&u, &[row(0, 3)]), 3);
        assert_eq!(received(&u, &[row(0, 4), row(1, 1)]), 5);
        assert_eq!(received(&u, &[row(0, 4), row(1, 4), row(2, 2)]), 10);
        // A partial chunk ends the run, whatever follows it; so does a gap
        // (a chunk PUT through the chunked API out of order).
        assert_eq!(received(&u, &[row(0, 2), row(1, 4)]), 2);
        assert_eq!(received(&u, &[row(0, 4), row(2, 4)]), 4);
        assert_eq!(received(&u, &[row(1, 4)]), 0);
    }

    #[test]
    fn stored_metadata_reads_back_as_what_complete_takes() {
        let meta = VideoMeta {
            title: "t".into(),
            description: "d".into(),
            hashtags: vec!["a".into()],
            sound_id: Some("s".into()),
            visibility: api::wire::Visibility::Private,
            duet_enabled: Some(false),
            stitch_enabled: None,
            speed: Some(2.0),
        };
        let back: VideoMeta = serde_json::from_str(&meta_json(&meta)).unwrap();
        assert_eq!(back.title, "t");
        assert_eq!(back.hashtags, ["a"]);
        assert_eq!(back.sound_id.as_deref(), Some("s"));
        assert_eq!(back.visibility, api::wire::Visibility::Private);
        assert_eq!(back.duet_enabled, Some(false));
        assert_eq!(back.stitch_enabled, None);
        assert_eq!(back.speed, Some(2.0));
        let none = VideoMeta {
            title: "t".into(),
            ..Default::default()
        };
        let back: VideoMeta = serde_json::from_str(&meta_json(&none)).unwrap();
        assert_eq!(back.sound_id, None);
    }
}
