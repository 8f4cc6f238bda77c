//! The poster: a JPEG of the first non-black frame at or after one second
//! (the opening frames of phone clips are often black or a fade-in).
//! Two pickers: [`PosterPicker`] sees frames while a transcode decodes its
//! source; [`ladder_poster`] decodes a finished ladder's top rung (its first
//! segments only) and also passes over blurred frames (a focus pull, motion
//! blur, a fade), judged by the variance of the Laplacian of the luma.

use std::path::Path;

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

use crate::avio::Part;
use crate::error::{MediaError, Result};
use crate::frames::{jpeg, scaled_size, write_atomically, Converter, VideoFrames};
use crate::ladder::Track;

pub const POSTER: &str = "poster.jpg";
/// Mean luma (0–255) under which a frame counts as black.
pub(crate) const BLACK_LEVEL: f64 = 24.0;
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

/// Candidates are judged at this width (aspect kept): blur is a property
/// of the picture, not of its rung, so every rung is measured alike.
const ANALYSIS_WIDTH: u32 = 320;
/// Under this variance of the Laplacian (4-neighbour, on the luma at
/// [`ANALYSIS_WIDTH`]) a picture counts as blurred. Measured: a sharp test
/// card ≈ 1,150, Big Buck Bunny's sky once faded in 100–300, the same
/// frames mid fade-in 7–41 (a fade lowers contrast like a blur does), a
/// Gaussian blur of σ = 4 px ≈ 9, a black or flat frame 0. Too strict a
/// level costs little: the sharpest candidate of the window is taken.
const BLUR_LEVEL: f64 = 50.0;
/// Candidates from this time on, every [`CANDIDATE_STEP`] seconds.
const POSTER_FROM: f64 = 1.0;
const CANDIDATE_STEP: f64 = 0.25;

/// The frame [`ladder_poster`] chose and how it measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosterChoice {
    /// Seconds on the playlist's timeline.
    pub time: f64,
    /// Mean luma, 0–255.
    pub luma: f64,
    /// Variance of the Laplacian of the luma.
    pub sharpness: f64,
}

impl PosterChoice {
    fn qualifies(&self) -> bool {
        self.luma >= BLACK_LEVEL && self.sharpness >= BLUR_LEVEL
    }

    /// Which of two rejected candidates is the better fallback: a
    /// non-black one over a black one, then the sharper (or, both black,
    /// the brighter).
    fn rank(&self) -> (bool, f64) {
        let lit = self.luma >= BLACK_LEVEL;
        (lit, if lit { self.sharpness } else { self.luma })
    }
}

/// Writes `path` from the first frame at or after one second (then every
/// quarter second, for five seconds) of `track` — the ladder's top rung —
/// that is neither black nor blurred; failing that, the best candidate
/// seen (frame 0 is one, for clips shorter than a second). Decodes only the
/// segments that start within the search window.
pub(crate) fn ladder_poster(track: &Track, path: &Path) -> Result<PosterChoice> {
    let until = POSTER_FROM + SEARCH_SECS;
    let mut parts = vec![Part::File(track.init.clone())];
    parts.extend(
        track
            .playlist
            .segments
            .iter()
            .zip(&track.segments)
            .take_while(|(s, _)| s.start < until)
            .map(|(_, p)| Part::File(p.clone())),
    );
    let mut frames = VideoFrames::open(parts, &track.init, 0.0)?;
    let mut analysis: Option<Converter> = None;
    let mut full: Option<Converter> = None;
    let mut best: Option<(PosterChoice, Vec<u8>)> = None;
    let mut next = POSTER_FROM;
    let mut first = true;
    while let Some((t, frame)) = frames.next_frame()? {
        if t > until + CANDIDATE_STEP {
            break;
        }
        let candidate = first || t + 1e-3 >= next;
        first = false;
        if !candidate {
            continue;
        }
        while next <= t + 1e-3 {
            next += CANDIDATE_STEP;
        }
        let a = analysis.get_or_insert_with(|| {
            let (w, h) = scaled_size(frame.width(), frame.height(), ANALYSIS_WIDTH);
            Converter::new(w, h, Pixel::RGB24)
        });
        let rgb = a.convert(&frame)?;
        let (w, h) = a.size();
        let choice = PosterChoice {
            time: t,
            luma: mean_luma(&rgb),
            sharpness: laplacian_variance(&luma_plane(&rgb), w as usize, h as usize),
        };
        let better = best.as_ref().is_none_or(|(b, _)| {
            (t >= POSTER_FROM && choice.qualifies()) || choice.rank() > b.rank()
        });
        if better {
            let f = full
                .get_or_insert_with(|| Converter::new(frame.width(), frame.height(), Pixel::RGB24));
            best = Some((choice, f.convert(&frame)?));
        }
        if t >= POSTER_FROM && choice.qualifies() {
            break;
        }
    }
    let (Some((choice, rgb)), Some(f)) = (best, full) else {
        return Err(MediaError::Packaging {
            path: track.init.clone(),
            reason: "no picture decoded for the poster".into(),
        });
    };
    let (w, h) = f.size();
    write_atomically(path, &jpeg(&rgb, w, h, 85, path)?)?;
    Ok(choice)
}

/// Luma (BT.709 weights, as [`mean_luma`]) of packed RGB.
fn luma_plane(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.2126 * f32::from(p[0]) + 0.7152 * f32::from(p[1]) + 0.0722 * f32::from(p[2]))
        .collect()
}

/// Variance of the 4-neighbour Laplacian over the interior pixels: high
/// where there are crisp edges, near zero for a blurred or flat picture
/// (Pech-Pacheco et al., 2000).
fn laplacian_variance(luma: &[f32], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 {
        return 0.0;
    }
    let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let i = y * width + x;
            let l = 4.0 * luma[i] - luma[i - 1] - luma[i + 1] - luma[i - width] - luma[i + width];
            let l = f64::from(l);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sq / n - mean * mean
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

pub(crate) fn mean_luma(rgb: &[u8]) -> f64 {
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
    fn the_laplacian_tells_edges_from_flat_and_smooth() {
        let (w, h) = (64usize, 48usize);
        let flat = vec![100.0f32; w * h];
        assert_eq!(laplacian_variance(&flat, w, h), 0.0);
        // A linear ramp has no second derivative.
        let ramp: Vec<f32> = (0..w * h).map(|i| (i % w) as f32 * 3.0).collect();
        assert!(laplacian_variance(&ramp, w, h) < 1e-6);
        let checks: Vec<f32> = (0..w * h)
            .map(|i| {
                if ((i % w) / 4 + (i / w) / 4) % 2 == 0 {
                    40.0
                } else {
                    200.0
                }
            })
            .collect();
        assert!(laplacian_variance(&checks, w, h) > 1000.0);
    }

    #[test]
    fn candidates_are_frame_zero_then_quarter_seconds_after_one_second() {
        let p = PosterPicker::new(64, 36, 30.0);
        let wanted: Vec<u64> = (0..60).filter(|&i| p.wants(i)).collect();
        assert_eq!(wanted, [0, 30, 38, 46, 54]);
    }
}
