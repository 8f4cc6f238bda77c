//! One camera mount per test (H.264, H.265, H.264 with G.711 audio, H.264
//! with AAC, and H.264 with RTP over UDP): a live ladder out, read live by ffmpeg while it grows, every
//! reload of the top rung's playlist keeping the live invariants, and the
//! finished ladder passing every check in `ladder.rs`.

use std::time::Duration;

use e2e::rtsp::{check_history, now_ms, Ingest, LiveReader, PlaylistPoller};

use crate::ladder::{check_ladder, ladder_has, rig, rungs_arg, video_playlist};
use crate::{FIRST_SEGMENT, MIN_WINDOW, POLL, TARGET, WIND_DOWN};

/// A camera mount in, a live ladder out, read live by ffmpeg while it grows.
fn mount_gives_a_live_ladder(mount: &str, audio: bool) {
    mount_gives_a_live_ladder_with(mount, audio, &[]);
}

fn mount_gives_a_live_ladder_with(mount: &str, audio: bool, extra: &[&str]) {
    let Some(rig) = rig(&format!("live ingest of /{mount}")) else {
        return;
    };
    let out = rig.out();
    let t0 = now_ms();
    let rungs = rungs_arg();
    let mut args = vec!["--rungs", &rungs, "--duration", "14"];
    args.extend_from_slice(extra);
    let mut ingest = Ingest::start(&rig.server.url(mount), &out, &args);
    ingest.wait_until(
        "a ladder with one segment per playlist",
        FIRST_SEGMENT,
        || ladder_has(&out, 1),
    );
    let poller = PlaylistPoller::start(&video_playlist(&out, 720), POLL);
    // A live player: ffmpeg's HLS demuxer reloading the playlists.
    let reader = LiveReader::start(&out.join("master.m3u8"), Some(10.0));
    let code = ingest.wait(Duration::from_secs(14) + WIND_DOWN);
    assert_eq!(
        code,
        Some(0),
        "ingest-rtsp --duration 14 must end with status 0; its output:\n{}",
        ingest.output()
    );
    let t1 = now_ms();
    let r = reader.wait(Duration::from_secs(120));
    let snaps = poller.finish();
    let h = check_history("720 rung", &snaps, TARGET, MIN_WINDOW);
    assert_eq!(
        h.discontinuities_total, 0,
        "a camera that never dropped gives no discontinuity"
    );

    assert_eq!(
        (r.code, r.stderr.trim()),
        (Some(0), ""),
        "ffmpeg reading the live master playlist reported errors"
    );
    let fps = 30.0;
    assert!(
        r.frames as f64 / fps >= 8.0,
        "ffmpeg read only {} frames ({:.1} s at {fps} fps) of the live stream; want ≥ 8 s",
        r.frames,
        r.frames as f64 / fps
    );

    check_ladder(&out, audio, (t0, t1));
}

#[test]
fn h264_camera_gives_a_live_ladder() {
    mount_gives_a_live_ladder("h264", false);
}

#[test]
fn h265_camera_gives_an_h264_live_ladder() {
    mount_gives_a_live_ladder("h265", false);
}

#[test]
fn h264_with_g711_audio_gives_a_live_ladder_with_aac() {
    mount_gives_a_live_ladder("h264-pcma", true);
}

#[test]
fn h264_with_aac_audio_gives_a_live_ladder() {
    mount_gives_a_live_ladder("h264-aac", true);
}

/// RTP over UDP (SETUP with client ports) instead of interleaved on the
/// RTSP connection: GStreamer's server sends to the ports retina opened.
#[test]
fn h264_over_udp_gives_a_live_ladder() {
    mount_gives_a_live_ladder_with("h264", false, &["--udp"]);
}
