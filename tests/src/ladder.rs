//! The checks every published ladder must pass, whoever made it (`appliance
//! transcode`, or the server publishing an upload rung by rung).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::*;

const LIMIT: Duration = Duration::from_secs(600);

/// What a ladder must look like, per input.
pub struct Expect {
    /// (width, height) of each rung, top first.
    pub rungs: &'static [(u64, u64)],
    pub fps: f64,
    pub audio: bool,
}

/// Every property the issue asks of a ladder.
pub fn check_ladder(dir: &Path, expect: &Expect) {
    let master = dir.join("master.m3u8");
    let text = std::fs::read_to_string(&master).expect("master playlist");
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");

    // Variants: the right sizes, with every attribute a player and the CDN need.
    let vars = variants(&master);
    let sizes: Vec<(u64, u64)> = vars
        .iter()
        .map(|(a, _)| {
            let (w, h) = attr(a, "RESOLUTION")
                .expect("RESOLUTION")
                .split_once('x')
                .unwrap();
            (w.parse().unwrap(), h.parse().unwrap())
        })
        .collect();
    assert_eq!(sizes, expect.rungs, "rung sizes in {}", master.display());
    for (i, (a, uri)) in vars.iter().enumerate() {
        let codecs = attr(a, "CODECS").expect("CODECS");
        // The top rung may be the source's own H.264, remuxed (any profile).
        let profiles: &[&str] = if i == 0 {
            &["avc1.64", "avc1.4d", "avc1.42"]
        } else {
            &["avc1.64"]
        };
        assert!(
            profiles.iter().any(|p| codecs.starts_with(p)),
            "H.264 High (or the source's profile on top): {codecs}"
        );
        assert_eq!(codecs.contains("mp4a.40.2"), expect.audio, "{codecs}");
        let bw: u64 = attr(a, "BANDWIDTH").expect("BANDWIDTH").parse().unwrap();
        let avg: u64 = attr(a, "AVERAGE-BANDWIDTH")
            .expect("AVERAGE-BANDWIDTH")
            .parse()
            .unwrap();
        assert!(
            bw >= avg && avg > 0,
            "BANDWIDTH {bw} ≥ AVERAGE-BANDWIDTH {avg}"
        );
        let fr: f64 = attr(a, "FRAME-RATE").expect("FRAME-RATE").parse().unwrap();
        assert!(
            (fr - expect.fps).abs() < 0.01,
            "FRAME-RATE {fr}, expected {}",
            expect.fps
        );
        assert_eq!(attr(a, "AUDIO").is_some(), expect.audio);
        assert!(dir.join(uri).is_file(), "{uri} exists");
    }

    // Each rung: ffprobe reads it, the size and rate are right, segments are
    // well-formed, and keyframes sit at the same instants in every rung.
    let mut keyframes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((_, uri), &(w, h)) in vars.iter().zip(expect.rungs) {
        let pl = dir.join(uri);
        let info = ffprobe_json(
            &pl,
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,profile,width,height,avg_frame_rate,pix_fmt",
            ],
        );
        let s = &info["streams"][0];
        assert_eq!(s["codec_name"], "h264");
        if uri != &vars[0].1 {
            assert_eq!(s["profile"], "High");
        }
        assert_eq!(s["pix_fmt"], "yuv420p");
        assert_eq!(
            (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()),
            (w, h)
        );
        let (target, segs) = media_playlist(&pl);
        assert!(!segs.is_empty());
        for (i, (d, seg)) in segs.iter().enumerate() {
            assert!(
                d.round() as u64 <= target,
                "EXTINF {d} within target {target}"
            );
            if i + 1 < segs.len() {
                assert!(
                    (3.9..=6.1).contains(d),
                    "inner segment {seg} lasts {d} s (4–6 s)"
                );
            }
            assert_segment_starts_with_keyframe(
                &pl.parent().unwrap().join("init.mp4"),
                &pl.parent().unwrap().join(seg),
            );
        }
        keyframes.insert(uri.clone(), keyframe_times(&pl));
    }
    let mut it = keyframes.values();
    let first = it.next().unwrap();
    assert!(!first.is_empty());
    for other in it {
        assert_eq!(
            other, first,
            "keyframe timestamps differ between rungs: {keyframes:?}"
        );
    }

    // Playback starts clean: every rung's first picture is at 0 (the edit
    // list takes out the reorder delay), and the audio's first sound too
    // (ffprobe shows the frames before it, at most two, which the edit
    // list trims: the encoder's priming, or a copied source's lead).
    let audio_uri = "audio/index.m3u8".to_owned();
    let tracks = vars
        .iter()
        .map(|(_, uri)| uri)
        .chain(expect.audio.then_some(&audio_uri));
    for uri in tracks {
        let info = ffprobe_json(
            &dir.join(uri),
            &["-show_entries", "stream=codec_type,start_time"],
        );
        for s in info["streams"].as_array().unwrap() {
            let start: f64 = s["start_time"].as_str().unwrap().parse().unwrap();
            match s["codec_type"].as_str().unwrap() {
                "video" => assert_eq!(start, 0.0, "{uri}: video starts at {start}"),
                _ => assert!(
                    (-2048.0 / 44_100.0..=0.0).contains(&start),
                    "{uri}: audio starts at {start}"
                ),
            }
        }
    }

    // The whole ladder decodes without a single error.
    let o = run(
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&master)
            .args(["-map", "0", "-f", "null", "-"]),
        LIMIT,
    );
    assert_eq!(o.code, Some(0));
    assert_eq!(
        o.stderr.trim(),
        "",
        "ffmpeg -f null reported errors for {}",
        master.display()
    );

    // The poster is a real JPEG of the top rung's size.
    let poster = dir.join("poster.jpg");
    let p = ffprobe_json(
        &poster,
        &["-show_entries", "stream=codec_name,width,height"],
    );
    assert_eq!(p["streams"][0]["codec_name"], "mjpeg");
    assert_eq!(
        (
            p["streams"][0]["width"].as_u64().unwrap(),
            p["streams"][0]["height"].as_u64().unwrap()
        ),
        expect.rungs[0]
    );
    assert!(!dir
        .with_file_name(format!(
            ".{}.partial",
            dir.file_name().unwrap().to_string_lossy()
        ))
        .exists());
}

fn assert_segment_starts_with_keyframe(init: &Path, seg: &Path) {
    let joined = seg.with_extension("probe.mp4");
    let mut bytes = std::fs::read(init).unwrap();
    bytes.extend(std::fs::read(seg).unwrap());
    std::fs::write(&joined, bytes).unwrap();
    let v = ffprobe_json(
        &joined,
        &[
            "-select_streams",
            "0",
            "-show_entries",
            "packet=flags",
            "-read_intervals",
            "%+#1",
        ],
    );
    std::fs::remove_file(&joined).unwrap();
    let flags = v["packets"][0]["flags"].as_str().unwrap_or("");
    assert!(
        flags.starts_with('K'),
        "{} does not start with a keyframe ({flags})",
        seg.display()
    );
}
