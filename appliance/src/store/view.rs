//! Catalog rows in the API's shapes, and who may see a video. Shared by
//! every domain that returns videos (videos, feed, engagement), so the
//! rules live once.

use api::wire::*;
use api::ApiError;

use super::catalog::{self as cat, rfc3339, Catalog, VideoRow};
use crate::error::Result;

/// What the catalog keeps about a published ladder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LadderInfo {
    pub duration_secs: f64,
    pub width: u32,
    pub height: u32,
    pub renditions: Vec<RenditionInfo>,
    pub placement: String,
    pub frames: u64,
    /// What the transcode worked around (`media::LadderOutput::repairs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    /// While the ladder grows: the folders (rungs, audio) its published
    /// master points to, which a resumed job must not upload again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RenditionInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

impl From<&media::RenditionSummary> for RenditionInfo {
    fn from(r: &media::RenditionSummary) -> Self {
        Self {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            codecs: r.codecs.clone(),
            bandwidth: r.bandwidth,
            average_bandwidth: r.average_bandwidth,
        }
    }
}

pub fn video_state(s: &str) -> VideoState {
    match s {
        "ready" => VideoState::Ready,
        "failed" | "deleting" => VideoState::Failed,
        _ => VideoState::Processing,
    }
}

fn ladder_wire(v: &VideoRow) -> (Option<LadderInfo>, Vec<Rendition>) {
    let Some(info) = v
        .ladder
        .as_deref()
        .and_then(|l| serde_json::from_str::<LadderInfo>(l).ok())
    else {
        return (None, Vec::new());
    };
    let renditions = info
        .renditions
        .iter()
        .map(|r| Rendition {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            codecs: r.codecs.clone(),
            bandwidth: r.bandwidth,
            average_bandwidth: r.average_bandwidth,
            playlist_url: format!("/hls/{}/{}/index.m3u8", v.id, r.name),
        })
        .collect();
    (Some(info), renditions)
}

pub fn video_wire(v: &VideoRow) -> Video {
    let (info, renditions) = ladder_wire(v);
    let ready = v.state == "ready";
    Video {
        id: v.id.clone(),
        owner_id: v.owner_id.clone(),
        title: v.title.clone(),
        description: v.description.clone(),
        hashtags: v.hashtags.clone(),
        sound_id: v.sound_id.clone(),
        visibility: Visibility::parse(&v.visibility).unwrap_or_default(),
        status: video_state(&v.state),
        failure_reason: v.failure.clone(),
        created_at: rfc3339(v.created_at),
        duration_secs: info.as_ref().map(|i| i.duration_secs),
        width: info.as_ref().map(|i| i.width),
        height: info.as_ref().map(|i| i.height),
        master_url: ready.then(|| format!("/hls/{}/master.m3u8", v.id)),
        poster_url: ready.then(|| format!("/thumbs/{}/poster.jpg", v.id)),
        renditions,
        repairs: info.as_ref().map(|i| i.repairs.clone()).unwrap_or_default(),
        stats: VideoStats::default(),
        viewer: ViewerEngagement::default(),
        duet_enabled: v.duet_enabled,
        stitch_enabled: v.stitch_enabled,
        speed: v.speed,
        remix: v
            .remix
            .as_deref()
            .and_then(|r| serde_json::from_str::<api::wire::Remix>(r).ok()),
    }
}

/// A video `caller` may see: ready and public or unlisted, or their own
/// (or any, for an admin) in any state but `deleting`. Anything else is a
/// 404 — whether someone else's private video exists is itself private.
pub async fn visible_video(
    catalog: &Catalog,
    caller: Option<&Principal>,
    id: &str,
) -> Result<VideoRow> {
    let vid = id.to_owned();
    let row = catalog.call(move |c| cat::video(c, &vid)).await?;
    let Some(v) = row else {
        return Err(ApiError::not_found("video").into());
    };
    if may_see(&v.state, &v.visibility, &v.owner_id, caller) {
        Ok(v)
    } else {
        Err(ApiError::not_found("video").into())
    }
}

/// The rule `visible_video` applies, for a video already read (by a join).
pub fn may_see(state: &str, visibility: &str, owner_id: &str, caller: Option<&Principal>) -> bool {
    let manager = caller.is_some_and(|p| p.may_manage(owner_id));
    match state {
        "deleting" => false,
        "ready" => visibility != "private" || manager,
        _ => manager,
    }
}
