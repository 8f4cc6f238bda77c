//! The composition rules (FR6 duets and stitches) as libavfilter graph
//! descriptions: pure functions of what the probe found, so every rule is
//! unit-tested here without decoding anything.
//!
//! The graph's sources are named `v{i}` / `a{i}` (input `i`'s decoded
//! picture and sound, timestamps from its first picture) and its sinks
//! `vout` / `aout`. Every input goes through the same normalisation: its
//! used span cut out and re-timed (speed), sample aspect made square,
//! turned upright, scaled to *fit* its box (aspect kept: padded, never
//! stretched), padded black to the box, the canvas's frame rate, 4:2:0;
//! its sound resampled to 48 kHz stereo float (or silence of its length
//! when it has none).
//!
//! - duet: the original (left) and the recording (right) side by side,
//!   each in a half of the canvas as tall as the taller input (at most
//!   1080) and as wide as the wider of the two once scaled to that height;
//!   sound mixed (`amix`). It lasts as long as the *shorter* of the two: a
//!   duet is the two performances together, so neither half freezes on a
//!   last frame or plays against silence.
//! - stitch: the original's clip `[start, end)`, then the recording, both
//!   fitted to the recording's size (at most 1920 on the long side) and
//!   frame rate; sound concatenated (`concat` pads a segment's shorter
//!   stream with silence). It lasts the clip plus the recording.
//! - speed only: the recording re-timed, at its own size and rate.

use super::speed;
use super::speed::num;

/// What a graph needs to know of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// Display size: sample aspect applied, then rotation.
    pub display: (u32, u32),
    /// The coded pixels' aspect (1:1 is square).
    pub sample_aspect: (i32, i32),
    /// Clockwise rotation a player would apply: 0, 90, 180, 270.
    pub rotation: u32,
    pub has_audio: bool,
    /// The span used, in seconds of the input from its first picture.
    pub start: f64,
    pub end: f64,
    /// Whether `[start, end)` is a cut of the input (trimmed in the graph).
    pub trimmed: bool,
    pub speed: f64,
    /// The input's own output frame rate (the ladder's rule for it).
    pub frame_rate: (i32, i32),
}

impl Shot {
    /// Seconds this input lasts in the composition.
    pub fn duration(&self) -> f64 {
        (self.end - self.start).max(0.0) / self.speed
    }
}

/// The composed picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub frame_rate: (i32, i32),
}

/// The tallest duet canvas, and the widest (two halves).
pub const DUET_MAX_HEIGHT: u32 = 1080;
pub const MAX_WIDTH: u32 = 3840;
/// A stitch canvas's long side at most.
pub const STITCH_MAX_SIDE: u32 = 1920;
/// The composed sound.
pub const SAMPLE_RATE: u32 = 48_000;

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

fn rate_secs(r: (i32, i32)) -> f64 {
    if r.0 > 0 && r.1 > 0 {
        f64::from(r.0) / f64::from(r.1)
    } else {
        0.0
    }
}

/// The faster of two frame rates (30 when neither is known).
fn faster(a: (i32, i32), b: (i32, i32)) -> (i32, i32) {
    match (rate_secs(a), rate_secs(b)) {
        (x, y) if x <= 0.0 && y <= 0.0 => (30, 1),
        (x, y) if x >= y => a,
        _ => b,
    }
}

/// The duet canvas: two halves of `half × height`, where height is the
/// taller input's (at most [`DUET_MAX_HEIGHT`]) and `half` the wider input
/// once scaled to it; smaller all round if that would pass [`MAX_WIDTH`].
pub fn duet_canvas(original: &Shot, recording: &Shot) -> Canvas {
    let tallest = original.display.1.max(recording.display.1).max(2);
    let mut height = f64::from(tallest.min(DUET_MAX_HEIGHT));
    let scaled = |s: &Shot| f64::from(s.display.0) * height / f64::from(s.display.1.max(1));
    let mut half = scaled(original).max(scaled(recording));
    if 2.0 * half > f64::from(MAX_WIDTH) {
        let k = f64::from(MAX_WIDTH) / (2.0 * half);
        half *= k;
        height *= k;
    }
    let half = even(half);
    Canvas {
        width: 2 * half,
        height: even(height),
        frame_rate: faster(original.frame_rate, recording.frame_rate),
    }
}

/// The stitch canvas: the recording's display size (even, at most
/// [`STITCH_MAX_SIDE`] on the long side) and frame rate.
pub fn stitch_canvas(recording: &Shot) -> Canvas {
    single_canvas(recording, STITCH_MAX_SIDE)
}

/// A single input's canvas: its display size, even, at most `max_side` on
/// the long side, at its own frame rate.
pub fn single_canvas(shot: &Shot, max_side: u32) -> Canvas {
    let (w, h) = (
        f64::from(shot.display.0.max(2)),
        f64::from(shot.display.1.max(2)),
    );
    let k = (f64::from(max_side) / w.max(h)).min(1.0);
    Canvas {
        width: even(w * k),
        height: even(h * k),
        frame_rate: faster(shot.frame_rate, (0, 0)),
    }
}

