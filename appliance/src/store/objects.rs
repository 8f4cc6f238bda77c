//! Media objects (upload chunks, sources, ladders, posters) behind the
//! `object_store` abstraction: a local directory on the embedded profile, an
//! S3 bucket in production. Key layout:
//!
//! ```text
//! uploads/<uploadId>/<n>           chunks of an open upload session
//! videos/<videoId>/source          the assembled original
//! videos/<videoId>/hls/…           the published ladder (master.m3u8, <rung>/…, poster.jpg)
//! ```
//!
//! Everything of a video lives under its prefix, so deleting a video is
//! deleting one prefix and an orphan is easy to define.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore, PutPayload, WriteMultipart};

use crate::error::{Error, Result};
use settings::{Config, ObjectsKind};

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Set for the local store: files can be used in place (no download
    /// before a transcode) and are fsync'd after writing.
    local: Option<Arc<LocalFileSystem>>,
}

pub fn chunk_key(upload_id: &str, n: u32) -> String {
    format!("uploads/{upload_id}/{n:06}")
}

pub fn upload_prefix(upload_id: &str) -> String {
    format!("uploads/{upload_id}")
}

pub fn source_key(video_id: &str) -> String {
    format!("videos/{video_id}/source")
}

pub fn video_prefix(video_id: &str) -> String {
    format!("videos/{video_id}")
}

pub fn ladder_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/hls")
}

impl Objects {
    pub fn from_config(config: &Config) -> Result<Self> {
        match config.objects.kind {
            ObjectsKind::Local => {
                let dir = config.objects_dir();
                std::fs::create_dir_all(&dir).map_err(Error::io("creating", dir.display()))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(Error::objects("opening", dir.display().to_string()))?
                    .with_automatic_cleanup(true);
                let fs = Arc::new(fs);
                Ok(Self {
                    store: fs.clone(),
                    local: Some(fs),
                })
            }
            ObjectsKind::S3 => {
                let o = &config.objects;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(o.bucket.clone().unwrap_or_default())
                    .with_allow_http(o.allow_http);
                if let Some(region) = &o.region {
                    b = b.with_region(region);
                }
                if let Some(endpoint) = &o.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                let s3 = b.build().map_err(Error::objects(
                    "configuring S3",
                    o.bucket.clone().unwrap_or_default(),
                ))?;
                Ok(Self {
                    store: Arc::new(s3),
                    local: None,
                })
            }
        }
    }

