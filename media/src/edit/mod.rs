//! The edit stage (FR6): before the ladder, a creator's recording may be
//! composed with another video — a duet (side by side) or a stitch (a clip
//! of the original, then the recording) — and re-timed (0.5×, 2×, 3×).
//! The stage writes an *intermediate* MP4 (H.264 at high quality + AAC)
//! that [`crate::transcode`] then turns into the ordinary ladder, so a
//! composed video passes every check a plain upload does.
//!
//! CPU path: one libavfilter graph per edit (`compose` writes it, `speed`
//! the re-timing parts, `render` runs it). The rules (sizes, durations,
//! silence for inputs without sound) are in `compose`'s module docs.

mod compose;
mod render;
mod sink;
pub mod speed;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use compose::{duet_canvas, stitch_canvas, Canvas, Shot};

use crate::error::{MediaError, Result};
use crate::probe::{probe, Limits, SourceInfo};

/// The longest stitch clip, in seconds (the product's designs).
pub const MAX_CLIP_SECS: f64 = 5.0;
/// The shortest stitch clip: under a frame or two it is not a clip.
pub const MIN_CLIP_SECS: f64 = 0.1;

/// What to make of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The recording alone at `speed` (a plain upload's speed control).
    Speed { recording: PathBuf, speed: f64 },
    /// The original (left) and the recording at `speed` (right).
    Duet {
        original: PathBuf,
        recording: PathBuf,
        speed: f64,
    },
    /// The original's `[clip_start, clip_end)` (seconds), then the
    /// recording at `speed`.
    Stitch {
        original: PathBuf,
        clip_start: f64,
        clip_end: f64,
        recording: PathBuf,
        speed: f64,
    },
}

/// The intermediate written.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub duration_secs: f64,
}

fn check_speed(speed: f64) -> Result<()> {
    if speed::is_allowed(speed) {
        Ok(())
    } else {
        Err(MediaError::InvalidRequest(format!(
            "speed {speed} is not one of {:?}",
            speed::SPEEDS
        )))
    }
}

/// The shot of a whole input at `speed`.
fn whole(source: &SourceInfo, speed: f64) -> Result<Shot> {
    let plan = crate::plan::LadderPlan::new(source, &[])?;
    Ok(Shot {
        display: source.video.display_size(),
        sample_aspect: source.video.sample_aspect,
        rotation: source.video.rotation,
        has_audio: source.audio.is_some(),
        start: 0.0,
        end: source.duration_secs,
        trimmed: false,
        speed,
        frame_rate: plan.frame_rate,
    })
}

/// The inputs as the renderer reads them: (source, start, end, offset on
/// the composition's timeline, speed).
type Span<'a> = (&'a SourceInfo, f64, Option<f64>, f64, f64);

fn feeds_of<'a>(spans: &[Span<'a>]) -> Vec<render::Feed<'a>> {
    spans
        .iter()
        .map(|&(source, start, end, offset, speed)| render::Feed {
            source,
            start,
            end,
            offset,
            speed,
        })
        .collect()
}

/// Writes the edit's intermediate to `out` (an MP4; replaced if present).
/// Inputs are probed against `limits` first. `cancel` stops it with
/// [`MediaError::Cancelled`], leaving nothing behind.
pub fn render(
    edit: &Edit,
    out: &Path,
    limits: &Limits,
    cancel: Option<&AtomicBool>,
) -> Result<Edited> {
    crate::init();
    let (canvas, rendered) = match edit {
        Edit::Speed { recording, speed } => {
            check_speed(*speed)?;
            let r = probe(recording, limits)?;
            let shot = whole(&r, *speed)?;
            // Its own size (the probe's limits bound it).
            let canvas = compose::single_canvas(&shot, u32::MAX);
            let describe = |sound: &[bool]| {
                let shot = Shot {
                    has_audio: sound[0],
                    ..shot.clone()
                };
                compose::single_graph(&shot, &canvas)
            };
            let feeds = feeds_of(&[(&r, 0.0, None, 0.0, *speed)]);
            (
                canvas,
                render::render(&feeds, &canvas, &describe, out, cancel)?,
            )
        }
        Edit::Duet {
            original,
            recording,
            speed,
        } => {
            check_speed(*speed)?;
            let (o, r) = (probe(original, limits)?, probe(recording, limits)?);
            let (os, rs) = (whole(&o, 1.0)?, whole(&r, *speed)?);
            let canvas = duet_canvas(&os, &rs);
            let describe = |sound: &[bool]| {
                let os = Shot {
                    has_audio: sound[0],
                    ..os.clone()
                };
                let rs = Shot {
                    has_audio: sound[1],
                    ..rs.clone()
                };
                compose::duet_graph(&os, &rs, &canvas)
            };
            let feeds = feeds_of(&[(&o, 0.0, None, 0.0, 1.0), (&r, 0.0, None, 0.0, *speed)]);
            (
                canvas,
                render::render(&feeds, &canvas, &describe, out, cancel)?,
            )
        }
        Edit::Stitch {
            original,
            clip_start,
            clip_end,
            recording,
            speed,
        } => {
            check_speed(*speed)?;
            let (o, r) = (probe(original, limits)?, probe(recording, limits)?);
            let (start, end) = (*clip_start, clip_end.min(o.duration_secs));
            if !(start >= 0.0
                && end - start >= MIN_CLIP_SECS
                && end - start <= MAX_CLIP_SECS + 1e-6)
            {
                return Err(MediaError::InvalidRequest(format!(
                    "a stitch clip is {MIN_CLIP_SECS}–{MAX_CLIP_SECS} s inside the original ({:.3} s long); [{clip_start}, {clip_end}) is not",
                    o.duration_secs
                )));
            }
            let clip = Shot {
                start,
                end,
                trimmed: true,
                ..whole(&o, 1.0)?
            };
            let rs = whole(&r, *speed)?;
            let canvas = stitch_canvas(&rs);
            let describe = |sound: &[bool]| {
                let clip = Shot {
                    has_audio: sound[0],
                    ..clip.clone()
                };
                let rs = Shot {
                    has_audio: sound[1],
                    ..rs.clone()
                };
                compose::stitch_graph(&clip, &rs, &canvas)
            };
            let feeds = feeds_of(&[
                (&o, start, Some(end), 0.0, 1.0),
                (&r, 0.0, None, end - start, *speed),
            ]);
            (
                canvas,
                render::render(&feeds, &canvas, &describe, out, cancel)?,
            )
        }
    };
    Ok(Edited {
        path: out.to_owned(),
        width: canvas.width,
        height: canvas.height,
        frames: rendered.frames,
        duration_secs: rendered.duration_secs,
    })
}

#[cfg(test)]
mod tests;
