//! Duets, stitches and speed (FR6). A remix request completes the caller's
//! upload session as `complete` does, with the new video linked to its
//! original (`videos.remix` JSON, `videos.remix_of`); the job then runs the
//! edit stage (`media::edit`) before the ladder: the original's published
//! picture and sound (`download.mp4`: what viewers see, its own edits
//! included) and the recording are composed into an intermediate that the
//! ordinary transcode turns into the ladder. A plain upload with a speed
//! other than 1 goes through the same stage.
//!
//! Rules: the original is ready and visible to the caller; its creator may
//! turn duets or stitches off (403, `details.reason` `DUET_DISABLED` /
//! `STITCH_DISABLED`); a stitch clip is 0.1–5 s inside the original;
//! speeds are 0.5, 1, 2, 3. The original is read when the job runs: if it
//! was deleted by then, the remix fails saying so.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult, ErrorCode};
use media::edit::{self, Edit};

use super::Videos;
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, VideoRow};
use crate::store::{objects, video_wire, visible_video, LadderInfo};

/// How a new video is linked to the video it remixes.
#[derive(Debug, Clone)]
pub(super) struct RemixLink {
    /// `api::wire::Remix` as JSON (the `videos.remix` column).
    pub json: String,
    pub original_id: String,
}

/// A stitch clip as asked: `[start, end)` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Clip {
    start: f64,
    end: f64,
}

/// A stitch's clip, checked on its own (its end against the original's
/// length is checked once the original is known).
fn check_clip(start: f64, end: f64) -> ApiResult<Clip> {
    if !start.is_finite() || start < 0.0 {
        return Err(ApiError::invalid(
            "clipStart",
            "must be a number of seconds, 0 or more",
        ));
    }
    if !end.is_finite() || end <= start {
        return Err(ApiError::invalid("clipEnd", "must be after clipStart"));
    }
    let long = end - start;
    if long > edit::MAX_CLIP_SECS + 1e-9 {
        return Err(ApiError::invalid(
            "clipEnd",
            format!(
                "a stitch clip is at most {} s; {long:.3} s asked",
                edit::MAX_CLIP_SECS
            ),
        ));
    }
    if long < edit::MIN_CLIP_SECS {
        return Err(ApiError::invalid(
            "clipEnd",
            format!("a stitch clip is at least {} s", edit::MIN_CLIP_SECS),
        ));
    }
    Ok(Clip { start, end })
}

fn check_speed(speed: Option<f64>) -> ApiResult<()> {
    match speed {
        Some(s) if !edit::speed::is_allowed(s) => Err(ApiError::invalid(
            "speed",
            format!("{s} is not 0.5, 1, 2 or 3"),
        )),
        Some(_) | None => Ok(()),
    }
}

fn check_upload_id(id: &str) -> ApiResult<()> {
    if id.trim().is_empty() || id.chars().count() > 64 {
        return Err(ApiError::invalid("uploadId", "must be 1–64 characters"));
    }
    Ok(())
}

fn disabled(kind: RemixKind) -> ApiError {
    let (what, reason) = match kind {
        RemixKind::Duet => ("duets", "DUET_DISABLED"),
        RemixKind::Stitch => ("stitches", "STITCH_DISABLED"),
    };
    ApiError::new(
        ErrorCode::Forbidden,
        format!("the creator of this video turned {what} off"),
    )
    .with_details(serde_json::json!({ "reason": reason }))
}

/// The metadata of a remix's new video, defaults filled in.
struct NewVideo {
    title: Option<String>,
    description: String,
    hashtags: Vec<String>,
    sound_id: Option<String>,
    visibility: Visibility,
    duet_enabled: Option<bool>,
    stitch_enabled: Option<bool>,
    speed: Option<f64>,
}

impl NewVideo {
    fn meta(self, kind: RemixKind, original: &VideoRow) -> VideoMeta {
        let title = self.title.unwrap_or_else(|| {
            let verb = match kind {
                RemixKind::Duet => "Duet with",
                RemixKind::Stitch => "Stitch with",
            };
            // A title is at most 150 characters.
            format!("{verb} {}", original.title)
                .chars()
                .take(150)
                .collect()
        });
        VideoMeta {
            title,
            description: self.description,
            hashtags: self.hashtags,
            sound_id: self.sound_id,
            visibility: self.visibility,
            duet_enabled: self.duet_enabled,
            stitch_enabled: self.stitch_enabled,
            speed: self.speed,
        }
    }
}

