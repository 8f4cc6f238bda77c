//! Search over users (username prefix, ranked by followers), sounds (the
//! words of a title, the last one as a prefix, ranked by relevance × use)
//! and hashtags (prefix, ranked by trending score then videos), beside the
//! feed's video search. Each kind is a tantivy index under
//! `<data_dir>/index/search/` (`index`), queried with a collector that
//! ranks by fast fields and pages by key (`rank`), and kept current by a
//! background sweep of the catalog (`sweep`): no query scans the catalog.
//!
//! What it owns: the index directory (rebuilt from the catalog when it is
//! missing, unreadable or of another version). What it reads: the catalog
//! (users, follows, sounds, videos; never writes it) and the last trending
//! hashtags of `engagement`. Invariants: a hit's counts are the catalog's
//! as of the last sweep (about a second old; see `sweep` for which changes
//! wait for the periodic reconciliation); pages of one query never repeat
//! a hit while the hits' keys are unchanged.

mod index;
mod rank;
mod sweep;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use api::wire::{HashtagHit, Page, Params, SearchQuery, SoundHit, UserHit};
use api::{ApiError, ApiResult, ErrorCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engagement::Engagement;
use crate::error::Result;
use crate::store::Catalog;
use settings::Config;

pub use index::{Doc, Indexes, Stored};
pub use rank::{words, Key};

/// The kinds of thing searched here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Users,
    Sounds,
    Hashtags,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Users, Kind::Sounds, Kind::Hashtags];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Sounds => "sounds",
            Kind::Hashtags => "hashtags",
        }
    }

    /// Starts a cursor of this kind, so one kind's cursor is refused by
    /// another.
    fn letter(self) -> char {
        match self {
            Kind::Users => 'u',
            Kind::Sounds => 's',
            Kind::Hashtags => 'h',
        }
    }
}

/// Indexing memory of the server's writers, per kind: one thread each
/// (tantivy's minimum per thread is 15 MB); the sweep's batches are small.
const SERVER_HEAP: usize = 32 << 20;

/// The search domain: its indexes once open, and what the sweep reads.
pub struct Search {
    catalog: Catalog,
    engagement: Arc<Engagement>,
    dir: PathBuf,
    indexes: OnceLock<Arc<Indexes>>,
}

impl Search {
    /// Opens nothing yet: the indexes are opened by the sweep `spawn`
    /// starts (so one-off commands beside a server never take the index
    /// writers' locks).
    pub fn new(config: &Config, catalog: Catalog, engagement: Arc<Engagement>) -> Self {
        Self {
            catalog,
            engagement,
            dir: config.storage.data_dir.join("index").join("search"),
            indexes: OnceLock::new(),
        }
    }

    /// The sweep that opens (or rebuilds) the indexes and keeps them
    /// current until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        vec![tokio::spawn(sweep::run(self.clone(), shutdown))]
    }

    /// The indexes, once the sweep has opened them.
    pub fn indexes(&self) -> Option<Arc<Indexes>> {
        self.indexes.get().cloned()
    }

    /// One page of `kind`'s hits for `q`.
    pub async fn page(&self, kind: Kind, q: SearchQuery) -> Result<(Vec<Stored>, Option<String>)> {
        q.check()?;
        let limit = q.limit.unwrap_or(20) as usize;
        let after = q
            .cursor
            .as_deref()
            .map(|c| Key::parse_cursor(kind, c).ok_or_else(api::cursor::bad))
            .transpose()?;
        let indexes = self.indexes().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "the search index is being opened; retry in a few seconds",
            )
        })?;
        let text = q.q;
        // One more than the page, to know whether another follows.
        let mut hits =
            tokio::task::spawn_blocking(move || indexes.search(kind, &text, limit + 1, after))
                .await??;
        let next = if hits.len() > limit {
            hits.truncate(limit);
            hits.last().map(|(key, _)| key.cursor(kind))
        } else {
            None
        };
        Ok((hits.into_iter().map(|(_, s)| s).collect(), next))
    }
}

impl api::Search for Search {
    async fn search_users(&self, query: SearchQuery) -> ApiResult<Page<UserHit>> {
        let (hits, next_cursor) = self.page(Kind::Users, query).await?;
        Ok(Page {
            items: hits
                .into_iter()
                .map(|s| UserHit {
                    id: s.id,
                    username: s.name,
                    followers: s.pop,
                })
                .collect(),
            next_cursor,
        })
    }

    async fn search_sounds(&self, query: SearchQuery) -> ApiResult<Page<SoundHit>> {
        let (hits, next_cursor) = self.page(Kind::Sounds, query).await?;
        Ok(Page {
            items: hits
                .into_iter()
                .map(|s| SoundHit {
                    id: s.id,
                    title: s.name,
                    usage: s.pop,
                    duration_ms: s.duration_ms,
                    owner_id: s.owner_id,
                    owner_username: s.owner_name,
                })
                .collect(),
            next_cursor,
        })
    }

    async fn search_hashtags(&self, query: SearchQuery) -> ApiResult<Page<HashtagHit>> {
        let (hits, next_cursor) = self.page(Kind::Hashtags, query).await?;
        Ok(Page {
            items: hits
                .into_iter()
                .map(|s| HashtagHit {
                    tag: s.name,
                    video_count: s.pop,
                    trending_score: s.trend,
                })
                .collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests;
