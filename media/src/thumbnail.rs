//! The poster: a JPEG of the first non-black frame at or after one second
//! (the opening frames of phone clips are often black or a fade-in).

use std::path::Path;

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

use crate::error::{MediaError, Result};

pub const POSTER: &str = "poster.jpg";
/// Mean luma (0–255) under which a frame counts as black.
const BLACK_LEVEL: f64 = 24.0;
/// Give up looking for a non-black frame this long after the first candidate.
const SEARCH_SECS: f64 = 5.0;

/// Chooses the poster frame while the decoder runs: offered every frame, it
/// keeps a few candidates and stops looking as soon as one qualifies.
pub struct PosterPicker {
    width: u32,
    height: u32,
    start_frame: u64,
    stride: u64,
    last_frame: u64,
    scaler: Option<(scaling::Context, (u32, u32, Pixel))>,
    best: Option<(f64, Vec<u8>)>,
    done: bool,
}

impl PosterPicker {
    /// `width`×`height` is the poster size; `fps` the output frame rate.
    pub fn new(width: u32, height: u32, fps: f64) -> Self {
        Self {
            width,
            height,
            start_frame: fps.round() as u64,
            stride: (fps / 4.0).round().max(1.0) as u64,
            last_frame: (fps * (1.0 + SEARCH_SECS)).round() as u64,
            scaler: None,
            best: None,
            done: false,
        }
    }

    pub fn wants(&self, index: u64) -> bool {
        // Frame 0 is taken too, as the fallback for clips shorter than a second.
        !self.done
            && (index == 0
                || (index >= self.start_frame
                    && (index - self.start_frame).is_multiple_of(self.stride)))
    }

    pub fn offer(&mut self, index: u64, frame: &ff::frame::Video) -> Result<()> {
        let key = (frame.width(), frame.height(), frame.format());
        if self.scaler.as_ref().map(|s| s.1) != Some(key) {
            let ctx = scaling::Context::get(
                key.2,
                key.0,
                key.1,
                Pixel::RGB24,
                self.width,
                self.height,
                scaling::Flags::BICUBIC,
            )
            .map_err(|e| MediaError::ffmpeg("converting the poster frame", e))?;
            self.scaler = Some((ctx, key));
        }
        let mut rgb = ff::frame::Video::empty();
        self.scaler
            .as_mut()
            .expect("built above")
            .0
            .run(frame, &mut rgb)
            .map_err(|e| MediaError::ffmpeg("converting the poster frame", e))?;
        let packed = pack_rgb(&rgb, self.width as usize, self.height as usize);
        let luma = mean_luma(&packed);
        if self
            .best
            .as_ref()
            .is_none_or(|(l, _)| index >= self.start_frame || luma > *l)
        {
            self.best = Some((luma, packed));
        }
        if (index >= self.start_frame && luma >= BLACK_LEVEL) || index >= self.last_frame {
            self.done = true;
        }
        Ok(())
    }

    /// Writes the chosen frame as a JPEG.
    pub fn write(self, path: &Path) -> Result<()> {
        let Some((_, rgb)) = self.best else {
            return Err(MediaError::Packaging {
                path: path.to_owned(),
                reason: "no frame was offered for the poster".into(),
            });
        };
        let file = std::fs::File::create(path).map_err(|e| MediaError::io("creating", path, e))?;
        let mut out = std::io::BufWriter::new(file);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode(
                &rgb,
                self.width,
                self.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| MediaError::Packaging {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(())
    }
}

fn pack_rgb(frame: &ff::frame::Video, width: usize, height: usize) -> Vec<u8> {
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut out = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        out.extend_from_slice(&data[row * stride..row * stride + width * 3]);
    }
    out
}

fn mean_luma(rgb: &[u8]) -> f64 {
    let n = (rgb.len() / 3).max(1);
    let sum: f64 = rgb
        .chunks_exact(3)
        .map(|p| 0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2]))
        .sum();
    sum / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_tells_black_from_picture() {
        assert!(mean_luma(&[0u8; 300]) < BLACK_LEVEL);
        assert!(mean_luma(&[128u8; 300]) > BLACK_LEVEL);
    }

    #[test]
    fn candidates_are_frame_zero_then_quarter_seconds_after_one_second() {
        let p = PosterPicker::new(64, 36, 30.0);
        let wanted: Vec<u64> = (0..60).filter(|&i| p.wants(i)).collect();
        assert_eq!(wanted, [0, 30, 38, 46, 54]);
    }
}
