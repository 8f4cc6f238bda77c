//! The edit stage on the shared clips: what comes out is probed back.

use std::path::PathBuf;

use super::*;

fn clip(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/media")
        .join(name)
}

const BBB: &str = "bbb_320x240_h264_aac_10s.mp4"; // 4:3 pixels, 24 fps, 9.92 s
const PROG: &str = "prog_640x360_h264_aac_8s.mp4"; // square, 30 fps, 8 s
const SILENT: &str = "h264_1080p50_1s.mp4"; // no audio, 1 s

fn rendered(edit: &Edit) -> (Edited, SourceInfo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("edited.mp4");
    let e = render(edit, &out, &Limits::default(), None).unwrap();
    let info = probe(&out, &Limits::default()).unwrap();
    (e, info, dir)
}

#[test]
fn a_duet_is_side_by_side_as_long_as_the_shorter_input() {
    let (e, info, _dir) = rendered(&Edit::Duet {
        original: clip(BBB),
        recording: clip(PROG),
        speed: 1.0,
    });
    assert_eq!((info.video.width, info.video.height), (1280, 360));
    assert_eq!((e.width, e.height), (1280, 360));
    // The faster rate of the two.
    let (n, d) = info.video.avg_frame_rate;
    assert!((f64::from(n) / f64::from(d) - 30.0).abs() < 0.2, "{n}/{d}");
    let plan = crate::plan::LadderPlan::new(&info, &[]).unwrap();
    assert_eq!(plan.frame_rate, (30, 1));
    assert!(
        (info.duration_secs - 8.0).abs() < 0.15,
        "{}",
        info.duration_secs
    );
    assert!(info.audio.is_some());
    assert!((e.duration_secs - 8.0).abs() < 0.05, "{e:?}");
}

#[test]
fn a_stitch_is_the_clip_then_the_recording() {
    let (e, info, _dir) = rendered(&Edit::Stitch {
        original: clip(BBB),
        clip_start: 2.0,
        clip_end: 5.0,
        recording: clip(PROG),
        speed: 1.0,
    });
    assert_eq!((info.video.width, info.video.height), (640, 360));
    assert!(
        (info.duration_secs - 11.0).abs() < 0.15,
        "{}",
        info.duration_secs
    );
    assert!((e.duration_secs - 11.0).abs() < 0.1, "{e:?}");
    assert!(info.audio.is_some());
}

#[test]
fn speed_halves_or_doubles_the_duration_and_keeps_the_sound() {
    let (e, info, _dir) = rendered(&Edit::Speed {
        recording: clip(PROG),
        speed: 2.0,
    });
    assert_eq!((info.video.width, info.video.height), (640, 360));
    assert!(
        (info.duration_secs - 4.0).abs() < 0.15,
        "{}",
        info.duration_secs
    );
    assert!((e.duration_secs - 4.0).abs() < 0.1);
    assert!(info.audio.is_some());
    let (_, slow, _dir) = rendered(&Edit::Speed {
        recording: clip(SILENT),
        speed: 0.5,
    });
    assert!(
        (slow.duration_secs - 2.0).abs() < 0.15,
        "{}",
        slow.duration_secs
    );
    // An input with no sound gets silence, so every edit has audio.
    assert!(slow.audio.is_some());
}

#[test]
fn a_recording_without_sound_is_mixed_as_silence() {
    let (_, info, _dir) = rendered(&Edit::Duet {
        original: clip(PROG),
        recording: clip(SILENT),
        speed: 1.0,
    });
    // 1080 tall, the 16:9 halves as wide as 1080p's.
    assert_eq!((info.video.width, info.video.height), (3840, 1080));
    assert!(
        (info.duration_secs - 1.0).abs() < 0.15,
        "{}",
        info.duration_secs
    );
    assert!(info.audio.is_some());
}

#[test]
fn bad_requests_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.mp4");
    for edit in [
        Edit::Speed {
            recording: clip(PROG),
            speed: 1.5,
        },
        Edit::Stitch {
            original: clip(BBB),
            clip_start: 1.0,
            clip_end: 7.0,
            recording: clip(PROG),
            speed: 1.0,
        },
        Edit::Stitch {
            original: clip(BBB),
            clip_start: 9.95,
            clip_end: 12.0,
            recording: clip(PROG),
            speed: 1.0,
        },
    ] {
        let e = render(&edit, &out, &Limits::default(), None).unwrap_err();
        assert!(matches!(e, MediaError::InvalidRequest(_)), "{edit:?}: {e}");
    }
}
