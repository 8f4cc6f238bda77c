//! The storyboard: one JPEG sprite of small tiles, one every `interval`
//! seconds, and a WebVTT track whose cues point into it
//! (`storyboard.jpg#xywh=x,y,w,h`), the thumbnails format Video.js, JW
//! Player and Mux read for scrubbing previews. Made from the ladder's lowest
//! rung: the tiles are smaller than any rung, so decoding more pixels would
//! buy nothing.

use std::fmt::Write as _;
use std::path::Path;

use ff::format::Pixel;
use ffmpeg_next as ff;

use crate::avio::Part;
use crate::error::{MediaError, Result};
use crate::frames::{jpeg, scaled_size, write_atomically, Converter, VideoFrames};
use crate::ladder::Track;

pub const STORYBOARD_IMAGE: &str = "storyboard.jpg";
pub const STORYBOARD_VTT: &str = "storyboard.vtt";
/// Tile width in pixels; the height keeps the picture's aspect.
pub const TILE_WIDTH: u32 = 160;
pub const COLUMNS: u32 = 10;
/// A long video gets a wider interval rather than a bigger sprite.
pub const MAX_TILES: u32 = 100;
const JPEG_QUALITY: u8 = 80;
/// Frame times are rounded to microseconds in the playlists; a picture
/// this close before a tile's time counts as at it.
const EPSILON: f64 = 1e-3;

/// How a storyboard is laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Seconds between tiles: whole seconds, at least one.
    pub interval: f64,
    pub tiles: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    pub columns: u32,
    pub rows: u32,
    /// The video's duration; the last cue ends there.
    pub duration: f64,
}

impl Layout {
    /// The layout for a video of `duration` seconds whose pictures are
    /// `width`×`height`: a tile every second, or every `⌈duration / 100⌉`
    /// seconds past 100 s, so a sprite never holds more than 100 tiles.
    pub fn new(duration: f64, width: u32, height: u32) -> Self {
        let duration = duration.max(0.0);
        let interval = (duration / f64::from(MAX_TILES)).ceil().max(1.0);
        let tiles = ((duration / interval - EPSILON).ceil() as u32).clamp(1, MAX_TILES);
        let (tile_width, tile_height) = scaled_size(width, height, TILE_WIDTH);
        let columns = tiles.min(COLUMNS);
        Self {
            interval,
            tiles,
            tile_width,
            tile_height,
            columns,
            rows: tiles.div_ceil(columns),
            duration,
        }
    }

    pub fn sprite_size(&self) -> (u32, u32) {
        (self.columns * self.tile_width, self.rows * self.tile_height)
    }

    /// Top-left corner of tile `i` in the sprite.
    pub fn origin(&self, i: u32) -> (u32, u32) {
        (
            (i % self.columns) * self.tile_width,
            (i / self.columns) * self.tile_height,
        )
    }

    /// The WebVTT thumbnails track: contiguous cues from 0 to the duration,
    /// each naming its tile in `image` (a URL relative to the track).
    pub fn vtt(&self, image: &str) -> String {
        let mut out = String::from("WEBVTT\n");
        for i in 0..self.tiles {
            let start = f64::from(i) * self.interval;
            let end = if i + 1 == self.tiles {
                self.duration.max(start + 0.001)
            } else {
                start + self.interval
            };
            let (x, y) = self.origin(i);
            let _ = write!(
                out,
                "\n{} --> {}\n{image}#xywh={x},{y},{},{}\n",
                timestamp(start),
                timestamp(end),
                self.tile_width,
                self.tile_height
            );
        }
        out
    }
}