/// The frame rate and time base every composed picture leaves with.
fn video_tail(canvas: &Canvas) -> String {
    let (n, d) = canvas.frame_rate;
    format!("fps=fps={n}/{d},format=yuv420p,settb=expr={d}/{n}")
}

/// Input `i`'s picture normalised into a `bw × bh` box.
fn video_chain(i: usize, shot: &Shot, bw: u32, bh: u32, canvas: &Canvas) -> String {
    let mut f = Vec::new();
    if shot.trimmed {
        f.push(format!(
            "trim=start={}:end={}",
            num(shot.start),
            num(shot.end)
        ));
    }
    f.push(speed::video_filter(shot.speed));
    let (n, d) = shot.sample_aspect;
    if n > 0 && d > 0 && n != d {
        // Square pixels first, so "fit" below sees the displayed shape.
        f.push("scale=w=trunc(iw*sar/2)*2:h=ih,setsar=1".into());
    }
    match shot.rotation {
        90 => f.push("transpose=clock".into()),
        180 => f.push("hflip,vflip".into()),
        270 => f.push("transpose=cclock".into()),
        _ => {}
    }
    f.push(format!(
        "scale=w={bw}:h={bh}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    ));
    f.push(format!(
        "setsar=1,pad=w={bw}:h={bh}:x=(ow-iw)/2:y=(oh-ih)/2:color=black"
    ));
    f.push(video_tail(canvas));
    format!("[v{i}]{}", f.join(","))
}

/// Input `i`'s sound (or silence as long as it lasts) as 48 kHz stereo float.
fn audio_chain(i: usize, shot: &Shot) -> String {
    let format =
        format!("aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=stereo");
    if !shot.has_audio {
        return format!(
            "anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=duration={},{format}",
            num(shot.duration())
        );
    }
    let mut f = Vec::new();
    if shot.trimmed {
        f.push(format!(
            "atrim=start={}:end={},asetpts=PTS-STARTPTS",
            num(shot.start),
            num(shot.end)
        ));
    }
    // Gaps and a late start become silence, so sound stays with picture.
    f.push(format!("aresample={SAMPLE_RATE}:async=1:first_pts=0"));
    let tempo = speed::audio_filter(shot.speed);
    if !tempo.is_empty() {
        f.push(tempo);
    }
    f.push(format);
    format!("[a{i}]{}", f.join(","))
}

fn audio_tail() -> String {
    format!("asettb=expr=1/{SAMPLE_RATE}")
}

/// The duet graph: input 0 the original (left), input 1 the recording.
pub fn duet_graph(original: &Shot, recording: &Shot, canvas: &Canvas) -> String {
    let half = canvas.width / 2;
    let length = num(original.duration().min(recording.duration()));
    [
        format!("{}[l]", video_chain(0, original, half, canvas.height, canvas)),
        format!("{}[r]", video_chain(1, recording, half, canvas.height, canvas)),
        format!("[l][r]hstack=inputs=2:shortest=1,trim=end={length}[vout]"),
        format!("{}[la]", audio_chain(0, original)),
        format!("{}[ra]", audio_chain(1, recording)),
        format!(
            "[la][ra]amix=inputs=2:duration=shortest:dropout_transition=0,atrim=end={length},{}[aout]",
            audio_tail()
        ),
    ]
    .join(";")
}

/// The stitch graph: input 0 the original (its clip), input 1 the recording.
pub fn stitch_graph(clip: &Shot, recording: &Shot, canvas: &Canvas) -> String {
    let (w, h) = (canvas.width, canvas.height);
    [
        format!("{}[cv]", video_chain(0, clip, w, h, canvas)),
        format!("{}[ca]", audio_chain(0, clip)),
        format!("{}[rv]", video_chain(1, recording, w, h, canvas)),
        format!("{}[ra]", audio_chain(1, recording)),
        format!(
            "[cv][ca][rv][ra]concat=n=2:v=1:a=1[sv][sa];[sv]settb=expr={}/{}[vout];[sa]{}[aout]",
            canvas.frame_rate.1,
            canvas.frame_rate.0,
            audio_tail()
        ),
    ]
    .join(";")
}

/// One input re-timed (speed), at its canvas.
pub fn single_graph(shot: &Shot, canvas: &Canvas) -> String {
    [
        format!(
            "{}[vout]",
            video_chain(0, shot, canvas.width, canvas.height, canvas)
        ),
        format!("{},{}[aout]", audio_chain(0, shot), audio_tail()),
    ]
    .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(w: u32, h: u32, secs: f64) -> Shot {
        Shot {
            display: (w, h),
            sample_aspect: (1, 1),
            rotation: 0,
            has_audio: true,
            start: 0.0,
            end: secs,
            trimmed: false,
            speed: 1.0,
            frame_rate: (30, 1),
        }
    }

    #[test]
    fn a_duet_is_two_equal_halves_as_tall_as_the_taller_input() {
        // The shared clips: 4:3 at 240 and 16:9 at 360.
        let c = duet_canvas(&shot(320, 240, 10.0), &shot(640, 360, 8.0));
        assert_eq!((c.width, c.height), (1280, 360));
        // Two portrait phones: each half keeps 9:16.
        let c = duet_canvas(&shot(1080, 1920, 10.0), &shot(720, 1280, 8.0));
        assert_eq!((c.width, c.height), (1216, 1080));
        // Too wide: everything shrinks, aspect kept.
        let c = duet_canvas(&shot(3840, 1080, 1.0), &shot(640, 360, 1.0));
        assert_eq!((c.width, c.height), (3840, 540));
        // The faster frame rate wins.
        let mut fast = shot(640, 360, 1.0);
        fast.frame_rate = (60000, 1001);
        assert_eq!(
            duet_canvas(&shot(320, 240, 1.0), &fast).frame_rate,
            (60000, 1001)
        );
    }

    #[test]
    fn a_stitch_takes_the_recordings_size_bounded() {
        let c = stitch_canvas(&shot(640, 360, 8.0));
        assert_eq!((c.width, c.height, c.frame_rate), (640, 360, (30, 1)));
        let c = stitch_canvas(&shot(2160, 3840, 8.0));
        assert_eq!((c.width, c.height), (1080, 1920));
        let c = stitch_canvas(&shot(321, 241, 8.0));
        assert_eq!((c.width, c.height), (322, 242));
    }

    #[test]
    fn the_duet_graph_fits_pads_stacks_and_mixes() {
        let (o, r) = (shot(320, 240, 10.0), shot(640, 360, 8.0));
        let c = duet_canvas(&o, &r);
        let g = duet_graph(&o, &r, &c);
        assert!(
            g.starts_with(
                "[v0]setpts=PTS-STARTPTS,scale=w=640:h=360:force_original_aspect_ratio=decrease"
            ),
            "{g}"
        );
        assert!(
            g.contains("pad=w=640:h=360:x=(ow-iw)/2:y=(oh-ih)/2:color=black"),
            "{g}"
        );
        assert!(
            g.contains("[l][r]hstack=inputs=2:shortest=1,trim=end=8[vout]"),
            "{g}"
        );
        assert!(g.contains("amix=inputs=2:duration=shortest"), "{g}");
        assert!(g.contains("atrim=end=8,asettb=expr=1/48000[aout]"), "{g}");
        assert!(
            g.contains("fps=fps=30/1,format=yuv420p,settb=expr=1/30"),
            "{g}"
        );
        assert!(!g.contains("anullsrc"), "{g}");
    }

    #[test]
    fn an_input_without_sound_brings_silence_as_long_as_itself() {
        let o = shot(320, 240, 10.0);
        let mut r = shot(640, 360, 8.0);
        r.has_audio = false;
        r.speed = 2.0;
        let g = duet_graph(&o, &r, &duet_canvas(&o, &r));
        assert!(
            g.contains("anullsrc=r=48000:cl=stereo,atrim=duration=4,"),
            "{g}"
        );
        assert!(!g.contains("[a1]"), "{g}");
        assert!(g.contains("trim=end=4[vout]"), "{g}");
    }

    #[test]
    fn the_stitch_graph_cuts_the_clip_and_concatenates() {
        let mut clip = shot(320, 240, 10.0);
        clip.start = 2.0;
        clip.end = 5.5;
        clip.trimmed = true;
        let r = shot(640, 360, 8.0);
        let c = stitch_canvas(&r);
        let g = stitch_graph(&clip, &r, &c);
        assert!(
            g.starts_with("[v0]trim=start=2:end=5.5,setpts=PTS-STARTPTS,scale=w=640:h=360"),
            "{g}"
        );
        assert!(
            g.contains("[a0]atrim=start=2:end=5.5,asetpts=PTS-STARTPTS,aresample=48000"),
            "{g}"
        );
        assert!(
            g.contains("[cv][ca][rv][ra]concat=n=2:v=1:a=1[sv][sa]"),
            "{g}"
        );
        assert!((clip.duration() + r.duration() - 11.5).abs() < 1e-9);
    }

    #[test]
    fn odd_pixels_and_rotation_are_normalised_before_fitting() {
        let mut s = shot(1920, 1080, 4.0);
        s.sample_aspect = (4, 3);
        s.rotation = 90;
        s.speed = 3.0;
        let c = single_canvas(&s, STITCH_MAX_SIDE);
        let g = single_graph(&s, &c);
        let sar = g.find("setsar=1").unwrap();
        let turn = g.find("transpose=clock").unwrap();
        let fit = g.find("force_original_aspect_ratio").unwrap();
        assert!(sar < turn && turn < fit, "{g}");
        assert!(g.contains("setpts=(PTS-STARTPTS)/3"), "{g}");
        assert!(g.contains("atempo=2,atempo=1.5"), "{g}");
    }
}
