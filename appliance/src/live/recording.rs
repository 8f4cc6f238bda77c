//! A recording channel's segments as an ordinary VOD video: exported by
//! `media::live::export` (linked, not re-encoded) into a work directory,
//! then published like a finished ladder (`Videos::publish_ladder`: files
//! first, then the row, already `ready`; the feed embeds it).

use std::time::{Duration, SystemTime};

use api::wire::LiveClip;
use api::{ApiError, ApiResult};

use super::Live;
use crate::store::catalog::{self as cat, now_ms, ChannelRow, VideoRow};
use crate::store::{new_id, LadderInfo, RenditionInfo};

/// The longest clip one request may cut.
const MAX_CLIP: Duration = Duration::from_secs(24 * 3600);

fn instant(field: &str, text: &str) -> ApiResult<SystemTime> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::validation(format!("{field} must be an RFC 3339 time ({e})")))?;
    let ns = t.unix_timestamp_nanos();
    if ns < 0 {
        return Err(ApiError::validation(format!("{field} is before 1970")));
    }
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// The clip's span, checked.
pub fn span(req: &LiveClip) -> ApiResult<(SystemTime, SystemTime)> {
    let from = instant("from", &req.from)?;
    let to = instant("to", &req.to)?;
    match to.duration_since(from) {
        Ok(d) if !d.is_zero() && d <= MAX_CLIP => {}
        Ok(d) if !d.is_zero() => {
            return Err(ApiError::validation(format!(
                "a clip is at most 24 h (asked for {} s)",
                d.as_secs()
            )))
        }
        _ => return Err(ApiError::validation("to must be after from")),
    }
    if let Some(t) = &req.title {
        if t.chars().count() > 150 {
            return Err(ApiError::validation("title must be at most 150 characters"));
        }
    }
    Ok((from, to))
}

impl Live {
    /// Publishes `span` of the channel's recording (all of it with `None`)
    /// as a new video; returns its id.
    pub(super) async fn record(
        &self,
        row: &ChannelRow,
        span: Option<(SystemTime, SystemTime)>,
        title: Option<String>,
    ) -> ApiResult<String> {
        let video_id = new_id();
        let work = self
            .config
            .storage
            .data_dir
            .join("work")
            .join(format!("recording-{video_id}"));
        let live_dir = self.dir_of(&row.id);
        let out = work.clone();
        let exported = tokio::task::spawn_blocking(move || {
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| media::MediaError::InvalidRequest(format!("work dir: {e}")))?;
            }
            let _ = std::fs::remove_dir_all(&out);
            media::live::export(&live_dir, span, &out)
        })
        .await
        .map_err(ApiError::internal)?;
        let recording = match exported {
            Ok(r) => r,
            Err(media::MediaError::InvalidRequest(why)) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(ApiError::conflict(why));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(ApiError::internal(e));
            }
        };
        let top = recording.rungs.first();
        let ladder = LadderInfo {
            duration_secs: recording.duration_secs,
            width: top.map_or(0, |r| r.width),
            height: top.map_or(0, |r| r.height),
            renditions: recording.rungs.iter().map(RenditionInfo::from).collect(),
            placement: "live recording (no re-encode)".into(),
            frames: (recording.duration_secs * recording.frame_rate).round() as u64,
            repairs: Vec::new(),
            folders: Vec::new(),
        };
        let when = |t: SystemTime| {
            cat::rfc3339(
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            )
        };
        let now = now_ms();
        let video = VideoRow {
            id: video_id.clone(),
            owner_id: row.owner_id.clone(),
            title: title.unwrap_or_else(|| format!("{} (live)", row.name)),
            description: format!(
                "Recorded from the live channel {} from {} to {}.",
                row.name,
                when(recording.from),
                when(recording.to)
            ),
            hashtags: vec!["live".into()],
            sound_id: None,
            visibility: "public".into(),
            state: "ready".into(),
            stage: "done".into(),
            failure: None,
            source_key: String::new(),
            source_name: format!("live:{}", row.id),
            ladder: serde_json::to_string(&ladder).ok(),
            created_at: now,
            updated_at: now,
            duet_enabled: true,
            stitch_enabled: true,
            remix: None,
            remix_of: None,
            speed: 1.0,
        };
        let published = self.videos.publish_ladder(video, &work).await;
        let _ = std::fs::remove_dir_all(&work);
        published?;
        let (id, vid) = (row.id.clone(), video_id.clone());
        self.catalog
            .call(move |c| cat::add_recording(c, &id, &vid))
            .await?;
        tracing::info!(channel = %row.id, video = %video_id, segments = recording.segments, "live recording published");
        Ok(video_id)
    }
}