    /// Whether objects are files under the data dir (not S3).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    pub fn describe(&self) -> String {
        self.store.to_string()
    }

    /// Stores `bytes` at `key`; when this returns, the object survives a
    /// crash (object stores are durable on success; local files are
    /// written to a temporary name, renamed, and fsync'd).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let k = Key::from(key);
        self.store
            .put(&k, PutPayload::from(bytes))
            .await
            .map_err(Error::objects("writing", key))?;
        self.sync_local(&k).await
    }

    async fn sync_local(&self, k: &Key) -> Result<()> {
        let Some(fs) = &self.local else {
            return Ok(());
        };
        let path = fs
            .path_to_filesystem(k)
            .map_err(Error::objects("locating", k.to_string()))?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(Error::io("syncing", path.display()))?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|f| f.sync_all())
                    .map_err(Error::io("syncing", dir.display()))?;
            }
            Ok(())
        })
        .await?
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(&Key::from(key)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::objects("reading", key)(e)),
        }
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&Key::from(key), range)
            .await
            .map_err(Error::objects("reading", key))
    }

    /// Keys under `prefix`.
    #[cfg(test)]
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.store
            .list(Some(&Key::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(Error::objects("listing", prefix))
    }

    /// Deletes everything under `prefix`; returns how many objects went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let locations = self
            .store
            .list(Some(&Key::from(prefix)))
            .map_ok(|m| m.location)
            .boxed();
        let deleted: Vec<Key> = self
            .store
            .delete_stream(locations)
            .try_collect()
            .await
            .map_err(Error::objects("deleting", prefix))?;
        Ok(deleted.len())
    }

    /// Writes the concatenation of `parts` (in order) to `dest`, streaming
    /// (a multipart upload on S3; a temporary file renamed into place
    /// locally), so a 5 GB upload never sits in memory.
    pub async fn concat(&self, parts: &[String], dest: &str) -> Result<u64> {
        let k = Key::from(dest);
        let upload = self
            .store
            .put_multipart(&k)
            .await
            .map_err(Error::objects("assembling", dest))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut total = 0u64;
        for part in parts {
            let result = self
                .store
                .get(&Key::from(part.as_str()))
                .await
                .map_err(Error::objects("reading", part.as_str()));
            let mut stream = match result {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(e);
                }
            };
            while let Some(bytes) = stream.next().await {
                match bytes {
                    Ok(b) => {
                        total += b.len() as u64;
                        writer.write(&b);
                    }
                    Err(e) => {
                        writer.abort().await.ok();
                        return Err(Error::objects("reading", part.as_str())(e));
                    }
                }
            }
        }
        writer
            .finish()
            .await
            .map_err(Error::objects("assembling", dest))?;
        self.sync_local(&k).await?;
        Ok(total)
    }

    /// The object's bytes mapped into memory, on the local store (None on
    /// S3, or when there is no such object). Serving from the mapping
    /// copies nothing in user space and reads nothing per request.
    pub async fn map_local(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(fs) = &self.local else {
            return Ok(None);
        };
        let path = fs
            .path_to_filesystem(&Key::from(key))
            .map_err(Error::objects("locating", key))?;
        tokio::task::spawn_blocking(move || -> Result<Option<Bytes>> {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("opening", path.display())(e)),
            };
            // SAFETY: objects are only ever written as a staged file renamed
            // into place (`put`), never modified or truncated in place, and
            // an unlinked file stays mapped until the last `Bytes` over the
            // mapping is dropped; so the mapped bytes never change under it.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(Error::io("mapping", path.display()))?;
            Ok(Some(Bytes::from_owner(map)))
        })
        .await?
    }

    /// A local file with the object's bytes: the object itself on the local
    /// store, else a download into `scratch`.
    pub async fn local_copy(&self, key: &str, scratch: &Path) -> Result<PathBuf> {
        let k = Key::from(key);
        if let Some(fs) = &self.local {
            return fs
                .path_to_filesystem(&k)
                .map_err(Error::objects("locating", key));
        }
        let mut stream = self
            .store
            .get(&k)
            .await
            .map_err(Error::objects("downloading", key))?
            .into_stream();
        let path = scratch.to_path_buf();
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(Error::io("creating", path.display()))?;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(Error::objects("downloading", key))?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
                .await
                .map_err(Error::io("writing", path.display()))?;
        }
        Ok(path)
    }

    /// Uploads every file under `dir` to `prefix/<relative path>`.
    pub async fn upload_dir(&self, dir: &Path, prefix: &str) -> Result<usize> {
        let files = walk(dir)?;
        let mut n = 0;
        for file in files {
            let rel = file.strip_prefix(dir).map_err(|_| {
                Error::Task(format!("{} escaped {}", file.display(), dir.display()))
            })?;
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes = tokio::fs::read(&file)
                .await
                .map_err(Error::io("reading", file.display()))?;
            self.put(&format!("{prefix}/{rel}"), Bytes::from(bytes))
                .await?;
            n += 1;
        }
        Ok(n)
    }
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(Error::io("listing", d.display()))? {
            let entry = entry.map_err(Error::io("listing", d.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(Error::io("listing", path.display()))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path) -> Objects {
        let mut config = Config::default();
        config.objects.path = Some(dir.to_path_buf());
        Objects::from_config(&config).unwrap()
    }

    #[tokio::test]
    async fn concat_ranges_and_prefix_delete() {
        let dir = tempfile::tempdir().unwrap();
        let o = local(dir.path());
        o.put(&chunk_key("u", 1), Bytes::from_static(b"world"))
            .await
            .unwrap();
        o.put(&chunk_key("u", 0), Bytes::from_static(b"hello "))
            .await
            .unwrap();
        let parts = vec![chunk_key("u", 0), chunk_key("u", 1)];
        assert_eq!(o.concat(&parts, &source_key("v")).await.unwrap(), 11);
        assert_eq!(
            &o.get_range(&source_key("v"), 6..11).await.unwrap()[..],
            b"world"
        );
        let meta = o.head(&source_key("v")).await.unwrap().unwrap();
        assert_eq!(meta.size, 11);
        assert!(o.head("videos/v/nothing").await.unwrap().is_none());
        let path = o.local_copy(&source_key("v"), dir.path()).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"hello world");
        assert_eq!(o.delete_prefix(&upload_prefix("u")).await.unwrap(), 2);
        assert!(o.list("uploads").await.unwrap().is_empty());
        assert_eq!(
            o.list("videos").await.unwrap(),
            vec!["videos/v/source".to_string()]
        );
    }
}
