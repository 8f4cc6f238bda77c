//! Damaged uploads that `ffmpeg -i clip -f null -` decodes are published,
//! with what was repaired recorded; only a file with no decodable video is
//! refused. The damage is made here from real encodes: bytes overwritten in
//! the middle of an MP4's `mdat`, a file cut at 50 %, 1 fps and 240 fps clips, and a
//! clip with a 5 s hole in its timestamps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::server::{assert_decodes, register, upload_small, wait_final, Server};
use e2e::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(300);

/// An 8 s 640x360 30 fps H.264 + AAC clip with its `moov` first (as phones
/// and `+faststart` write it), so a cut file keeps its index.
fn source(dir: &Path) -> PathBuf {
    let raw = dir.join("raw.mp4");
    lavfi(
        &raw,
        &[
            "testsrc2=size=640x360:rate=30:duration=8",
            "sine=frequency=440:duration=8",
        ],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            "-movflags",
            "+faststart",
        ],
    );
    raw
}

/// Overwrites 40 runs of 64 bytes between a third and half of the `mdat`
/// payload with a fixed pseudo-random pattern.
fn corrupt_middle(src: &Path, out: &Path) {
    let mut bytes = std::fs::read(src).unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    let span = bytes.len() - mdat;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..40 {
        let at = mdat + span / 3 + (next() as usize % (span / 6));
        for b in &mut bytes[at..at + 64] {
            *b = next() as u8;
        }
    }
    std::fs::write(out, bytes).unwrap();
}

/// `appliance transcode --json`: the ladder's summary.
fn transcode(input: &Path, out: &Path) -> Value {
    let o = appliance(
        &[
            "transcode",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--rungs",
            "360",
            "--json",
            "--quiet",
        ],
        LIMIT,
    );
    assert_eq!(
        o.code,
        Some(0),
        "{} was not published:\n{}",
        input.display(),
        o.stderr
    );
    serde_json::from_str(&o.stdout).unwrap()
}

/// What ffmpeg itself makes of the damaged input (the reference: it must
/// decode it, or the case proves nothing).
fn ffmpeg_decodes(input: &Path) {
    let o = run(
        std::process::Command::new("ffmpeg").args([
            "-nostdin",
            "-v",
            "quiet",
            "-i",
            input.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ]),
        LIMIT,
    );
    assert_eq!(
        o.code,
        Some(0),
        "ffmpeg itself cannot decode {}",
        input.display()
    );
}

fn repairs(v: &Value) -> Vec<String> {
    v["repairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no repairs list: {v}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn corrupt_packets_in_the_middle_are_dropped_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let clean = source(dir.path());
    let damaged = dir.path().join("corrupt.mp4");
    corrupt_middle(&clean, &damaged);
    ffmpeg_decodes(&damaged);
    let out = dir.path().join("corrupt");
    let v = transcode(&damaged, &out);
    assert_decodes(out.join("master.m3u8").to_str().unwrap());
    let r = repairs(&v);
    assert!(
        r.iter().any(|r| r.contains("damaged")),
        "nothing recorded for a corrupted file: {r:?}"
    );
    // The clean original has nothing to report.
    let v = transcode(&clean, &dir.path().join("clean"));
    assert!(repairs(&v).is_empty(), "{v}");
}

#[test]
fn a_file_cut_in_half_is_published_up_to_its_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clean = source(dir.path());
    let bytes = std::fs::read(&clean).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    ffmpeg_decodes(&cut);
    let out = dir.path().join("cut");
    let v = transcode(&cut, &out);
    assert_decodes(out.join("master.m3u8").to_str().unwrap());
    let frames = v["frames"].as_u64().unwrap();
    assert!(
        (60..200).contains(&frames),
        "about half of 240 frames expected, got {frames}"
    );
    assert!(repairs(&v).iter().any(|r| r.contains("ends early")), "{v}");
}

#[test]
fn one_and_240_frames_per_second_and_a_five_second_hole_work() {
    let dir = tempfile::tempdir().unwrap();
    for (rate, secs) in [(1, 8), (240, 3)] {
        let clip = dir.path().join(format!("{rate}fps.mp4"));
        lavfi(
            &clip,
            &[&format!(
                "testsrc2=size=640x360:rate={rate}:duration={secs}"
            )],
            &[
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ],
        );
        let out = dir.path().join(format!("{rate}fps"));
        let v = transcode(&clip, &out);
        assert_decodes(out.join("master.m3u8").to_str().unwrap());
        // 240 fps comes down to the ladder's 60 fps ceiling; 1 fps stays.
        let want = if rate == 240 { 60 } else { rate };
        assert_eq!(v["plan"]["frame_rate"][0].as_i64(), Some(want), "{v}");
    }

    let gap = dir.path().join("gap.mp4");
    lavfi(
        &gap,
        &[
            "testsrc2=size=640x360:rate=30:duration=8",
            "sine=frequency=440:duration=8",
        ],
        &[
            "-vf",
            "setpts='if(gte(T,4),PTS+5/TB,PTS)'",
            "-af",
            "asetpts='if(gte(T,4),PTS+5*SR,PTS)'",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    let out = dir.path().join("gap");
    transcode(&gap, &out);
    assert_decodes(out.join("master.m3u8").to_str().unwrap());
    // The hole is kept as time (the last frame held), so video and audio
    // still end together at 13 s.
    for track in ["360p", "audio"] {
        let (_, segs) = media_playlist(&out.join(track).join("index.m3u8"));
        let total: f64 = segs.iter().map(|(d, _)| d).sum();
        assert!(
            (12.5..13.5).contains(&total),
            "{track} lasts {total} s, not 13"
        );
    }
}

#[test]
fn random_bytes_after_a_valid_header_are_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let clean = source(dir.path());
    let mut bytes = std::fs::read(&clean).unwrap()[..4096].to_vec();
    let mut x: u32 = 12345;
    bytes.extend((0..2_000_000).map(|_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 24) as u8
    }));
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, bytes).unwrap();
    let o = appliance(
        &[
            "transcode",
            junk.to_str().unwrap(),
            "--out",
            dir.path().join("junk").to_str().unwrap(),
            "--quiet",
        ],
        LIMIT,
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("CORRUPT_MEDIA"), "{}", o.stderr);
}

/// Through the server: the repair is on the video (`GET /videos/{id}`).
#[test]
fn the_server_publishes_a_damaged_upload_and_says_what_it_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let clean = source(dir.path());
    let bytes = std::fs::read(&clean).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let server = Server::start(dir.path(), "");
    let (creator, _) = register(&server, "phoneuser", "creator");
    let id = upload_small(
        &server,
        &creator,
        &cut,
        &json!({"title": "cut short", "visibility": "public"}),
    );
    let status = wait_final(&server, &creator, &id, Duration::from_secs(120));
    assert_eq!(status["status"], "ready", "{status}");
    let v = creator
        .get(&server.url(&format!("/api/v1/videos/{id}")))
        .json();
    assert!(repairs(&v).iter().any(|r| r.contains("ends early")), "{v}");
}
