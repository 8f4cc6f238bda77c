//! What the origin knows without asking the catalog or the object store:
//! for each published video a CDN has pulled lately, whether it may be
//! served, and its ladder files' size and validators, with the bytes of the
//! small ones (playlists, init segments). A published ladder never changes
//! in place, so nothing here expires; it is dropped when the video leaves
//! `ready` (reprocess, delete), and each time a growing ladder's master is
//! replaced (the only file that ever is).
//!
//! Never stale after a delete: every way out of `ready` calls
//! [`OriginCache::invalidate`] once the catalog has changed, and a lookup
//! that read the catalog before that change cannot put its answer back,
//! because invalidation bumps a generation that every insert checks under
//! the same lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use api::service::OriginMeta;
use parking_lot::RwLock;

/// Files up to this size keep their bytes: every playlist and init
/// segment, never a media segment of a real ladder.
pub const SMALL_FILE: u64 = 256 * 1024;
/// Bytes of small files kept in all; past it, only their metadata.
const BODY_BUDGET: usize = 64 * 1024 * 1024;
/// Larger files (media segments, on the local store) are kept mapped, up
/// to this many: a mapping costs an entry in the process's map table
/// (Linux allows 65,530) and no memory of its own (the page cache's).
const MAX_MAPPED: usize = 16_384;
/// Videos remembered; past it the map starts over (a CDN's working set of
/// one region is far smaller).
const MAX_VIDEOS: usize = 100_000;

/// How a remembered file's bytes are held, for the budgets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Read into memory.
    Heap,
    /// Mapped from the local object store.
    Mapped,
}

/// One published video as the origin sees it.
pub struct VideoGate {
    pub private: bool,
    /// Playable while more rungs encode: its master will be replaced (and
    /// this gate invalidated when it is).
    pub growing: bool,
    files: RwLock<HashMap<String, (OriginMeta, Held)>>,
}

impl VideoGate {
    /// A gate for one answer, in no cache.
    pub fn transient(private: bool, growing: bool) -> Arc<Self> {
        Arc::new(Self {
            private,
            growing,
            files: RwLock::new(HashMap::new()),
        })
    }

    pub fn file(&self, path: &str) -> Option<OriginMeta> {
        self.files.read().get(path).map(|(m, _)| m.clone())
    }
}

#[derive(Default)]
struct Inner {
    generation: u64,
    videos: HashMap<String, Arc<VideoGate>>,
}

#[derive(Default)]
pub struct OriginCache {
    inner: RwLock<Inner>,
    body_bytes: AtomicUsize,
    mapped: AtomicUsize,
}

impl OriginCache {
    /// Taken before reading the catalog; [`put_video`](Self::put_video)
    /// refuses an answer read under an older generation.
    pub fn generation(&self) -> u64 {
        self.inner.read().generation
    }

    pub fn video(&self, id: &str) -> Option<Arc<VideoGate>> {
        self.inner.read().videos.get(id).cloned()
    }

    /// Remembers a `ready` video read from the catalog under `generation`;
    /// None when a video left `ready` meanwhile (the answer may be stale:
    /// serve it this once, remember nothing).
    pub fn put_video(
        &self,
        id: &str,
        private: bool,
        growing: bool,
        generation: u64,
    ) -> Option<Arc<VideoGate>> {
        let mut inner = self.inner.write();
        if inner.generation != generation {
            return None;
        }
        if inner.videos.len() >= MAX_VIDEOS {
            inner.videos.clear();
            self.body_bytes.store(0, Ordering::Relaxed);
            self.mapped.store(0, Ordering::Relaxed);
        }
        let gate = VideoGate::transient(private, growing);
        inner.videos.insert(id.to_owned(), gate.clone());
        Some(gate)
    }

    /// Whether a mapping may be added (checked before mapping a file).
    pub fn can_map(&self) -> bool {
        self.mapped.load(Ordering::Relaxed) < MAX_MAPPED
    }

