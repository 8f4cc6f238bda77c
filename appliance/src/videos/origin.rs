//! What the HLS origin serves: a published, non-private video's ladder
//! files, looked up through the catalog's read pool (a long write never
//! holds up a CDN fill) and read from the object store. The HTTP semantics
//! (cache policy, validators, ranges) are `api::routes::origin`'s.

use std::ops::Range;

use api::service::{OriginLookup, OriginMeta};
use api::ApiResult;
use bytes::Bytes;

use super::Videos;
use crate::store::catalog as cat;
use crate::store::objects;

impl api::Origin for Videos {
    async fn origin_lookup(&self, video_id: &str, path: &str) -> ApiResult<OriginLookup> {
        let vid = video_id.to_owned();
        let row = self.catalog.read(move |c| cat::video(c, &vid)).await?;
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
                body: None,
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
}
