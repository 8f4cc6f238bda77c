//! The ladder planner (spec §Media pipeline 3): from what the probe found to
//! the exact rungs, frame rate and GOP every backend must produce. Pure
//! arithmetic, so every rule is unit-tested here.

use serde::Serialize;

use crate::error::{MediaError, Result};
use crate::probe::SourceInfo;

/// Rung heights on the short side, largest first.
pub const STANDARD_RUNGS: [u32; 4] = [1080, 720, 480, 360];
/// An IDR every two seconds, at the same frame index in every rung.
pub const GOP_SECONDS: u32 = 2;
/// Segments are two GOPs (4 s): inside the spec's 4–6 s, and short enough that
/// a short-video player starts fast.
pub const GOPS_PER_SEGMENT: u32 = 2;
/// The highest output frame rate; faster sources are halved until they fit.
pub const MAX_FPS: f64 = 60.0;

/// Frame rates a variable-rate source is snapped to when its average is close
/// (phones record "30 fps" that averages 29.87).
const STANDARD_RATES: &[(i32, i32)] = &[
    (24000, 1001),
    (24, 1),
    (25, 1),
    (30000, 1001),
    (30, 1),
    (48, 1),
    (50, 1),
    (60000, 1001),
    (60, 1),
    (90, 1),
    (100, 1),
    (120000, 1001),
    (120, 1),
    (240, 1),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// `720p` etc.: the short side, whatever the orientation.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Target average bit rate (bits/s), from Apple's HLS authoring ladder.
    pub bitrate: u64,
    /// VBV ceiling and buffer: keep the measured peak near the target.
    pub max_bitrate: u64,
    pub buffer_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioPlan {
    pub channels: u16,
    pub sample_rate: u32,
    pub bitrate: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LadderPlan {
    /// The picture as the viewer sees it (rotation and sample aspect applied).
    pub display_width: u32,
    pub display_height: u32,
    /// Constant output frame rate, as a fraction.
    pub frame_rate: (i32, i32),
    pub gop_frames: u32,
    pub segment_frames: u32,
    pub deinterlace: bool,
    /// Clockwise rotation applied to the pixels (0/90/180/270).
    pub rotation: u32,
    /// Frames the output is expected to have (for progress; the real count wins).
    pub expected_frames: u64,
    pub rungs: Vec<Rung>,
    pub audio: Option<AudioPlan>,
    /// Frame indices of the IDRs when they follow the source's key frames
    /// (so the source itself can be a rung); `None`: every `gop_frames`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_frames: Option<Vec<u64>>,
    /// The top rung is the source's own video, remuxed (never encoded).
    pub remux_top: bool,
}

impl LadderPlan {
    /// Plans a live ladder for a camera's `width` x `height` at `frame_rate`:
    /// an IDR every [`GOP_SECONDS`] and one GOP per segment (live segments
    /// are short so the latency is), `requested` rung heights as in
    /// [`LadderPlan::new`].
    pub fn live(
        width: u32,
        height: u32,
        frame_rate: (i32, i32),
        requested: &[u32],
        audio: Option<AudioPlan>,
    ) -> Result<Self> {
        let wanted = wanted_rungs(requested)?;
        if width < 2 || height < 2 || frame_rate.0 <= 0 || frame_rate.1 <= 0 {
            return Err(MediaError::InvalidRequest(format!(
                "a live source of {width}x{height} at {}/{} fps",
                frame_rate.0, frame_rate.1
            )));
        }
        let fps = f64::from(frame_rate.0) / f64::from(frame_rate.1);
        let gop_frames = gop_frames(fps);
        Ok(Self {
            display_width: width,
            display_height: height,
            frame_rate,
            gop_frames,
            segment_frames: gop_frames,
            deinterlace: false,
            rotation: 0,
            expected_frames: 0,
            rungs: plan_rungs(width, height, fps, &wanted),
            audio,
            key_frames: None,
            remux_top: false,
        })
    }

    /// Plans the ladder for `source`, restricted to `requested` rung heights
    /// (a subset of [`STANDARD_RUNGS`]; empty means all).
    pub fn new(source: &SourceInfo, requested: &[u32]) -> Result<Self> {
        let wanted = wanted_rungs(requested)?;
        let v = &source.video;
        let (dw, dh) = v.display_size();
        let frame_rate = output_frame_rate(v.avg_frame_rate, v.base_frame_rate);
        let fps = f64::from(frame_rate.0) / f64::from(frame_rate.1);
        let gop_frames = gop_frames(fps);
        let rungs = plan_rungs(dw, dh, fps, &wanted);
        let audio = source.audio.as_ref().map(|a| {
            let channels = a.channels.clamp(1, 2);
            AudioPlan {
                channels,
                sample_rate: if matches!(a.sample_rate, 44_100 | 48_000) {
                    a.sample_rate
                } else {
                    48_000
                },
                bitrate: 64_000 * u64::from(channels),
            }
        });
        Ok(Self {
            display_width: dw,
            display_height: dh,
            frame_rate,
            gop_frames,
            segment_frames: gop_frames * GOPS_PER_SEGMENT,
            deinterlace: v.interlaced,
            rotation: v.rotation,
            expected_frames: (source.duration_secs * fps).ceil().max(1.0) as u64,
            rungs,
            audio,
            key_frames: None,
            remux_top: false,
        })
    }

    /// Puts the IDRs on the source's key frames (frame indices, starting
    /// with 0) and makes the top rung the source itself.
    pub fn follow_source(&mut self, key_frames: Vec<u64>) {
        debug_assert_eq!(key_frames.first(), Some(&0));
        self.key_frames = Some(key_frames);
        self.remux_top = true;
    }

    /// Whether output frame `index` is an IDR in every rung.
    pub fn is_idr(&self, index: u64) -> bool {
        match &self.key_frames {
            Some(k) => k.binary_search(&index).is_ok(),
            None => index.is_multiple_of(u64::from(self.gop_frames)),
        }
    }

    /// The longest distance between IDRs, in frames (an encoder must never
    /// add one of its own in between).
    pub fn max_gop_frames(&self) -> u32 {
        match &self.key_frames {
            Some(k) => {
                let tail = self.expected_frames.saturating_sub(*k.last().unwrap_or(&0));
                k.windows(2)
                    .map(|w| w[1] - w[0])
                    .chain([tail])
                    .max()
                    .unwrap_or(1)
                    .clamp(1, u64::from(u32::MAX)) as u32
            }
            None => self.gop_frames,
        }
    }

    /// Where every track's segments start, the same instants in every rung
    /// and in the audio: every segment length with IDRs every GOP; with
    /// the source's key frames, each the first IDR a segment length or more
    /// after the previous start.
    pub fn cuts(&self) -> crate::cmaf::Cuts {
        let (num, den) = self.frame_rate;
        match &self.key_frames {
            None => crate::cmaf::Cuts::Every((
                i64::from(self.segment_frames) * i64::from(den),
                i64::from(num),
            )),
            Some(keys) => {
                // A segment lasts at least the segment length (key frames
                // at most MAX_KEY_INTERVAL apart keep it within 4–6 s).
                let seg = u64::from(self.segment_frames);
                let mut at = Vec::new();
                let mut next = seg;
                for &k in keys.iter().skip(1) {
                    if k >= next {
                        at.push((k as i64 * i64::from(den), i64::from(num)));
                        next = k + seg;
                    }
                }
                crate::cmaf::Cuts::At(at.into())
            }
        }
    }

    /// The rungs that are encoded (all but a remuxed top one).
    pub fn encoded_rungs(&self) -> &[Rung] {
        &self.rungs[usize::from(self.remux_top).min(self.rungs.len())..]
    }

    pub fn fps(&self) -> f64 {
        f64::from(self.frame_rate.0) / f64::from(self.frame_rate.1)
    }

    /// Seconds covered by `frames` output frames.
    pub fn frames_to_secs(&self, frames: u64) -> f64 {
        frames as f64 * f64::from(self.frame_rate.1) / f64::from(self.frame_rate.0)
    }
}

/// The constant output rate. The average rate is what the viewer sees, so it
/// wins when it is (close to) a standard rate. A variable-rate source whose
/// average is not standard but whose base rate is — a camera that dropped
/// frames — keeps its base rate, with the gaps filled by repeated frames, so
/// motion keeps its timing. Otherwise the average is used as is. Rates above
/// [`MAX_FPS`] are halved until they fit.
fn output_frame_rate(avg: (i32, i32), base: (i32, i32)) -> (i32, i32) {
    let valid = |(n, d): (i32, i32)| n > 0 && d > 0 && f64::from(n) / f64::from(d) < 1000.0;
    let as_f = |(n, d): (i32, i32)| f64::from(n) / f64::from(d);
    let standard = |r: (i32, i32)| {
        STANDARD_RATES
            .iter()
            .copied()
            .map(|s| (s, (as_f(s) / as_f(r) - 1.0).abs()))
            .filter(|&(_, err)| err < 0.01)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    };
    let mut rate = match (valid(avg), valid(base)) {
        (true, _) => standard(avg)
            .or_else(|| {
                standard(base)
                    .filter(|&b| valid(base) && as_f(b) >= as_f(avg) && as_f(b) <= as_f(avg) * 1.6)
            })
            .unwrap_or_else(|| {
                let milli = (as_f(avg) * 1000.0).round().max(1000.0) as i32;
                let g = gcd(milli, 1000);
                (milli / g, 1000 / g)
            }),
        (false, true) => standard(base).unwrap_or(base),
        (false, false) => (30, 1),
    };
    while as_f(rate) > MAX_FPS + 0.01 {
        rate = if rate.0 % 2 == 0 {
            (rate.0 / 2, rate.1)
        } else {
            (rate.0, rate.1 * 2)
        };
    }
    rate
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a.abs().max(1)
    } else {
        gcd(b, a % b)
    }
}

/// Apple HLS authoring ladder (kbit/s at ≤ 30 fps) for our rung heights.
fn base_kbps(short_side: u32) -> u64 {
    match short_side {
        1080.. => 6000,
        720.. => 3000,
        480.. => 1100,
        _ => 365,
    }
}

/// The rung heights asked for (all standard ones when none), refused when
/// one is not standard.
pub fn wanted_rungs(requested: &[u32]) -> Result<Vec<u32>> {
    if let Some(bad) = requested.iter().find(|r| !STANDARD_RUNGS.contains(r)) {
        return Err(MediaError::InvalidRequest(format!(
            "rung {bad} is not one of {}",
            STANDARD_RUNGS.map(|r| r.to_string()).join(", ")
        )));
    }
    Ok(if requested.is_empty() {
        STANDARD_RUNGS.to_vec()
    } else {
        requested.to_vec()
    })
}

/// Frames between IDRs at `fps`: [`GOP_SECONDS`], at least one frame.
fn gop_frames(fps: f64) -> u32 {
    ((f64::from(GOP_SECONDS) * fps).round() as u32).max(1)
}

fn plan_rungs(dw: u32, dh: u32, fps: f64, wanted: &[u32]) -> Vec<Rung> {
    let landscape = dw >= dh;
    let short = dw.min(dh);
    let aspect = f64::from(dw) / f64::from(dh);
    let fps_factor = if fps > 30.5 { 1.4 } else { 1.0 };
    let rung = |short_out: u32, kbps: u64| {
        let (w, h) = if landscape {
            (
                even(f64::from(short_out) * aspect).min(even_floor(dw)),
                short_out,
            )
        } else {
            (
                short_out,
                even(f64::from(short_out) / aspect).min(even_floor(dh)),
            )
        };
        let bitrate = (kbps as f64 * fps_factor * 1000.0).round() as u64;
        Rung {
            name: format!("{short_out}p"),
            width: w.max(2),
            height: h.max(2),
            bitrate,
            max_bitrate: bitrate * 12 / 10,
            buffer_size: bitrate * 2,
        }
    };
    let mut sorted: Vec<u32> = wanted.iter().copied().filter(|&r| r <= short).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    if sorted.is_empty() {
        // Smaller than every rung asked for: one rung at the source's own size.
        let own = even_floor(short).max(2);
        let pixels = f64::from(dw) * f64::from(dh);
        let kbps = ((365.0 * pixels / (640.0 * 360.0)).round() as u64).clamp(145, 365);
        return vec![rung(own, kbps)];
    }
    sorted.into_iter().map(|r| rung(r, base_kbps(r))).collect()
}

/// Nearest even number (H.264 4:2:0 needs even dimensions).
fn even(x: f64) -> u32 {
    (((x / 2.0).round() as u32) * 2).max(2)
}

fn even_floor(x: u32) -> u32 {
    x / 2 * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{AudioInfo, VideoInfo};

    fn source(w: u32, h: u32, fps: (i32, i32)) -> SourceInfo {
        SourceInfo {
            path: "test.mp4".into(),
            size_bytes: 1,
            container: "mov,mp4".into(),
            duration_secs: 10.0,
            video: VideoInfo {
                index: 0,
                codec: "h264".into(),
                width: w,
                height: h,
                sample_aspect: (1, 1),
                pixel_format: "yuv420p".into(),
                bit_depth: 8,
                rotation: 0,
                avg_frame_rate: fps,
                base_frame_rate: fps,
                interlaced: false,
                time_base: (1, 90_000),
                start_pts: 0,
            },
            audio: None,
        }
    }

    fn sizes(p: &LadderPlan) -> Vec<(u32, u32)> {
        p.rungs.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn landscape_1080p_gets_the_full_ladder() {
        let p = LadderPlan::new(&source(1920, 1080, (30, 1)), &[]).unwrap();
        assert_eq!(
            sizes(&p),
            [(1920, 1080), (1280, 720), (854, 480), (640, 360)]
        );
        assert_eq!(p.rungs[0].name, "1080p");
        assert_eq!((p.gop_frames, p.segment_frames), (60, 120));
        assert_eq!(p.rungs[0].bitrate, 6_000_000);
    }

    #[test]
    fn portrait_uses_the_short_side() {
        let p = LadderPlan::new(&source(1080, 1920, (30, 1)), &[]).unwrap();
        assert_eq!(
            sizes(&p),
            [(1080, 1920), (720, 1280), (480, 854), (360, 640)]
        );
        assert_eq!(p.rungs[3].name, "360p");
    }

    #[test]
    fn rotation_turns_a_landscape_coded_frame_into_a_portrait_ladder() {
        let mut s = source(1920, 1080, (30, 1));
        s.video.rotation = 90;
        let p = LadderPlan::new(&s, &[]).unwrap();
        assert_eq!((p.display_width, p.display_height), (1080, 1920));
        assert_eq!(sizes(&p)[0], (1080, 1920));
        assert_eq!(p.rotation, 90);
    }

    #[test]
    fn never_upscales_and_small_sources_get_one_rung_at_their_size() {
        let p = LadderPlan::new(&source(640, 360, (30, 1)), &[]).unwrap();
        assert_eq!(sizes(&p), [(640, 360)]);
        let p = LadderPlan::new(&source(320, 240, (24, 1)), &[]).unwrap();
        assert_eq!(sizes(&p), [(320, 240)]);
        assert_eq!(p.rungs[0].name, "240p");
        assert_eq!(p.rungs[0].bitrate, 145_000);
        let p = LadderPlan::new(&source(1280, 720, (30, 1)), &[1080]).unwrap();
        assert_eq!(
            sizes(&p),
            [(1280, 720)],
            "asked only for a rung above the source"
        );
    }

    #[test]
    fn odd_sizes_become_even_and_never_exceed_the_source() {
        let p = LadderPlan::new(&source(641, 361, (30, 1)), &[]).unwrap();
        assert_eq!(sizes(&p), [(640, 360)]);
        let p = LadderPlan::new(&source(854, 480, (30, 1)), &[]).unwrap();
        assert_eq!(
            sizes(&p),
            [(854, 480), (640, 360)],
            "640.5 rounds to the nearest even width"
        );
        let p = LadderPlan::new(&source(333, 201, (30, 1)), &[]).unwrap();
        assert_eq!(sizes(&p), [(332, 200)]);
        for r in &p.rungs {
            assert!(r.width % 2 == 0 && r.height % 2 == 0);
        }
    }

    #[test]
    fn non_square_pixels_are_normalised() {
        let mut s = source(720, 576, (25, 1));
        s.video.sample_aspect = (16, 15);
        let p = LadderPlan::new(&s, &[]).unwrap();
        assert_eq!((p.display_width, p.display_height), (768, 576));
        assert_eq!(sizes(&p), [(640, 480), (480, 360)]);
    }

    #[test]
    fn frame_rates_are_kept_snapped_or_halved() {
        assert_eq!(output_frame_rate((50, 1), (50, 1)), (50, 1));
        assert_eq!(output_frame_rate((60, 1), (60, 1)), (60, 1));
        assert_eq!(output_frame_rate((120, 1), (120, 1)), (60, 1));
        assert_eq!(output_frame_rate((240, 1), (240, 1)), (60, 1));
        assert_eq!(output_frame_rate((100, 1), (100, 1)), (50, 1));
        assert_eq!(
            output_frame_rate((2987, 100), (30, 1)),
            (30000, 1001),
            "VFR phone footage"
        );
        assert_eq!(
            output_frame_rate((30, 1), (30, 1)),
            (30, 1),
            "closest standard rate, not the first"
        );
        assert_eq!(output_frame_rate((2997, 100), (30000, 1001)), (30000, 1001));
        assert_eq!(
            output_frame_rate((45, 2), (30, 1)),
            (30, 1),
            "dropped frames keep the camera's rate"
        );
        assert_eq!(
            output_frame_rate((25, 1), (50, 1)),
            (25, 1),
            "interlaced: frame rate, not field rate"
        );
        assert_eq!(output_frame_rate((0, 0), (25, 1)), (25, 1));
        assert_eq!(output_frame_rate((0, 0), (0, 0)), (30, 1));
        assert_eq!(output_frame_rate((125, 10), (125, 10)), (25, 2));
    }

    #[test]
    fn high_frame_rates_get_more_bits() {
        let p30 = LadderPlan::new(&source(1920, 1080, (30, 1)), &[]).unwrap();
        let p60 = LadderPlan::new(&source(1920, 1080, (60, 1)), &[]).unwrap();
        assert!(p60.rungs[0].bitrate > p30.rungs[0].bitrate);
        assert_eq!(p60.gop_frames, 120);
    }

    #[test]
    fn rung_subsets_are_honoured_and_unknown_rungs_rejected() {
        let p = LadderPlan::new(&source(1920, 1080, (30, 1)), &[720, 360]).unwrap();
        assert_eq!(sizes(&p), [(1280, 720), (640, 360)]);
        let err = LadderPlan::new(&source(1920, 1080, (30, 1)), &[500]).unwrap_err();
        assert!(err.to_string().contains("rung 500"), "{err}");
    }

    #[test]
    fn audio_is_downmixed_to_stereo_and_resampled_when_unusual() {
        let mut s = source(1920, 1080, (30, 1));
        s.audio = Some(AudioInfo {
            index: 1,
            codec: "ac3".into(),
            channels: 6,
            sample_rate: 96_000,
        });
        let a = LadderPlan::new(&s, &[]).unwrap().audio.unwrap();
        assert_eq!((a.channels, a.sample_rate, a.bitrate), (2, 48_000, 128_000));
        s.audio = Some(AudioInfo {
            index: 1,
            codec: "aac".into(),
            channels: 1,
            sample_rate: 44_100,
        });
        let a = LadderPlan::new(&s, &[]).unwrap().audio.unwrap();
        assert_eq!((a.channels, a.sample_rate, a.bitrate), (1, 44_100, 64_000));
    }
}