    /// Remembers a file of a remembered video; its bytes only while the
    /// budgets allow. Nothing when the video was forgotten meanwhile (its
    /// bytes would never be counted back).
    pub fn put_file(
        &self,
        id: &str,
        gate: &Arc<VideoGate>,
        path: &str,
        mut meta: OriginMeta,
        held: Held,
    ) {
        // Held across the insert: `invalidate` cannot run in between.
        let inner = self.inner.read();
        if !inner.videos.get(id).is_some_and(|g| Arc::ptr_eq(g, gate)) {
            return;
        }
        if let Some(body) = &meta.body {
            let (counter, cost, limit) = match held {
                Held::Heap => (&self.body_bytes, body.len(), BODY_BUDGET),
                Held::Mapped => (&self.mapped, 1, MAX_MAPPED),
            };
            let used = counter.fetch_add(cost, Ordering::Relaxed);
            if used + cost > limit {
                counter.fetch_sub(cost, Ordering::Relaxed);
                meta.body = None;
            }
        }
        let mut files = gate.files.write();
        if let Some((old, old_held)) = files.insert(path.to_owned(), (meta, held)) {
            // Two first pulls raced: count the replaced copy back.
            self.release(&old, old_held);
        }
    }

    fn release(&self, meta: &OriginMeta, held: Held) {
        if let Some(body) = &meta.body {
            match held {
                Held::Heap => self.body_bytes.fetch_sub(body.len(), Ordering::Relaxed),
                Held::Mapped => self.mapped.fetch_sub(1, Ordering::Relaxed),
            };
        }
    }

    /// The video left `ready` (or its visibility changed): forget it, and
    /// refuse answers read before now.
    pub fn invalidate(&self, id: &str) {
        let mut inner = self.inner.write();
        inner.generation += 1;
        if let Some(gate) = inner.videos.remove(id) {
            for (meta, held) in gate.files.read().values() {
                self.release(meta, *held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::SystemTime;

    fn meta(body: Option<&'static [u8]>) -> OriginMeta {
        OriginMeta {
            size: body.map_or(10, |b| b.len() as u64),
            last_modified: SystemTime::UNIX_EPOCH,
            etag: "e".into(),
            body: body.map(Bytes::from_static),
            changing: false,
        }
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_remembered() {
        let cache = OriginCache::default();
        let before = cache.generation();
        // A delete commits and invalidates while a lookup is between its
        // catalog read (still `ready`) and its insert.
        cache.invalidate("v");
        assert!(cache.put_video("v", false, false, before).is_none());
        assert!(cache.video("v").is_none());
        let now = cache.generation();
        let gate = cache.put_video("v", false, false, now).unwrap();
        cache.put_file(
            "v",
            &gate,
            "master.m3u8",
            meta(Some(b"#EXTM3U\n")),
            Held::Heap,
        );
        assert!(cache.video("v").unwrap().file("master.m3u8").is_some());
        cache.invalidate("v");
        assert!(cache.video("v").is_none());
        assert_eq!(cache.body_bytes.load(Ordering::Relaxed), 0);
        // A lookup still holding the forgotten gate adds nothing.
        cache.put_file("v", &gate, "a/init.mp4", meta(Some(b"abc")), Held::Heap);
        assert_eq!(cache.body_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bodies_past_the_budget_keep_only_their_metadata() {
        let cache = OriginCache::default();
        let gate = cache
            .put_video("v", false, false, cache.generation())
            .unwrap();
        cache.body_bytes.store(BODY_BUDGET - 4, Ordering::Relaxed);
        cache.put_file(
            "v",
            &gate,
            "a/index.m3u8",
            meta(Some(b"12345678")),
            Held::Heap,
        );
        let m = gate.file("a/index.m3u8").unwrap();
        assert!(m.body.is_none());
        assert_eq!(m.size, 8);
        cache.put_file("v", &gate, "a/init.mp4", meta(Some(b"123")), Held::Heap);
        assert!(gate.file("a/init.mp4").unwrap().body.is_some());
    }

    #[test]
    fn mappings_are_counted_and_given_back() {
        let cache = OriginCache::default();
        let gate = cache
            .put_video("v", false, false, cache.generation())
            .unwrap();
        cache.put_file("v", &gate, "a/1.m4s", meta(Some(b"segment")), Held::Mapped);
        // The same file again (two first pulls raced): still one mapping.
        cache.put_file("v", &gate, "a/1.m4s", meta(Some(b"segment")), Held::Mapped);
        assert_eq!(cache.mapped.load(Ordering::Relaxed), 1);
        assert_eq!(cache.body_bytes.load(Ordering::Relaxed), 0);
        cache.mapped.store(MAX_MAPPED, Ordering::Relaxed);
        assert!(!cache.can_map());
        cache.put_file("v", &gate, "a/2.m4s", meta(Some(b"more")), Held::Mapped);
        assert!(gate.file("a/2.m4s").unwrap().body.is_none());
        cache.mapped.store(1, Ordering::Relaxed);
        cache.invalidate("v");
        assert_eq!(cache.mapped.load(Ordering::Relaxed), 0);
    }
}
