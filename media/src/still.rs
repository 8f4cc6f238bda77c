//! A still at any time: the picture shown at `t` in a published ladder,
//! decoded from one segment of its top rung and encoded as a JPEG. The
//! caller finds the segment from the rung's playlist
//! ([`crate::ladder::MediaPlaylist::segment_at`]) and hands over the bytes
//! of the init segment and of that segment, wherever it keeps them.

use std::path::Path;

use ff::format::Pixel;
use ffmpeg_next as ff;

use crate::avio::Part;
use crate::error::{MediaError, Result};
use crate::frames::{jpeg, Converter, VideoFrames};
use crate::ladder::Ladder;

const JPEG_QUALITY: u8 = 85;
/// Segment start times are sums of `EXTINF`s rounded to microseconds: a
/// picture this close after `t` is the one at `t` (a frame lasts 16 ms or
/// more, and a still's `t` comes in tenths of a second).
const EPSILON: f64 = 1e-4;

/// The picture on screen at `t` seconds (the last one starting at or
/// before it) of the segment `segment` that starts at `segment_start` on
/// the playlist's timeline, with its track's `init` segment, as a JPEG of
/// the rung's size. `name` (the segment's path or key) is what errors
/// report. A `t` before the segment gives its first picture.
pub fn still_jpeg(
    init: &[u8],
    segment: &[u8],
    segment_start: f64,
    t: f64,
    name: &str,
) -> Result<Vec<u8>> {
    let name = Path::new(name);
    let mut frames = VideoFrames::open(
        vec![Part::Bytes(init), Part::Bytes(segment)],
        name,
        segment_start,
    )?;
    let mut shown = None;
    while let Some((time, frame)) = frames.next_frame()? {
        if time > t + EPSILON && shown.is_some() {
            break;
        }
        shown = Some(frame);
    }
    let Some(frame) = shown else {
        return Err(MediaError::Packaging {
            path: name.to_owned(),
            reason: "the segment has no picture".into(),
        });
    };
    let mut rgb = Converter::new(frame.width(), frame.height(), Pixel::RGB24);
    let pixels = rgb.convert(&frame)?;
    jpeg(&pixels, frame.width(), frame.height(), JPEG_QUALITY, name)
}

/// [`still_jpeg`] at `t` of the ladder in the directory `dir` (its top rung).
pub fn still_from_ladder(dir: &Path, t: f64) -> Result<Vec<u8>> {
    let top = Ladder::open(dir)?.top()?;
    let Some(i) = top.playlist.segment_at(t).map(|s| {
        top.playlist
            .segments
            .iter()
            .position(|x| x == s)
            .expect("a segment of the playlist")
    }) else {
        return Err(MediaError::InvalidRequest(format!(
            "t = {t} s is outside the video (0 to {:.3} s)",
            top.duration()
        )));
    };
    let read = |p: &Path| std::fs::read(p).map_err(|e| MediaError::io("reading", p, e));
    let segment = &top.segments[i];
    still_jpeg(
        &read(&top.init)?,
        &read(segment)?,
        top.playlist.segments[i].start,
        t,
        &segment.display().to_string(),
    )
}
