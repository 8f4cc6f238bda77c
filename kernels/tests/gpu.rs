//! Every kernel on the GPU against the CPU reference.
//!
//! Tolerances: 1 code value for 8-bit outputs, 1e-4 for the tensor (both
//! sides do the same float32 operations, so differences are expected to be
//! zero). Without an NVIDIA driver or device the tests print
//! "skipped: no NVIDIA GPU" and pass; they need NVRTC as well (scripts/test
//! puts it on LD_LIBRARY_PATH).

mod common;

use std::sync::Arc;

use common::{max_diff_f32, max_diff_u8, p010_ramp, test_card};
use cudarc::driver::CudaStream;
use kernels::cpu::{self, Matrix, Normalisation, Nv12Frame, Range};
use kernels::gpu::{self, DeviceNv12, GpuKernels};

fn gpu() -> Option<(GpuKernels, Arc<CudaStream>)> {
    if kernels::probe::cuda_driver_library().is_none() || gpu::device_count().unwrap_or(0) == 0 {
        println!("skipped: no NVIDIA GPU");
        return None;
    }
    let ctx = gpu::context(0).expect("CUDA context on device 0");
    let kernels = GpuKernels::new(ctx.clone()).expect("kernels load");
    println!("{} ({})", ctx.name().unwrap_or_default(), kernels.arch());
    let stream = ctx.new_stream().expect("stream");
    Some((kernels, stream))
}

fn assert_nv12_close(what: &str, gpu: &Nv12Frame, cpu: &Nv12Frame) {
    assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height), "{what}");
    let dy = max_diff_u8(&gpu.y, &cpu.y);
    let duv = max_diff_u8(&gpu.uv, &cpu.uv);
    println!(
        "{what} {}x{}: max diff luma {dy}, chroma {duv}",
        gpu.width, gpu.height
    );
    assert!(dy <= 1 && duv <= 1, "{what} {}x{}", gpu.width, gpu.height);
}

const LADDER: [(u32, u32); 8] = [
    (1280, 720),
    (854, 480),
    (640, 360),
    (426, 240),
    (256, 144),
    (333, 187),
    (2560, 1440),
    (1, 1),
];

#[test]
fn resize_nv12_matches_cpu() {
    let Some((k, stream)) = gpu() else { return };
    for (w, h) in [(1920, 1080), (640, 360), (127, 71)] {
        let src = test_card(w, h);
        let sizes: Vec<_> = LADDER
            .iter()
            .copied()
            .filter(|&(dw, _)| dw <= 2 * w)
            .collect();
        let got = k.resize_nv12_host(&stream, &src, &sizes).unwrap();
        let want = cpu::resize_nv12(&src, &sizes).unwrap();
        for (g, c) in got.iter().zip(&want) {
            assert_nv12_close(&format!("NV12 {w}x{h} ->"), g, c);
        }
    }
}

#[test]
fn resize_p010_matches_cpu() {
    let Some((k, stream)) = gpu() else { return };
    let src = p010_ramp(1280, 720);
    let sizes = [(1280, 720), (640, 360), (426, 240), (1920, 1080)];
    let got = k.resize_p010_host(&stream, &src, &sizes).unwrap();
    let want = cpu::resize_p010(&src, &sizes).unwrap();
    for (g, c) in got.iter().zip(&want) {
        assert_nv12_close("P010 1280x720 ->", g, c);
    }
}

#[test]
fn nv12_to_rgb_matches_cpu() {
    let Some((k, stream)) = gpu() else { return };
    let src = test_card(640, 360);
    for (matrix, range) in [
        (Matrix::Bt601, Range::Limited),
        (Matrix::Bt709, Range::Limited),
        (Matrix::Bt709, Range::Full),
    ] {
        for (w, h) in [(640, 360), (224, 224), (1001, 563)] {
            let got = k
                .nv12_to_rgb_host(&stream, &src, w, h, matrix, range)
                .unwrap();
            let want = cpu::nv12_to_rgb(&src, w, h, matrix, range).unwrap();
            let d = max_diff_u8(&got.data, &want.data);
            println!("RGB {matrix:?} {range:?} {w}x{h}: max diff {d}");
            assert!(d <= 1, "RGB {matrix:?} {range:?} {w}x{h}");
        }
    }
}

#[test]
fn nv12_to_tensor_matches_cpu() {
    let Some((k, stream)) = gpu() else { return };
    let src = test_card(1280, 720);
    for (w, h) in [(224, 224), (384, 216)] {
        let norm = Normalisation::IMAGENET;
        let got = k
            .nv12_to_tensor_host(&stream, &src, w, h, Matrix::Bt709, Range::Limited, &norm)
            .unwrap();
        let want = cpu::nv12_to_tensor(&src, w, h, Matrix::Bt709, Range::Limited, &norm).unwrap();
        let d = max_diff_f32(&got.data, &want.data);
        println!("tensor {w}x{h}: max diff {d:e}");
        assert!(d <= 1e-4, "tensor {w}x{h}: {d}");
    }
}

#[test]
fn rejects_bad_descriptors() {
    let Some((k, stream)) = gpu() else { return };
    let frame = DeviceNv12 {
        y: 0x1000,
        uv: 0x2000,
        pitch: 64,
        width: 64,
        height: 64,
    };
    // Nothing below reaches the device: every call fails validation first.
    // SAFETY: no launch happens on invalid arguments.
    unsafe {
        assert!(k.resize_nv12_1n(&stream, frame, &[]).is_err());
        assert!(k.resize_nv12_1n(&stream, frame, &[frame; 9]).is_err());
        let narrow = DeviceNv12 { pitch: 32, ..frame };
        assert!(k.resize_nv12_1n(&stream, narrow, &[frame]).is_err());
        let null = DeviceNv12 { y: 0, ..frame };
        assert!(k.resize_nv12_1n(&stream, frame, &[null]).is_err());
    }
}