impl Videos {
    async fn remix(
        &self,
        caller: &Principal,
        original_id: &str,
        upload_id: &str,
        kind: RemixKind,
        clip: Option<Clip>,
        new: NewVideo,
    ) -> Result<Accepted> {
        let original = visible_video(&self.catalog, Some(caller), original_id).await?;
        let allowed = match kind {
            RemixKind::Duet => original.duet_enabled,
            RemixKind::Stitch => original.stitch_enabled,
        };
        if !allowed {
            return Err(disabled(kind).into());
        }
        if original.state != "ready" {
            return Err(ApiError::conflict(
                "the original is not ready yet; remix it once it plays",
            )
            .into());
        }
        if let Some(c) = clip {
            let length = original
                .ladder
                .as_deref()
                .and_then(|l| serde_json::from_str::<LadderInfo>(l).ok())
                .map_or(0.0, |l| l.duration_secs);
            // Within a frame of the end counts as the end.
            if c.start >= length || c.end > length + 0.05 {
                return Err(ApiError::invalid(
                    "clipEnd",
                    format!(
                        "the clip [{}, {}) is not inside the original ({length:.3} s)",
                        c.start, c.end
                    ),
                )
                .into());
            }
        }
        // Completing the same session again as the same remix is the same
        // answer; as anything else, a conflict.
        let (u, _) = self.upload_of(caller, upload_id).await?;
        if u.status == "completed" {
            let vid = u.video_id.clone();
            let done = self.catalog.call(move |c| cat::video(c, &vid)).await?;
            return match done {
                Some(v) if v.remix_of.as_deref() == Some(original_id) => Ok(Accepted {
                    video_id: v.id,
                    status: VideoState::Processing,
                }),
                Some(_) | None => Err(ApiError::conflict("this upload is already complete").into()),
            };
        }
        let remix = Remix {
            kind,
            original_id: original.id.clone(),
            clip_start: clip.map(|c| c.start),
            clip_end: clip.map(|c| c.end),
        };
        let link = RemixLink {
            json: serde_json::to_string(&remix).unwrap_or_default(),
            original_id: original.id.clone(),
        };
        let meta = new.meta(kind, &original);
        self.complete_with(caller, upload_id, meta, Some(link))
            .await
    }
}

impl api::Remixes for Videos {
    async fn duet(
        &self,
        caller: &Principal,
        original_id: &str,
        req: DuetRequest,
    ) -> ApiResult<Accepted> {
        check_upload_id(&req.upload_id)?;
        check_speed(req.speed)?;
        let new = NewVideo {
            title: req.title,
            description: req.description,
            hashtags: req.hashtags,
            sound_id: req.sound_id,
            visibility: req.visibility,
            duet_enabled: req.duet_enabled,
            stitch_enabled: req.stitch_enabled,
            speed: req.speed,
        };
        Ok(self
            .remix(
                caller,
                original_id,
                &req.upload_id,
                RemixKind::Duet,
                None,
                new,
            )
            .await?)
    }

    async fn stitch(
        &self,
        caller: &Principal,
        original_id: &str,
        req: StitchRequest,
    ) -> ApiResult<Accepted> {
        check_upload_id(&req.upload_id)?;
        let clip = check_clip(req.clip_start, req.clip_end)?;
        check_speed(req.speed)?;
        let new = NewVideo {
            title: req.title,
            description: req.description,
            hashtags: req.hashtags,
            sound_id: req.sound_id,
            visibility: req.visibility,
            duet_enabled: req.duet_enabled,
            stitch_enabled: req.stitch_enabled,
            speed: req.speed,
        };
        Ok(self
            .remix(
                caller,
                original_id,
                &req.upload_id,
                RemixKind::Stitch,
                Some(clip),
                new,
            )
            .await?)
    }

