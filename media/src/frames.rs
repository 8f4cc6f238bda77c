//! Decoded pictures of a finished ladder's video track, in display order,
//! each with its time on the playlist's timeline, and the conversions the
//! thumbnails need (packed RGB or luma at a given size).

use std::path::Path;

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

use crate::avio::{ChainInput, Part};
use crate::error::{Location, MediaError, Result};

/// A track's video frames. Times are seconds from `origin`: the first
/// picture of what was opened is at `origin` on the playlist's timeline
/// (segment `n` opens at the sum of the EXTINFs before it), so the
/// encoder's lead-in (its reorder delay) never shifts a thumbnail.
pub(crate) struct VideoFrames<'a> {
    input: ChainInput<'a>,
    stream: usize,
    time_base: ff::Rational,
    decoder: ff::decoder::Video,
    origin: f64,
    first_pts: Option<i64>,
    eof: bool,
}

impl<'a> VideoFrames<'a> {
    /// Opens `parts` (an init segment, then media segments) whose first
    /// picture sits at `origin` seconds. `name` is what errors report.
    pub fn open(parts: Vec<Part<'a>>, name: &Path, origin: f64) -> Result<Self> {
        let input = ChainInput::open(parts, name)?;
        let Some((stream, time_base)) = input.stream_of(ff::media::Type::Video) else {
            return Err(MediaError::Packaging {
                path: name.to_owned(),
                reason: "the track has no video stream".into(),
            });
        };
        let at = || Location {
            file: name.to_owned(),
            stream: Some(stream),
            timestamp: None,
        };
        let params = input.stream(stream).expect("found above").parameters();
        let mut ctx = ff::codec::context::Context::from_parameters(params)
            .map_err(|e| MediaError::ffmpeg_at("reading codec parameters", at(), e))?;
        // Slice threads: no frames held back, so a still needs no more
        // decoding than the frames up to it.
        ctx.set_threading(ff::threading::Config {
            kind: ff::threading::Type::Slice,
            count: 0,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| MediaError::ffmpeg_at("opening the video decoder", at(), e))?;
        Ok(Self {
            input,
            stream,
            time_base,
            decoder,
            origin,
            first_pts: None,
            eof: false,
        })
    }

    fn at(&self, pts: Option<i64>) -> Location {
        Location {
            file: self.input.name.clone(),
            stream: Some(self.stream),
            timestamp: pts.map(|p| p as f64 * f64::from(self.time_base)),
        }
    }

    /// The next picture in display order and its time, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<(f64, ff::frame::Video)>> {
        loop {
            let mut frame = ff::frame::Video::empty();
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    let Some(pts) = frame.timestamp().or(frame.pts()) else {
                        // A picture without a time cannot be placed; the
                        // demuxer gives every packet one, so this is rare.
                        continue;
                    };
                    let first = *self.first_pts.get_or_insert(pts);
                    let secs = self.origin + (pts - first) as f64 * f64::from(self.time_base);
                    return Ok(Some((secs, frame)));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => {}
                Err(e) => return Err(MediaError::ffmpeg_at("decoding video", self.at(None), e)),
            }
            if self.eof {
                return Ok(None);
            }
            match self.input.read_packet()? {
                Some(packet) if packet.stream() == self.stream => {
                    let pts = packet.pts();
                    self.decoder
                        .send_packet(&packet)
                        .map_err(|e| MediaError::ffmpeg_at("decoding video", self.at(pts), e))?;
                }
                Some(_) => {}
                None => {
                    self.eof = true;
                    self.decoder
                        .send_eof()
                        .map_err(|e| MediaError::ffmpeg_at("decoding video", self.at(None), e))?;
                }
            }
        }
    }
}

/// Converts decoded pictures to packed pixels of one size and format,
/// rebuilding the converter when the input changes shape.
pub(crate) struct Converter {
    width: u32,
    height: u32,
    format: Pixel,
    ctx: Option<(scaling::Context, (u32, u32, Pixel))>,
}

impl Converter {
    /// `format` is `RGB24` or `GRAY8`.
    pub fn new(width: u32, height: u32, format: Pixel) -> Self {
        Self {
            width,
            height,
            format,
            ctx: None,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The picture as tightly packed rows (3 bytes a pixel for RGB, 1 for luma).
    pub fn convert(&mut self, frame: &ff::frame::Video) -> Result<Vec<u8>> {
        let key = (frame.width(), frame.height(), frame.format());
        if self.ctx.as_ref().map(|c| c.1) != Some(key) {
            let ctx = scaling::Context::get(
                key.2,
                key.0,
                key.1,
                self.format,
                self.width,
                self.height,
                scaling::Flags::AREA,
            )
            .map_err(|e| MediaError::ffmpeg("converting a picture", e))?;
            self.ctx = Some((ctx, key));
        }
        let mut out = ff::frame::Video::empty();
        self.ctx
            .as_mut()
            .expect("built above")
            .0
            .run(frame, &mut out)
            .map_err(|e| MediaError::ffmpeg("converting a picture", e))?;
        let bytes_per_pixel = if self.format == Pixel::GRAY8 { 1 } else { 3 };
        let row = self.width as usize * bytes_per_pixel;
        let stride = out.stride(0);
        let data = out.data(0);
        let mut packed = Vec::with_capacity(row * self.height as usize);
        for y in 0..self.height as usize {
            packed.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(packed)
    }
}

/// `width`×`height` scaled to `target_width` wide, aspect kept, height even
/// (JPEG does not care, but the sprite's rows then line up on whole pixels
/// in every player's scaling).
pub(crate) fn scaled_size(width: u32, height: u32, target_width: u32) -> (u32, u32) {
    let w = target_width.min(width).max(2);
    let h = (u64::from(height) * u64::from(w) / u64::from(width.max(1))) as u32;
    (w, (h + (h & 1)).max(2))
}

/// Encodes packed RGB as a JPEG.
pub(crate) fn jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| MediaError::Packaging {
            path: path.to_owned(),
            reason: format!("encoding the JPEG: {e}"),
        })?;
    Ok(out)
}

/// Writes `bytes` beside `path` and renames it into place, so a reader
/// sees the old file or the whole new one, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, bytes).map_err(|e| MediaError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        MediaError::io("renaming into place", path, e)
    })
}

/// The name a file is written under before it is renamed into place.
pub(crate) fn temp_name(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_sizes_keep_the_aspect_with_even_heights() {
        assert_eq!(scaled_size(640, 360, 160), (160, 90));
        assert_eq!(scaled_size(320, 240, 160), (160, 120));
        assert_eq!(scaled_size(1080, 1920, 160), (160, 284));
        assert_eq!(scaled_size(854, 480, 160), (160, 90));
        // Never wider than the picture.
        assert_eq!(scaled_size(100, 50, 160), (100, 50));
    }
}
