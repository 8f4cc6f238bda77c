//! A live channel's files as the origin sees them: read from the channel's
//! directory, where the ladder writes each file aside and renames it into
//! place, so a read sees a whole file. The path was checked against the
//! origin's grammar (`api::origin::classify`) before it gets here.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::time::UNIX_EPOCH;

use api::{ApiError, ApiResult, OriginLookup, OriginMeta};
use bytes::Bytes;

/// The file's size, time and validator; `Missing` when the channel does not
/// exist, `NotYet` when it does but has not written this file.
pub async fn lookup(dir: &Path, path: &str) -> ApiResult<OriginLookup> {
    let dir = dir.to_owned();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        if !dir.is_dir() {
            return Ok(OriginLookup::Missing);
        }
        // Playlists are replaced (renamed over) at every segment: read in
        // full from the handle their size and time come from, so the
        // answer is one version whole.
        let playlist = path.ends_with(".m3u8");
        let file = dir.join(&path);
        let opened = std::fs::File::open(&file).and_then(|mut f| {
            let m = f.metadata()?;
            let body = if playlist && m.is_file() {
                let mut buf = Vec::with_capacity(m.len() as usize);
                f.read_to_end(&mut buf)?;
                Some(Bytes::from(buf))
            } else {
                None
            };
            Ok((m, body))
        });
        match opened {
            Ok((m, body)) if m.is_file() => {
                let modified = m.modified().unwrap_or(UNIX_EPOCH);
                let nanos = modified
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let size = body.as_ref().map_or(m.len(), |b| b.len() as u64);
                Ok(OriginLookup::Found(OriginMeta {
                    size,
                    last_modified: modified,
                    etag: format!("{size:x}-{nanos:x}"),
                    body,
                    changing: false,
                }))
            }
            Ok(_) => Ok(OriginLookup::NotYet),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OriginLookup::NotYet),
            Err(e) => Err(ApiError::internal(format!("reading {path}: {e}"))),
        }
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn read(dir: &Path, path: &str, range: Range<u64>) -> ApiResult<Bytes> {
    let file = dir.join(path);
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&file)
            .map_err(|e| ApiError::internal(format!("opening {}: {e}", file.display())))?;
        f.seek(SeekFrom::Start(range.start))
            .map_err(|e| ApiError::internal(format!("seeking {}: {e}", file.display())))?;
        let mut buf = Vec::with_capacity((range.end - range.start) as usize);
        f.take(range.end - range.start)
            .read_to_end(&mut buf)
            .map_err(|e| ApiError::internal(format!("reading {}: {e}", file.display())))?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(ApiError::internal)?
}