    async fn remixes(
        &self,
        caller: Option<&Principal>,
        original_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Video>> {
        let (limit, after) = page.by_created()?;
        visible_video(&self.catalog, caller, original_id).await?;
        let id = original_id.to_owned();
        let rows = self
            .catalog
            .call(move |c| cat::remixes_of(c, &id, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |v| api::cursor::created(v.created_at, &v.id),
            |v| video_wire(&v),
        ))
    }
}

/// The edit a video's job runs before its ladder, if any.
fn planned(video: &VideoRow) -> Option<(Option<Remix>, f64)> {
    let remix = video
        .remix
        .as_deref()
        .and_then(|r| serde_json::from_str::<Remix>(r).ok());
    (remix.is_some() || video.speed != 1.0).then_some((remix, video.speed))
}

/// Runs the edit stage of `video`'s job when it has one: the intermediate
/// (in `scratch`) the ladder is made from instead of `recording`. `None`:
/// the upload is transcoded as it is.
pub(super) async fn edit_stage(
    app: &Arc<Videos>,
    video: &VideoRow,
    recording: &Path,
    scratch: &Path,
    cancel: Arc<AtomicBool>,
) -> Result<Option<PathBuf>> {
    let Some((remix, speed)) = planned(video) else {
        return Ok(None);
    };
    let recording = recording.to_owned();
    let edit = match remix {
        None => Edit::Speed { recording, speed },
        Some(r) => {
            let original = original_media(app, &r.original_id, scratch).await?;
            match (r.kind, r.clip_start, r.clip_end) {
                (RemixKind::Stitch, Some(clip_start), Some(clip_end)) => Edit::Stitch {
                    original,
                    clip_start,
                    clip_end,
                    recording,
                    speed,
                },
                (RemixKind::Duet, _, _) => Edit::Duet {
                    original,
                    recording,
                    speed,
                },
                (RemixKind::Stitch, _, _) => {
                    return Err(Error::Task(format!(
                        "video {}: a stitch without its clip",
                        video.id
                    )))
                }
            }
        }
    };
    let out = scratch.join("edited.mp4");
    let limits = media::Limits {
        max_bytes: app.config.uploads.max_file_size,
        ..Default::default()
    };
    let path = out.clone();
    let edited = tokio::task::spawn_blocking(move || {
        edit::render(&edit, &path, &limits, Some(cancel.as_ref()))
    })
    .await??;
    tracing::info!(video = %video.id, width = edited.width, height = edited.height, secs = edited.duration_secs, "edit stage done");
    Ok(Some(out))
}

/// The original's picture and sound as viewers get them: its ladder's
/// `download.mp4` (the source when there is none), copied into `scratch`.
async fn original_media(app: &Videos, original_id: &str, scratch: &Path) -> Result<PathBuf> {
    let id = original_id.to_owned();
    let row = app.catalog.call(move |c| cat::video(c, &id)).await?;
    let Some(original) = row.filter(|v| v.state == "ready") else {
        return Err(ApiError::conflict(
            "the original video was deleted before this remix was composed",
        )
        .into());
    };
    let download = format!("{}/download.mp4", objects::ladder_prefix(original_id));
    let key = if app.objects.head(&download).await?.is_some() {
        download
    } else if !original.source_key.is_empty() {
        original.source_key.clone()
    } else {
        return Err(ApiError::conflict("the original video has no media to remix").into());
    };
    app.objects
        .local_copy(&key, &scratch.join("original"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_checked_naming_the_field() {
        let field = |e: ApiError| {
            e.details.unwrap_or_default()["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            check_clip(2.0, 5.0).unwrap(),
            Clip {
                start: 2.0,
                end: 5.0
            }
        );
        assert!(check_clip(0.0, 5.0).is_ok());
        assert_eq!(field(check_clip(-1.0, 2.0).unwrap_err()), "clipStart");
        assert_eq!(field(check_clip(f64::NAN, 2.0).unwrap_err()), "clipStart");
        assert_eq!(field(check_clip(3.0, 3.0).unwrap_err()), "clipEnd");
        assert_eq!(field(check_clip(1.0, 6.5).unwrap_err()), "clipEnd");
        assert_eq!(field(check_clip(1.0, 1.05).unwrap_err()), "clipEnd");
        assert_eq!(field(check_speed(Some(1.5)).unwrap_err()), "speed");
        assert!(check_speed(Some(3.0)).is_ok() && check_speed(None).is_ok());
    }

    #[test]
    fn only_remixes_and_retimed_uploads_have_an_edit() {
        let mut v = VideoRow::bench("v", "u");
        assert!(planned(&v).is_none());
        v.speed = 2.0;
        assert_eq!(planned(&v), Some((None, 2.0)));
        v.speed = 1.0;
        v.remix = Some(r#"{"kind":"stitch","originalId":"o","clipStart":1,"clipEnd":2}"#.into());
        let (remix, speed) = planned(&v).unwrap();
        assert_eq!(speed, 1.0);
        let remix = remix.unwrap();
        assert_eq!(
            (remix.kind, remix.clip_start, remix.clip_end),
            (RemixKind::Stitch, Some(1.0), Some(2.0))
        );
    }
}
