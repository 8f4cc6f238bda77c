//! `appliance transcode` end to end: real clips (shared and generated) in,
//! ladders out, every ladder checked the way a CDN and a player would see it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::ladder::{check_ladder, Expect};
use e2e::*;

const LIMIT: Duration = Duration::from_secs(600);

fn transcode_ok(input: &Path, out: &Path) {
    let o = appliance(
        &[
            "transcode",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        LIMIT,
    );
    assert_eq!(
        o.code,
        Some(0),
        "transcode {} failed:\n{}",
        input.display(),
        o.stderr
    );
    assert_eq!(
        o.stdout.trim(),
        out.join("master.m3u8").display().to_string(),
        "prints the master playlist path"
    );
}

fn playlists(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        if entry.extension().is_some_and(|e| e == "m3u8") {
            out.insert(
                entry.strip_prefix(dir).unwrap().to_owned(),
                std::fs::read_to_string(&entry).unwrap(),
            );
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

/// Shared clips: the ladder is checked, two runs give byte-identical
/// playlists, and those match the golden files in `tests/golden/<clip>/`
/// (regenerate with `UPDATE_GOLDEN=1`).
fn shared_clip(name: &str, expect: Expect) {
    let tmp = tempfile::tempdir().unwrap();
    let input = shared_media(name);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    transcode_ok(&input, &a);
    check_ladder(&a, &expect);
    transcode_ok(&input, &b);
    let (pa, pb) = (playlists(&a), playlists(&b));
    assert_eq!(pa, pb, "playlists differ between two runs of {name}");
    let golden = golden_dir().join(name.trim_end_matches(".mp4"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        for (rel, text) in &pa {
            let p = golden.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }
    let want = playlists(&golden);
    assert!(
        !want.is_empty(),
        "no golden playlists in {} (run with UPDATE_GOLDEN=1)",
        golden.display()
    );
    assert_eq!(
        pa,
        want,
        "playlists of {name} differ from {}",
        golden.display()
    );
}

const FULL_LANDSCAPE: &[(u64, u64)] = &[(1920, 1080), (1280, 720), (854, 480), (640, 360)];
const FULL_PORTRAIT: &[(u64, u64)] = &[(1080, 1920), (720, 1280), (480, 854), (360, 640)];

#[test]
fn shared_h264_1080p50_gets_the_full_ladder_at_50_fps() {
    shared_clip(
        "h264_1080p50_1s.mp4",
        Expect {
            rungs: FULL_LANDSCAPE,
            fps: 50.0,
            audio: false,
        },
    );
}

#[test]
fn shared_hevc_1080p50_is_transcoded_to_the_h264_ladder() {
    shared_clip(
        "hevc_1080p50_1s.mp4",
        Expect {
            rungs: FULL_LANDSCAPE,
            fps: 50.0,
            audio: false,
        },
    );
}

#[test]
fn shared_bbb_smaller_than_the_lowest_rung_gets_one_rung_at_its_own_size() {
    // 320×240 coded with 4:3 pixels (16:9 display): 240 lines, square pixels.
    shared_clip(
        "bbb_320x240_h264_aac_10s.mp4",
        Expect {
            rungs: &[(426, 240)],
            fps: 24.0,
            audio: true,
        },
    );
}

#[test]
fn shared_prog_640x360_gets_only_360p() {
    shared_clip(
        "prog_640x360_h264_aac_8s.mp4",
        Expect {
            rungs: &[(640, 360)],
            fps: 30.0,
            audio: true,
        },
    );
}

fn rejected(input: &Path, code: &str, reason_part: &str) {
    let out = tempfile::tempdir().unwrap();
    let o = appliance(
        &[
            "transcode",
            input.to_str().unwrap(),
            "--out",
            out.path().join("x").to_str().unwrap(),
            "--quiet",
        ],
        LIMIT,
    );
    assert_eq!(
        o.code,
        Some(2),
        "{} should be rejected: {}",
        input.display(),
        o.stderr
    );
    assert!(o.stderr.contains(code), "expected {code} in: {}", o.stderr);
    assert!(
        o.stderr.to_lowercase().contains(reason_part),
        "expected `{reason_part}` in: {}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(
        !out.path().join("x").exists(),
        "nothing is published for a rejected input"
    );
}

#[test]
fn shared_audio_only_is_rejected_for_having_no_video() {
    rejected(
        &shared_media("audio_only_opus_1s.mp4"),
        "UNSUPPORTED_FORMAT",
        "no video stream",
    );
}

#[test]
fn shared_truncated_file_is_rejected_as_corrupt() {
    rejected(
        &shared_media("truncated_100b.mp4"),
        "CORRUPT_MEDIA",
        "truncated",
    );
}

#[test]
fn empty_and_non_media_files_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    rejected(&empty, "CORRUPT_MEDIA", "empty");
    let text = tmp.path().join("notes.mp4");
    std::fs::write(
        &text,
        "These are my holiday notes, not a video.\n".repeat(50),
    )
    .unwrap();
    rejected(&text, "UNSUPPORTED_FORMAT", "not a recognised");
}

#[test]
fn inputs_over_a_limit_or_outside_the_allow_list_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let wide = tmp.path().join("wide.mp4");
    lavfi(
        &wide,
        &["color=c=blue:size=4160x1040:rate=1:duration=1"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    rejected(&wide, "RESOLUTION_LIMIT", "4160");
    let long = tmp.path().join("long.mp4");
    lavfi(
        &long,
        &["color=c=red:size=64x64:rate=1:duration=605"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    rejected(&long, "DURATION_LIMIT", "limit is 600");
    let mpeg4 = tmp.path().join("mpeg4.avi");
    lavfi(
        &mpeg4,
        &["testsrc2=size=320x240:rate=25:duration=1"],
        &["-c:v", "mpeg4"],
    );
    rejected(&mpeg4, "UNSUPPORTED_FORMAT", "mpeg4");
    let flv = tmp.path().join("clip.flv");
    lavfi(
        &flv,
        &["testsrc2=size=320x240:rate=25:duration=1"],
        &["-c:v", "libx264"],
    );
    rejected(&flv, "UNSUPPORTED_FORMAT", "flv");
}

fn gpu_present() -> bool {
    let present = std::path::Path::new("/dev/nvidia0").exists();
    if present {
        eprintln!("skipped: an NVIDIA GPU is present (run scripts/gpu-check for the GPU suite)");
    }
    present
}

#[test]
fn asking_for_nvidia_without_a_gpu_is_a_clear_error() {
    if gpu_present() {
        return;
    }
    let o = appliance(
        &[
            "transcode",
            shared_media("h264_1080p50_1s.mp4").to_str().unwrap(),
            "--out",
            "/nonexistent/x",
            "--backend",
            "nvidia",
        ],
        LIMIT,
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("not available"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn doctor_says_there_is_no_gpu_and_puts_every_stage_on_the_cpu() {
    if gpu_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("appliance.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n[feed]\nmodel_dir = {:?}\n",
            tmp.path().join("data"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
        ),
    )
    .unwrap();
    let o = appliance(&["doctor", "--config", config.to_str().unwrap()], LIMIT);
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("no NVIDIA GPU is present"),
        "{}",
        o.stdout
    );
    for stage in ["decode   CPU", "scale    CPU", "encode   CPU"] {
        assert!(o.stdout.contains(stage), "{stage}: {}", o.stdout);
    }
    assert!(o.stdout.contains("libnvidia-encode"), "{}", o.stdout);
    let j = appliance(
        &["doctor", "--config", config.to_str().unwrap(), "--json"],
        LIMIT,
    );
    let report: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(report["inventory"]["gpus"].as_array().unwrap().len(), 0);
    assert_eq!(
        report["inventory"]["libraries"].as_array().unwrap().len(),
        5
    );

    // Asking for the GPU in the config is a fault doctor names.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "[transcode]\nbackend = \"nvidia\"\n",
    )
    .unwrap();
    let o = appliance(&["doctor", "--config", config.to_str().unwrap()], LIMIT);
    assert_eq!(o.code, Some(1), "{}", o.stdout);
    assert!(
        o.stdout.contains("[FAIL] transcode.backend"),
        "{}",
        o.stdout
    );
}

#[test]
fn unknown_rungs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = appliance(
        &[
            "transcode",
            shared_media("h264_1080p50_1s.mp4").to_str().unwrap(),
            "--out",
            tmp.path().join("x").to_str().unwrap(),
            "--rungs",
            "1080,500",
        ],
        LIMIT,
    );
    assert_ne!(o.code, Some(0));
    assert!(o.stderr.contains("rung 500"), "{}", o.stderr);
}

/// Generated inputs: each exercises one rule of the ladder planner.
fn generated(name: &str, inputs: &[&str], args: &[&str], expect: Expect) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join(name);
    lavfi(&input, inputs, args);
    let out = tmp.path().join("ladder");
    transcode_ok(&input, &out);
    check_ladder(&out, &expect);
}

const TONE: &str = "sine=frequency=440:sample_rate=48000:duration=3";

#[test]
fn portrait_1080x1920_gets_a_portrait_ladder() {
    generated(
        "portrait.mp4",
        &["testsrc2=size=1080x1920:rate=30:duration=2", TONE],
        &[
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
        Expect {
            rungs: FULL_PORTRAIT,
            fps: 30.0,
            audio: true,
        },
    );
}

#[test]
fn rotation_metadata_is_applied_to_the_pixels() {
    // Coded 1280×720 with a 90° display matrix: viewers see 720×1280. (FFmpeg
    // 5.1 writes the matrix from `rotate` only when stream-copying.)
    let tmp = tempfile::tempdir().unwrap();
    let coded = tmp.path().join("coded.mp4");
    lavfi(
        &coded,
        &["testsrc2=size=1280x720:rate=30:duration=2"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
    );
    let rotated = tmp.path().join("rotated.mp4");
    let o = run(
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&coded)
            .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
            .arg(&rotated),
        LIMIT,
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let side = ffprobe_json(&rotated, &["-show_entries", "stream_side_data=rotation"]);
    assert_eq!(
        side["streams"][0]["side_data_list"][0]["rotation"], 90,
        "the input carries a display matrix"
    );
    let out = tmp.path().join("ladder");
    transcode_ok(&rotated, &out);
    check_ladder(
        &out,
        &Expect {
            rungs: &[(720, 1280), (480, 854), (360, 640)],
            fps: 30.0,
            audio: false,
        },
    );
}

#[test]
fn variable_frame_rate_becomes_constant() {
    // Irregular timestamps: every fourth frame of a 30 fps camera dropped
    // (22.5 fps on average); the output is constant 30 fps again.
    generated(
        "vfr.mp4",
        &[
            "testsrc2=size=640x360:rate=30:duration=5",
            "sine=frequency=300:sample_rate=44100:duration=5",
        ],
        &[
            "-vf",
            "select='not(eq(mod(n,4),3))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
        Expect {
            rungs: &[(640, 360)],
            fps: 30.0,
            audio: true,
        },
    );
}

#[test]
fn ten_bit_prores_becomes_8_bit_420() {
    generated(
        "tenbit.mov",
        &["testsrc2=size=1280x720:rate=25:duration=2"],
        &[
            "-c:v",
            "prores_ks",
            "-profile:v",
            "3",
            "-pix_fmt",
            "yuv422p10le",
        ],
        Expect {
            rungs: &[(1280, 720), (854, 480), (640, 360)],
            fps: 25.0,
            audio: false,
        },
    );
}

#[test]
fn ten_bit_hevc_becomes_8_bit_420() {
    generated(
        "tenbit_hevc.mp4",
        &["testsrc2=size=854x480:rate=30:duration=2"],
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-x265-params",
            "log-level=error",
        ],
        Expect {
            rungs: &[(854, 480), (640, 360)],
            fps: 30.0,
            audio: false,
        },
    );
}

#[test]
fn interlaced_is_deinterlaced() {
    generated(
        "interlaced.ts",
        &["testsrc2=size=1920x1080:rate=50:duration=2", TONE],
        &[
            "-shortest",
            "-vf",
            "tinterlace=interleave_top,fieldorder=tff",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-flags",
            "+ildct+ilme",
            "-x264-params",
            "tff=1",
            "-c:a",
            "aac",
        ],
        Expect {
            rungs: FULL_LANDSCAPE,
            fps: 25.0,
            audio: true,
        },
    );
}

#[test]
fn four_k_gets_the_full_ladder_without_a_4k_rung() {
    generated(
        "uhd.webm",
        &["testsrc2=size=3840x2160:rate=24:duration=1"],
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "2M",
        ],
        Expect {
            rungs: FULL_LANDSCAPE,
            fps: 24.0,
            audio: false,
        },
    );
}

#[test]
fn sixty_fps_is_kept() {
    generated(
        "sixty.mp4",
        &["testsrc2=size=1280x720:rate=60:duration=2", TONE],
        &[
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ],
        Expect {
            rungs: &[(1280, 720), (854, 480), (640, 360)],
            fps: 60.0,
            audio: true,
        },
    );
}

#[test]
fn above_sixty_fps_is_halved() {
    generated(
        "fast.mp4",
        &["testsrc2=size=640x360:rate=120:duration=2"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
        Expect {
            rungs: &[(640, 360)],
            fps: 60.0,
            audio: false,
        },
    );
}

#[test]
fn no_audio_gives_a_video_only_ladder() {
    generated(
        "silent.mp4",
        &["testsrc2=size=1280x720:rate=30:duration=9"],
        &["-c:v", "libx264", "-preset", "ultrafast"],
        Expect {
            rungs: &[(1280, 720), (854, 480), (640, 360)],
            fps: 30.0,
            audio: false,
        },
    );
}

#[test]
fn odd_sized_non_square_mpeg2_is_normalised() {
    // 720×576 with 16:15 pixels (PAL 4:3) in MPEG-2: 768×576 displayed.
    generated(
        "pal.mpg.ts",
        &["testsrc2=size=720x576:rate=25:duration=2", TONE],
        &[
            "-shortest",
            "-vf",
            "setsar=16/15",
            "-c:v",
            "mpeg2video",
            "-q:v",
            "4",
            "-c:a",
            "mp2",
        ],
        Expect {
            rungs: &[(640, 480), (480, 360)],
            fps: 25.0,
            audio: true,
        },
    );
}

#[test]
fn encrypted_input_is_refused_not_half_processed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cenc.mp4");
    lavfi(
        &input,
        &["testsrc2=size=320x240:rate=25:duration=1"],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-encryption_scheme",
            "cenc-aes-ctr",
            "-encryption_key",
            "76a6c65c5ea762046bd749a2e632ccbb",
            "-encryption_kid",
            "a7e61c373e219033c21091fa607bf3b8",
        ],
    );
    rejected(&input, "ENCRYPTED_MEDIA", "encrypted");
}
