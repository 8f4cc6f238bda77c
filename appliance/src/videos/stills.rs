//! Stills at any time (`/thumbs/{id}/still.jpg?t=`, as Cloudflare Stream
//! offers): the picture on screen at `t`, decoded from the one segment of
//! the top rung that shows it and encoded as a JPEG by `media::still`.
//!
//! Everything is read through the origin's own lookups, so a still is
//! served exactly when the ladder is (ready and not private) and the
//! playlists come from the origin's cache. A rendered still is kept as an
//! object under the video's prefix (`videos/<id>/stills/<ms>.jpg`, `t`
//! rounded to a tenth of a second), so deleting the video deletes its
//! stills; a kept still older than the top rung's playlist (a reprocess, or
//! a better rung added to a growing ladder) is rendered again.

use api::service::{Origin, OriginLookup, OriginMeta};
use api::{ApiError, ApiResult};
use bytes::Bytes;
use media::ladder::{resolve, Master, MediaPlaylist};
use object_store::ObjectMeta;

use super::Videos;
use crate::store::objects;

/// Stills are kept per tenth of a second: a scrubbing viewer asks for
/// arbitrary times, and nearer than that is the same picture at 10 fps.
const QUANTUM_MS: u64 = 100;

/// Where the still at `t_ms` (already rounded) is kept.
pub fn still_key(video_id: &str, t_ms: u64) -> String {
    format!("{}/stills/{t_ms}.jpg", objects::video_prefix(video_id))
}

/// `t_ms` rounded to the nearest tenth of a second, but never past the end
/// (`duration_ms`), so the last picture has a still of its own.
fn quantise(t_ms: u64, duration_ms: u64) -> u64 {
    let nearest = (t_ms + QUANTUM_MS / 2) / QUANTUM_MS * QUANTUM_MS;
    if nearest > duration_ms {
        t_ms / QUANTUM_MS * QUANTUM_MS
    } else {
        nearest
    }
}

/// A ladder file through the origin (same gate, same cache): its
/// description and whole body, or what the origin answered instead
/// (missing, private).
async fn ladder_file(
    v: &Videos,
    video_id: &str,
    path: &str,
) -> ApiResult<Result<(OriginMeta, Bytes), OriginLookup>> {
    let meta = match v.origin_lookup(video_id, path).await? {
        OriginLookup::Found(meta) => meta,
        other @ (OriginLookup::Missing | OriginLookup::Private | OriginLookup::NotYet) => {
            return Ok(Err(other))
        }
    };
    let body = match &meta.body {
        Some(b) => b.clone(),
        None => v.origin_read(video_id, path, 0..meta.size).await?,
    };
    Ok(Ok((meta, body)))
}

fn text(path: &str, bytes: &[u8]) -> ApiResult<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::internal(format!("{path} is not UTF-8")))
}

fn meta_of(head: &ObjectMeta, body: Bytes) -> OriginMeta {
    OriginMeta {
        body: Some(body),
        ..super::origin::meta_of(head)
    }
}

impl api::service::Stills for Videos {
    async fn still(&self, video_id: &str, t_ms: u64) -> ApiResult<OriginLookup> {
        // The master names the top rung; its lookup is the origin's gate.
        let (_, master) = match ladder_file(self, video_id, "master.m3u8").await? {
            Ok(found) => found,
            Err(refusal) => return Ok(refusal),
        };
        let bad =
            |what: &str, e: String| ApiError::internal(format!("video {video_id}: {what}: {e}"));
        let master =
            Master::parse(&text("master.m3u8", &master)?).map_err(|e| bad("master.m3u8", e))?;
        let playlist_path = resolve("master.m3u8", &master.top().uri)
            .ok_or_else(|| bad("master.m3u8", format!("bad URI {}", master.top().uri)))?;
        let (playlist_meta, playlist) = match ladder_file(self, video_id, &playlist_path).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(refusal),
        };
        let playlist = MediaPlaylist::parse(&text(&playlist_path, &playlist)?)
            .map_err(|e| bad(&playlist_path, e))?;
        let duration = playlist.duration();
        let duration_ms = (duration * 1000.0).round() as u64;
        if t_ms > duration_ms {
            return Err(ApiError::validation(format!(
                "`t` must be between 0 and {duration:.3} seconds (the video's duration)"
            ))
            .with_details(serde_json::json!({ "field": "t", "max": duration })));
        }
        let t_ms = quantise(t_ms, duration_ms);
        let key = still_key(video_id, t_ms);
        if let Some(head) = self.objects.head(&key).await? {
            let kept: std::time::SystemTime = head.last_modified.into();
            if kept >= playlist_meta.last_modified {
                let body = self.objects.get_range(&key, 0..head.size).await?;
                return Ok(OriginLookup::Found(meta_of(&head, body)));
            }
        }

        let t = t_ms as f64 / 1000.0;
        let segment = playlist
            .segment_at(t)
            .cloned()
            .ok_or_else(|| bad(&playlist_path, format!("no segment at {t} s")))?;
        let file = |uri: &str| {
            resolve(&playlist_path, uri)
                .ok_or_else(|| bad(&playlist_path, format!("bad URI {uri}")))
        };
        let segment_path = file(&segment.uri)?;
        let (_, init) = match ladder_file(self, video_id, &file(&playlist.init)?).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(refusal),
        };
        let (_, seg) = match ladder_file(self, video_id, &segment_path).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(refusal),
        };
        let name = format!("{}/{segment_path}", objects::ladder_prefix(video_id));
        let started = std::time::Instant::now();
        let jpeg = tokio::task::spawn_blocking(move || {
            media::still::still_jpeg(&init, &seg, segment.start, t, &name)
        })
        .await
        .map_err(|e| ApiError::internal(format!("still renderer: {e}")))?
        .map_err(crate::error::Error::from)?;
        tracing::debug!(
            video = video_id,
            t,
            ms = started.elapsed().as_millis() as u64,
            "still rendered"
        );
        let body = Bytes::from(jpeg);
        self.objects.put(&key, body.clone()).await?;
        let Some(head) = self.objects.head(&key).await? else {
            return Err(ApiError::internal(format!("{key} vanished after writing")));
        };
        Ok(OriginLookup::Found(meta_of(&head, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_to_tenths_but_not_past_the_end() {
        assert_eq!(quantise(0, 9960), 0);
        assert_eq!(quantise(3049, 9960), 3000);
        assert_eq!(quantise(3050, 9960), 3100);
        assert_eq!(quantise(9949, 9960), 9900);
        assert_eq!(quantise(9960, 9960), 9900);
        assert_eq!(quantise(10_000, 10_000), 10_000);
        assert_eq!(still_key("v1", 3000), "videos/v1/stills/3000.jpg");
    }
}
