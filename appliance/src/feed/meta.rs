//! The published videos' wire form by id, so that a feed page names ten
//! videos without ten catalog reads. A `ready` public row only changes by
//! leaving `ready` (reprocess, delete), and every way out calls
//! [`Recommender::forget_video`](super::Recommender::forget_video), or by
//! its ladder growing, which calls
//! [`Recommender::ladder_changed`](super::Recommender::ladder_changed); both
//! invalidate here; a page that read the catalog before that cannot put
//! the old row back, because invalidation bumps a generation that every
//! insert checks under the same lock (as the origin's cache does).

use std::collections::HashMap;
use std::sync::Arc;

use api::wire::Video;
use parking_lot::RwLock;

/// Videos remembered; past it the map starts over (a region's feeds keep
/// returning to a far smaller working set).
const MAX_VIDEOS: usize = 50_000;

#[derive(Default)]
pub struct MetaCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    videos: HashMap<String, Arc<Video>>,
    generation: u64,
}

impl MetaCache {
    /// What is known of `ids`, in order, and the generation to insert
    /// what the caller then reads from the catalog under.
    pub fn get(&self, ids: &[String]) -> (Vec<Option<Arc<Video>>>, u64) {
        let inner = self.inner.read();
        (
            ids.iter().map(|id| inner.videos.get(id).cloned()).collect(),
            inner.generation,
        )
    }

    /// Remembers videos read from the catalog, unless one was invalidated
    /// since `generation` was taken (the read may predate the change).
    pub fn insert(&self, videos: &[Arc<Video>], generation: u64) {
        let mut inner = self.inner.write();
        if inner.generation != generation {
            return;
        }
        if inner.videos.len() + videos.len() > MAX_VIDEOS {
            inner.videos.clear();
        }
        for v in videos {
            inner.videos.insert(v.id.clone(), v.clone());
        }
    }

    /// Drops `id`; call after the catalog changed.
    pub fn invalidate(&self, id: &str) {
        let mut inner = self.inner.write();
        inner.videos.remove(id);
        inner.generation += 1;
    }

    pub fn len(&self) -> usize {
        self.inner.read().videos.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(id: &str, title: &str) -> Arc<Video> {
        let mut row = crate::store::catalog::VideoRow::bench(id, "owner");
        row.title = title.into();
        Arc::new(crate::store::video_wire(&row))
    }

    #[test]
    fn a_read_from_before_an_invalidation_is_not_kept() {
        let cache = MetaCache::default();
        let (known, g) = cache.get(&["a".into()]);
        assert!(known[0].is_none());
        // The video is deleted while the page reads the old row …
        cache.invalidate("a");
        // … which must not come back.
        cache.insert(&[video("a", "old")], g);
        assert!(cache.get(&["a".into()]).0[0].is_none());
        let (_, g) = cache.get(&["a".into()]);
        cache.insert(&[video("a", "new")], g);
        let (known, _) = cache.get(&["a".into(), "b".into()]);
        assert_eq!(known[0].as_ref().map(|v| v.title.as_str()), Some("new"));
        assert!(known[1].is_none());
        cache.invalidate("a");
        assert_eq!(cache.len(), 0);
    }
}