/// `hh:mm:ss.ttt`, as WebVTT requires (hours always present).
fn timestamp(secs: f64) -> String {
    let ms = (secs * 1000.0).round().max(0.0) as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Decodes `track` (a video rendition) and writes the sprite and the
/// track into `dir`. Returns the layout used.
pub(crate) fn write(track: &Track, dir: &Path) -> Result<Layout> {
    let image_path = dir.join(STORYBOARD_IMAGE);
    let mut parts = vec![Part::File(track.init.clone())];
    parts.extend(track.segments.iter().cloned().map(Part::File));
    let mut frames = VideoFrames::open(parts, &track.init, 0.0)?;
    let mut layout = None;
    let mut converter = None;
    let mut sprite = Vec::new();
    let mut next = 0u32;
    let mut last: Option<Vec<u8>> = None;
    while let Some((t, frame)) = frames.next_frame()? {
        let l = *layout
            .get_or_insert_with(|| Layout::new(track.duration(), frame.width(), frame.height()));
        if sprite.is_empty() {
            let (w, h) = l.sprite_size();
            sprite = vec![0u8; (w * h * 3) as usize];
        }
        let c = converter
            .get_or_insert_with(|| Converter::new(l.tile_width, l.tile_height, Pixel::RGB24));
        // Each tile shows the first picture at or after its time; the
        // pictures between are decoded (they are references) but not
        // converted.
        if next < l.tiles && t + EPSILON >= f64::from(next) * l.interval {
            let tile = c.convert(&frame)?;
            while next < l.tiles && t + EPSILON >= f64::from(next) * l.interval {
                blit(&mut sprite, &l, next, &tile);
                next += 1;
            }
            last = Some(tile);
        }
        if next >= l.tiles {
            break;
        }
    }
    let Some(l) = layout else {
        return Err(MediaError::Packaging {
            path: track.init.clone(),
            reason: "no picture decoded for the storyboard".into(),
        });
    };
    // Tiles past the last picture (a playlist longer than its pictures by
    // rounding) repeat it rather than stay black.
    if let Some(tile) = &last {
        while next < l.tiles {
            blit(&mut sprite, &l, next, tile);
            next += 1;
        }
    }
    let (w, h) = l.sprite_size();
    write_atomically(
        &image_path,
        &jpeg(&sprite, w, h, JPEG_QUALITY, &image_path)?,
    )?;
    write_atomically(
        &dir.join(STORYBOARD_VTT),
        l.vtt(STORYBOARD_IMAGE).as_bytes(),
    )?;
    Ok(l)
}

fn blit(sprite: &mut [u8], l: &Layout, i: u32, tile: &[u8]) {
    let (x0, y0) = l.origin(i);
    let sprite_row = (l.columns * l.tile_width * 3) as usize;
    let tile_row = (l.tile_width * 3) as usize;
    for (y, row) in tile.chunks_exact(tile_row).enumerate() {
        let at = (y0 as usize + y) * sprite_row + x0 as usize * 3;
        sprite[at..at + tile_row].copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_whole_seconds_and_tiles_at_most_a_hundred() {
        let l = Layout::new(10.0, 320, 240);
        assert_eq!((l.interval, l.tiles, l.columns, l.rows), (1.0, 10, 10, 1));
        assert_eq!((l.tile_width, l.tile_height), (160, 120));
        assert_eq!(l.sprite_size(), (1600, 120));
        let l = Layout::new(8.966667, 640, 360);
        assert_eq!((l.interval, l.tiles), (1.0, 9));
        assert_eq!(l.sprite_size(), (9 * 160, 90));
        let l = Layout::new(0.4, 640, 360);
        assert_eq!((l.interval, l.tiles), (1.0, 1));
        let l = Layout::new(100.0, 640, 360);
        assert_eq!((l.interval, l.tiles, l.rows), (1.0, 100, 10));
        let l = Layout::new(3600.0, 1080, 1920);
        assert_eq!((l.interval, l.tiles), (36.0, 100));
        assert_eq!(l.sprite_size(), (1600, 2840));
        let l = Layout::new(250.5, 640, 360);
        assert_eq!((l.interval, l.tiles), (3.0, 84));
        assert_eq!(l.origin(83), (3 * 160, 8 * 90));
    }

    #[test]
    fn the_track_is_contiguous_webvtt() {
        let l = Layout::new(2.5, 640, 360);
        assert_eq!(
            l.vtt("storyboard.jpg"),
            "WEBVTT\n\
             \n00:00:00.000 --> 00:00:01.000\nstoryboard.jpg#xywh=0,0,160,90\n\
             \n00:00:01.000 --> 00:00:02.000\nstoryboard.jpg#xywh=160,0,160,90\n\
             \n00:00:02.000 --> 00:00:02.500\nstoryboard.jpg#xywh=320,0,160,90\n"
        );
        assert_eq!(timestamp(3725.0004), "01:02:05.000");
        assert_eq!(timestamp(59.9996), "00:01:00.000");
    }
}
