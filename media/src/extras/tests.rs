//! The extras of real ladders: shared clips and clips generated with the
//! `ffmpeg` CLI, transcoded by `transcode` on the CPU, then checked with
//! the `image` decoder, `ffprobe` and `ffmpeg -f null`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hardware::{BackendRequest, Inventory};

use super::*;
use crate::ladder::{Master, MediaPlaylist};
use crate::thumbnail::BLACK_LEVEL;
use crate::{transcode, TranscodeOptions};

fn shared(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/media")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("media-extras-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `ffmpeg` CLI to make a test clip; panics with its stderr.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ladder_of(input: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("ladder");
    let opts = TranscodeOptions {
        backend: BackendRequest::Cpu,
        ..Default::default()
    };
    transcode(input, &out, &opts, &Inventory::discover(), &|_| {}).expect("transcode");
    out
}

fn top_playlist(ladder: &Path) -> (MediaPlaylist, u32, u32) {
    let master =
        Master::parse(&std::fs::read_to_string(ladder.join("master.m3u8")).unwrap()).unwrap();
    let top = master.top().clone();
    let text = std::fs::read_to_string(ladder.join(&top.uri)).unwrap();
    (MediaPlaylist::parse(&text).unwrap(), top.width, top.height)
}

fn rgb_image(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn mean_luma_of(img: &image::RgbImage) -> f64 {
    crate::thumbnail::mean_luma(img.as_raw())
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn number(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

/// `ffmpeg -v error -i path -f null -` prints nothing and succeeds.
fn decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A WebVTT cue: start, end, and the `xywh` of its tile.
fn cues(vtt: &str) -> Vec<(f64, f64, [u32; 4])> {
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    let secs = |s: &str| -> f64 {
        let p: Vec<f64> = s.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600.0 + p[1] * 60.0 + p[2]
    };
    let lines: Vec<&str> = vtt.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some((a, b)) = line.split_once(" --> ") {
            let target = lines[i + 1];
            let xywh = target
                .strip_prefix("storyboard.jpg#xywh=")
                .unwrap_or_else(|| panic!("{target}"));
            let v: Vec<u32> = xywh.split(',').map(|x| x.parse().unwrap()).collect();
            out.push((secs(a), secs(b), [v[0], v[1], v[2], v[3]]));
        }
    }
    out
}

/// What every ladder's extras must satisfy.
fn check_extras(ladder: &Path, extras: &Extras, fps: f64, with_audio: bool) {
    let (top, top_w, top_h) = top_playlist(ladder);
    let duration = top.duration();

    // Storyboard: a sprite of whole tiles, and cues covering the video.
    let sprite = rgb_image(&extras.storyboard_image);
    let vtt = std::fs::read_to_string(&extras.storyboard_vtt).unwrap();
    let cues = cues(&vtt);
    assert_eq!(cues.len() as u32, extras.tiles);
    assert!(extras.interval_secs >= 1.0 && extras.tiles <= 100);
    let [_, _, tw, th] = cues[0].2;
    let columns = extras.tiles.min(10);
    assert_eq!(
        sprite.dimensions(),
        (columns * tw, extras.tiles.div_ceil(columns) * th)
    );
    assert_eq!(tw, 160);
    let want_h = f64::from(top_h) * 160.0 / f64::from(top_w);
    assert!(
        (f64::from(th) - want_h).abs() <= 2.0,
        "tile {tw}x{th} for {top_w}x{top_h}"
    );
    assert_eq!(cues[0].0, 0.0);
    for w in cues.windows(2) {
        assert_eq!(w[0].1, w[1].0, "cues must be contiguous: {vtt}");
    }
    for (start, end, [x, y, w, h]) in &cues {
        assert!(end > start);
        assert!((end - start) <= extras.interval_secs + 1e-9);
        assert!(x + w <= sprite.width() && y + h <= sprite.height());
        assert_eq!((*w, *h), (tw, th));
    }
    assert!((cues.last().unwrap().1 - duration).abs() < 0.001, "{vtt}");

    // Poster: the top rung's size, not black.
    let poster = rgb_image(&extras.poster);
    assert_eq!(poster.dimensions(), (top_w, top_h));
    assert!(mean_luma_of(&poster) >= BLACK_LEVEL);

    // Download: plays cleanly, as long as the ladder, starting at 0.
    let download = extras.download.as_ref().unwrap();
    decodes_cleanly(download);
    let probe = ffprobe(download);
    let got = number(&probe["format"]["duration"]);
    assert!(
        (got - duration).abs() <= 1.0 / fps + 1e-3,
        "download lasts {got} s, the ladder {duration} s"
    );
    let streams = probe["streams"].as_array().unwrap();
    let kinds: Vec<&str> = streams
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        if with_audio {
            vec!["video", "audio"]
        } else {
            vec!["video"]
        }
    );
    for s in streams {
        let start = number(&s["start_time"]);
        eprintln!("download {}: start_time {start}", s["codec_type"]);
        assert!(start.abs() < 0.025, "{} starts at {start}", s["codec_type"]);
    }
    assert_eq!(
        (streams[0]["width"].as_u64(), streams[0]["height"].as_u64()),
        (Some(u64::from(top_w)), Some(u64::from(top_h)))
    );
    // The index comes first (faststart): `moov` before `mdat`.
    let bytes = std::fs::read(download).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") < at(b"mdat"));

    // Nothing half-written is left behind.
    for entry in std::fs::read_dir(ladder).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "{name} left behind");
    }
}

