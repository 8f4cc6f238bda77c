//! The NVIDIA path against the CPU path on the shared clips. Skipped (and
//! saying so) on hosts without an NVIDIA GPU; `scripts/gpu-check` runs it on
//! one. The CPU path's own tests are the e2e suite; these check that the GPU
//! path produces the same ladder shape without falling back.

use std::path::{Path, PathBuf};

use hardware::{BackendRequest, Engine, Inventory};
use media::{transcode, LadderOutput, TranscodeOptions};

fn clip(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../../shared/media")
        .join(name)
}

fn gpu_inventory() -> Option<Inventory> {
    let inv = Inventory::discover();
    if inv.gpus.is_empty() {
        eprintln!("skipped: no NVIDIA GPU ({:?})", inv.notes);
        return None;
    }
    Some(inv)
}

fn run(inv: &Inventory, input: &Path, out: &Path, backend: BackendRequest) -> LadderOutput {
    let opts = TranscodeOptions {
        backend,
        ..Default::default()
    };
    transcode(input, out, &opts, inv, &|_| {}).expect("transcode")
}

/// Segment durations per rung, from the media playlists.
fn segments(ladder: &LadderOutput) -> Vec<Vec<String>> {
    ladder
        .renditions
        .iter()
        .map(|r| {
            std::fs::read_to_string(&r.playlist)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("#EXTINF"))
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn the_gpu_ladder_matches_the_cpu_ladder_in_shape() {
    let Some(inv) = gpu_inventory() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "h264_1080p50_1s.mp4",
        "bbb_320x240_h264_aac_10s.mp4",
        "hevc_1080p50_1s.mp4",
    ] {
        let before = media::gpu_fallbacks();
        let gpu = run(
            &inv,
            &clip(name),
            &tmp.path().join(format!("gpu-{name}")),
            BackendRequest::Nvidia,
        );
        assert_eq!(
            media::gpu_fallbacks(),
            before,
            "{name}: the GPU attempt fell back to the CPU (see the log)"
        );
        assert!(
            matches!(gpu.placement.decode, Engine::Nvidia(_))
                || matches!(gpu.placement.encode, Engine::Nvidia(_)),
            "{name}: {}",
            gpu.placement
        );
        let cpu = run(
            &inv,
            &clip(name),
            &tmp.path().join(format!("cpu-{name}")),
            BackendRequest::Cpu,
        );
        // Same frames (the CFR logic mirrors FFmpeg's fps filter), same
        // rungs, segments cut at the same instants in every rung.
        assert!(
            gpu.frames.abs_diff(cpu.frames) <= 1,
            "{name}: {} vs {} frames",
            gpu.frames,
            cpu.frames
        );
        let dims = |l: &LadderOutput| {
            l.renditions
                .iter()
                .map(|r| (r.width, r.height))
                .collect::<Vec<_>>()
        };
        assert_eq!(dims(&gpu), dims(&cpu), "{name}");
        let segs = segments(&gpu);
        assert!(
            segs.windows(2).all(|w| w[0] == w[1]),
            "{name}: rungs cut differently: {segs:?}"
        );
        assert_eq!(segs[0].len(), segments(&cpu)[0].len(), "{name}");
        for r in &gpu.renditions {
            assert!(
                r.codecs.starts_with("avc1.64"),
                "{name}: High profile expected, got {}",
                r.codecs
            );
        }
        assert!(gpu.poster.is_file());
    }
}

#[test]
fn sessions_are_released_after_a_job() {
    let Some(inv) = gpu_inventory() else { return };
    let tmp = tempfile::tempdir().unwrap();
    run(
        &inv,
        &clip("bbb_320x240_h264_aac_10s.mp4"),
        &tmp.path().join("x"),
        BackendRequest::Auto,
    );
    assert!(
        inv.load()
            .iter()
            .all(|l| l.encode_sessions == 0 && l.memory_bytes == 0),
        "{:?}",
        inv.load()
    );
}
