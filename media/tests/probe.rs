//! Probe and plan against the shared sample clips, through the library API
//! (limits that the CLI cannot easily reach, such as the 5 GB size limit).

use std::path::PathBuf;

use media::{probe, LadderPlan, Limits, RejectCode};

fn clip(name: &str) -> PathBuf {
    // Read at run time: the test binary may have been built in another checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../../shared/media")
        .join(name)
}

#[test]
fn probes_the_shared_clips() {
    let bbb = probe(&clip("bbb_320x240_h264_aac_10s.mp4"), &Limits::default()).unwrap();
    assert_eq!(
        (bbb.video.codec.as_str(), bbb.video.width, bbb.video.height),
        ("h264", 320, 240)
    );
    assert_eq!(bbb.video.sample_aspect, (4, 3));
    assert_eq!(bbb.video.display_size(), (427, 240));
    assert!(
        (bbb.duration_secs - 10.0).abs() < 0.2,
        "{}",
        bbb.duration_secs
    );
    let audio = bbb.audio.as_ref().expect("aac audio");
    assert_eq!((audio.codec.as_str(), audio.channels), ("aac", 2));

    let hevc = probe(&clip("hevc_1080p50_1s.mp4"), &Limits::default()).unwrap();
    assert_eq!(
        (
            hevc.video.codec.as_str(),
            hevc.video.width,
            hevc.video.height
        ),
        ("hevc", 1920, 1080)
    );
    assert!(hevc.audio.is_none());
    let plan = LadderPlan::new(&hevc, &[]).unwrap();
    assert_eq!(plan.frame_rate, (50, 1));
    assert_eq!(plan.rungs.len(), 4);
}

#[test]
fn each_limit_is_its_own_rejection() {
    let reject = |limits: Limits| {
        probe(&clip("h264_1080p50_1s.mp4"), &limits)
            .unwrap_err()
            .reject_code()
    };
    assert_eq!(
        reject(Limits {
            max_bytes: 1000,
            ..Limits::default()
        }),
        Some(RejectCode::FileTooLarge)
    );
    assert_eq!(
        reject(Limits {
            max_duration_secs: 0.5,
            ..Limits::default()
        }),
        Some(RejectCode::DurationLimit)
    );
    assert_eq!(
        reject(Limits {
            max_width: 1280,
            ..Limits::default()
        }),
        Some(RejectCode::ResolutionLimit)
    );
    assert_eq!(
        reject(Limits {
            max_height: 720,
            ..Limits::default()
        }),
        Some(RejectCode::ResolutionLimit)
    );
}

#[test]
fn rejections_name_the_file_and_the_reason() {
    let err = probe(&clip("audio_only_opus_1s.mp4"), &Limits::default()).unwrap_err();
    assert_eq!(err.reject_code(), Some(RejectCode::UnsupportedFormat));
    let msg = err.to_string();
    assert!(
        msg.contains("audio_only_opus_1s.mp4") && msg.contains("opus"),
        "{msg}"
    );

    let err = probe(&clip("truncated_100b.mp4"), &Limits::default()).unwrap_err();
    assert_eq!(err.reject_code(), Some(RejectCode::CorruptMedia));

    let missing = probe(&clip("does_not_exist.mp4"), &Limits::default()).unwrap_err();
    assert_eq!(
        missing.reject_code(),
        None,
        "a missing file is an I/O error, not a verdict on the media"
    );
}
