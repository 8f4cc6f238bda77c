//! The feed: the recommender (candle embeddings, FAISS indexes, the
//! inference engine, ranker hot-reload, the embed loop, the circuit
//! breaker and trending fallback), the A/B experiment between two rankers
//! and the impressions of the pages it serves, its HTTP-facing service
//! (feed pages, interests, search, hashtag pages), and the offline commands
//! (`simulate`, `eval-feed`, `train-ranker`).
//!
//! May call: `store` (embeddings, follows, interests, public videos; pages
//! are hydrated through the catalog's read pool) and `engagement` (rate
//! limits, the analytics store for warm-up and training, events and
//! impressions). It learns from
//! engagement through `engagement::Listener`, implemented here.
//!
//! Invariants: a feed page is ranked in one batch from one session, so a
//! session never shows a video twice ("a feed page is ranked" lives in
//! `recommend::Recommender::feed` → `inference::Engine::feed`); any
//! failure, timeout or open breaker serves trending with
//! `source: "trending_fallback"`, never a 5xx; the HTTP path never waits
//! on the embed loop; an unusable or repeatedly failing experiment
//! candidate pauses the experiment, never a feed, and never opens the
//! current ranker's breaker (nor does a broken current ranker hold back
//! candidate pages); a page for a signed-in viewer is answered after its
//! impressions are spooled (a spool failure is logged, the page still
//! served), labelled with the ranker, variant and experiment the page was
//! served under (only for-you pages are in an experiment).

mod experiment;
mod meta;
mod plot;
mod recommend;
mod service;
mod stats;
pub mod tools;

pub use recommend::{doc_of, watch_of, FeedHealth, Recommender, LATENCY_BUCKETS_MS};
pub use service::FeedService;

use crate::engagement::{Event, Listener};

impl Listener for Recommender {
    fn watched(&self, events: &[Event]) {
        self.record(events);
    }

    fn followed(&self, follower: &str, followee: &str, on: bool) {
        self.engine.set_follow(follower, followee, on);
    }

    fn trending(&self, videos: &[String]) {
        self.engine.set_trending(videos);
    }
}
