//! The engine's public vocabulary: what it is told (videos, watches), what
//! it answers (feed pages) and how it is configured.

use crate::experiment::Variant;

/// What the engine needs to know about a ready, public video.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VideoDoc {
    pub id: String,
    pub creator: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub sound: Option<String>,
    /// Unix seconds when it became ready.
    pub created_at: i64,
}

/// One watch, as the engagement API records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    pub user: String,
    pub video: String,
    pub watch_ms: u64,
    pub duration_ms: u64,
    pub completed: bool,
    pub liked: bool,
    pub shared: bool,
    /// Unix seconds.
    pub ts: i64,
}

impl Watch {
    pub fn completion(&self) -> f32 {
        if self.completed {
            return 1.0;
        }
        (self.watch_ms as f32 / self.duration_ms.max(1) as f32).clamp(0.0, 1.0)
    }

    /// The spec's engagement weight: completion, plus likes and shares;
    /// a skip (under a quarter watched, not liked) pulls the other way.
    pub fn weight(&self) -> f32 {
        let c = self.completion();
        if c < 0.25 && !self.liked {
            return -0.3;
        }
        c + 0.5 * f32::from(u8::from(self.liked)) + 0.5 * f32::from(u8::from(self.shared))
    }

    pub(crate) fn positive(&self) -> bool {
        self.completion() >= 0.7 || self.liked
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    SimilarToWatched,
    SimilarUsers,
    CoWatched,
    Following,
    Hashtag,
    Sound,
    Trending,
    /// Among the most watched overall.
    Popular,
    Exploration,
    ColdStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Retrieved and ranked for this viewer.
    Personalized,
    /// The viewer has no history or interests yet: popular and diverse.
    ColdStart,
    Following,
    Trending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    ForYou,
    Following,
    Trending,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedItem {
    pub video_id: String,
    pub reason: Reason,
    pub score: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Position of the first item in the viewer's session (0 on the first
    /// page): impressions record where each video was shown.
    pub offset: u32,
    pub next_cursor: Option<String>,
    pub prefetch_ids: Vec<String>,
    pub source: Source,
    /// The ranker that ordered the page: `model`, `formula`, or `none`
    /// (following and trending pages are in time or trending order).
    pub ranker: &'static str,
    /// The viewer's side of the running experiment (control when none).
    pub variant: Variant,
    /// The running experiment's name, read together with `variant`.
    pub experiment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Nearest videos fetched from FAISS per request.
    pub ann_k: usize,
    /// Nearest users consulted for collaborative candidates.
    pub neighbours: usize,
    /// Users a new video is pushed to, and how long it stays in their pool.
    pub new_video_fanout: usize,
    pub exploration_ttl_secs: i64,
    /// Weight of the newest watch in the user's moving average.
    pub ema_alpha: f32,
    /// Items ranked per session refill.
    pub list_len: usize,
    pub session_ttl_secs: i64,
    pub max_sessions: usize,
    pub prefetch: usize,
    /// Half-life of trending velocity.
    pub trending_half_life_secs: f32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ann_k: 300,
            neighbours: 16,
            new_video_fanout: 50,
            exploration_ttl_secs: 3600,
            ema_alpha: 0.15,
            list_len: 200,
            session_ttl_secs: 1800,
            max_sessions: 100_000,
            prefetch: 5,
            trending_half_life_secs: 6.0 * 3600.0,
        }
    }
}
