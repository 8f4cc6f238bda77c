//! What the HLS origin serves: a published, non-private video's ladder
//! files (a private one's only to a checked playback token, `playback`).
//! The first pull of a video asks the catalog (through its read
//! pool, so a long write never holds up a CDN fill) and the object store;
//! later pulls are answered from `origin_cache`, small files with their
//! bytes. The HTTP semantics (cache policy, validators, ranges) are
//! `api::routes::origin`'s.

use std::ops::Range;
use std::sync::Arc;

use api::service::{OriginLookup, OriginMeta};
use api::ApiResult;
use bytes::Bytes;

use super::origin_cache::{Held, VideoGate, SMALL_FILE};
use super::Videos;
use crate::store::catalog as cat;
use crate::store::objects;

impl api::Origin for Videos {
    async fn origin_lookup(&self, video_id: &str, path: &str) -> ApiResult<OriginLookup> {
        self.ladder_lookup(video_id, path, false).await
    }

    async fn origin_read(&self, video_id: &str, path: &str, range: Range<u64>) -> ApiResult<Bytes> {
        let key = format!("{}/{path}", objects::ladder_prefix(video_id));
        Ok(self.objects.get_range(&key, range).await?)
    }
}

impl Videos {
    /// A file of a published ladder, through the gate and the cache;
    /// `signed`: asked with a playback token that checked out
    /// (`playback`), so a private video's files are found too.
    pub(super) async fn ladder_lookup(
        &self,
        video_id: &str,
        path: &str,
        signed: bool,
    ) -> ApiResult<OriginLookup> {
        let gate = match self.origin_cache.video(video_id) {
            Some(gate) => gate,
            None => match self.origin_gate(video_id).await? {
                Some(gate) => gate,
                None => return Ok(OriginLookup::Missing),
            },
        };
        if gate.private && !signed {
            return Ok(OriginLookup::Private);
        }
        if let Some(meta) = gate.file(path) {
            return Ok(OriginLookup::Found(meta));
        }
        let key = format!("{}/{path}", objects::ladder_prefix(video_id));
        let Some(head) = self.objects.head(&key).await? else {
            return Ok(OriginLookup::Missing);
        };
        let mut meta = OriginMeta {
            changing: gate.growing && path == media::playlist::MASTER,
            ..meta_of(&head)
        };
        // Small files are kept in memory; larger ones (segments) mapped
        // from the local store, so a pull is a copy into the socket and
        // nothing else; on S3 they are read per request.
        let held = if meta.size <= SMALL_FILE {
            meta.body = Some(self.objects.get_range(&key, 0..meta.size).await?);
            Held::Heap
        } else {
            if self.origin_cache.can_map() {
                meta.body = self
                    .objects
                    .map_local(&key)
                    .await?
                    // Replaced between the head and the mapping: serve
                    // the head's view by reads, as on S3.
                    .filter(|b| b.len() as u64 == meta.size);
            }
            Held::Mapped
        };
        self.origin_cache
            .put_file(video_id, &gate, path, meta.clone(), held);
        Ok(OriginLookup::Found(meta))
    }
}

/// What the origin says of a stored object: its size and validators
/// (nothing read yet, nothing about to change).
pub(super) fn meta_of(head: &object_store::ObjectMeta) -> OriginMeta {
    OriginMeta {
        body: None,
        size: head.size,
        last_modified: head.last_modified.into(),
        // S3 sends its ETag quoted; the origin adds the quotes itself.
        etag: head
            .e_tag
            .as_deref()
            .map(|t| t.trim_start_matches("W/").trim_matches('"').to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{:x}-{:x}",
                    head.size,
                    head.last_modified.timestamp_millis()
                )
            }),
        changing: false,
    }
}

impl Videos {
    /// Whether a video may be served, from the catalog; remembered when it
    /// is `ready` (a video not yet published is asked about again).
    async fn origin_gate(&self, video_id: &str) -> ApiResult<Option<Arc<VideoGate>>> {
        let generation = self.origin_cache.generation();
        let vid = video_id.to_owned();
        let row = self.catalog.read(move |c| cat::video(c, &vid)).await?;
        let Some(v) = row.filter(|v| v.state == "ready") else {
            return Ok(None);
        };
        let private = v.visibility == "private";
        let growing = v.stage == api::wire::GROWING;
        Ok(Some(
            self.origin_cache
                .put_video(video_id, private, growing, generation)
                // A video left `ready` since the read: answer from what was
                // read, remember nothing.
                .unwrap_or_else(|| VideoGate::transient(private, growing)),
        ))
    }
}