#[test]
fn extras_of_a_shared_clip_with_sound() {
    let dir = scratch("bbb");
    let ladder = ladder_of(&shared("bbb_320x240_h264_aac_10s.mp4"), &dir);
    let started = std::time::Instant::now();
    let extras = write_all(&ladder).unwrap();
    eprintln!("write_all: {:?} for the 10 s clip", started.elapsed());
    assert_eq!((extras.tiles, extras.interval_secs), (10, 1.0));
    check_extras(&ladder, &extras, 24.0, true);

    // Same ladder, same bytes (`+bitexact`); a rerun replaces in place.
    let first = std::fs::read(extras.download.as_ref().unwrap()).unwrap();
    let again = write_all(&ladder).unwrap();
    assert_eq!(std::fs::read(again.download.unwrap()).unwrap(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_clip_that_opens_black_gets_a_lit_poster() {
    let dir = scratch("black");
    let src = dir.join("black.mp4");
    ffmpeg(&[
        "-filter_complex",
        "color=c=black:s=640x360:r=25:d=2[a];testsrc2=s=640x360:r=25:d=4[b];[a][b]concat=n=2:v=1:a=0",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        src.to_str().unwrap(),
    ]);
    let ladder = ladder_of(&src, &dir);
    let extras = write_all(&ladder).unwrap();
    assert!(
        extras.poster_time_secs >= 2.0,
        "poster taken at {} s, in the black",
        extras.poster_time_secs
    );
    check_extras(&ladder, &extras, 25.0, false);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_blurred_opening_is_passed_over() {
    let dir = scratch("blur");
    let src = dir.join("blur.mp4");
    // Out of focus for the first 2.5 s, then sharp.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=640x360:r=25:d=6,gblur=sigma=8:enable='lt(t,2.5)'",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        src.to_str().unwrap(),
    ]);
    let ladder = ladder_of(&src, &dir);
    let top = crate::ladder::Ladder::open(&ladder).unwrap().top().unwrap();
    let choice = ladder_poster(&top, &dir.join("poster.jpg")).unwrap();
    assert!(
        choice.time >= 2.5 && choice.time < 3.0,
        "poster at {choice:?}, expected the first sharp frame"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Mean luma of the source's frame at `t`, as `ffmpeg -ss t` decodes it.
fn source_luma_at(src: &Path, t: f64, w: u32, h: u32) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &t.to_string(), "-i"])
        .arg(src)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24"])
        .args(["-s", &format!("{w}x{h}"), "-"])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.len() == (w * h * 3) as usize);
    crate::thumbnail::mean_luma(&out.stdout)
}

#[test]
fn a_still_shows_the_frame_at_its_time() {
    let dir = scratch("still");
    let src = dir.join("ramp.mp4");
    // Flat frames whose brightness steps by 9 code values a frame, so each
    // frame of a segment is told from its neighbours by its mean alone.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=640x480:r=25:d=10,geq=lum=16+mod(N*9\\,200):cb=128:cr=128",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        src.to_str().unwrap(),
    ]);
    let ladder = ladder_of(&src, &dir);
    let (top, w, h) = top_playlist(&ladder);
    assert_eq!((w, h), (640, 480), "the top rung, not the 360p one");
    // The last picture starts one frame before the end, and shows until it.
    let last = top.duration() - 0.04;
    for (t, shown) in [
        (0.0, 0.0),
        (1.0, 1.0),
        (3.0, 3.0),
        (3.96, 3.96),
        (4.0, 4.0),
        (4.01, 4.0),
        (6.2, 6.2),
        (6.239, 6.2),
        (8.04, 8.04),
        (last, last),
        (top.duration(), last),
    ] {
        let jpeg = crate::still::still_from_ladder(&ladder, t).unwrap();
        let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (w, h));
        let got = mean_luma_of(&img);
        let want = source_luma_at(&src, shown, w, h);
        let before = source_luma_at(&src, (shown - 0.04f64).max(0.0), w, h);
        assert!(
            (got - want).abs() < 3.0,
            "t = {t}: still luma {got}, source {want} (the frame before: {before})"
        );
    }
    assert!(crate::still::still_from_ladder(&ladder, top.duration() + 0.5).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Raw output of the `ffmpeg` CLI decoding `path` with `args`.
fn decode(path: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(args)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_download_keeps_picture_and_sound_together() {
    let dir = scratch("sync");
    let src = dir.join("flash.mp4");
    // A white flash and a beep, both from 2.0 s to 2.2 s.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=320x240:r=25:d=4,drawbox=t=fill:c=white:enable='between(t,2,2.2)'",
        "-f",
        "lavfi",
        "-i",
        "sine=f=1000:d=4:sample_rate=48000,volume=0:enable='lt(t,2)+gt(t,2.2)'",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        src.to_str().unwrap(),
    ]);
    let ladder = ladder_of(&src, &dir);
    let extras = write_all(&ladder).unwrap();
    let download = extras.download.unwrap();
    let frame = 8 * 6;
    let video = decode(
        &download,
        &["-f", "rawvideo", "-pix_fmt", "gray", "-s", "8x6"],
    );
    let flash = video
        .chunks_exact(frame)
        .position(|f| f.iter().map(|&p| u32::from(p)).sum::<u32>() / frame as u32 > 128)
        .expect("a flash") as f64
        / 25.0;
    let audio = decode(&download, &["-f", "s16le", "-ac", "1", "-ar", "8000"]);
    let beep = audio
        .chunks_exact(2)
        .position(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 3000)
        .expect("a beep") as f64
        / 8000.0;
    assert!(
        (flash - 2.0).abs() < 0.041 && (beep - flash).abs() < 0.03,
        "flash at {flash} s, beep at {beep} s"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
