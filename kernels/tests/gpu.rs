//! Every kernel on the GPU against the CPU reference
//! ([`kernels::conformance`]).
//!
//! Tolerances: 1 code value for 8-bit outputs, 1e-4 for the tensor (both
//! sides do the same float32 operations, so differences are expected to be
//! zero). Without an NVIDIA driver or device the tests print
//! "skipped: no NVIDIA GPU" and pass; they need NVRTC as well (scripts/test
//! puts it on LD_LIBRARY_PATH).

use std::sync::Arc;

use cudarc::driver::CudaStream;
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

#[test]
fn every_kernel_matches_the_cpu_reference() {
    let Some((k, stream)) = gpu() else { return };
    let cases = kernels::conformance::check(&k, &stream).expect("every kernel runs");
    for c in &cases {
        println!(
            "{} {}: max diff {:e} (tolerance {:e})",
            c.kernel, c.case, c.max_diff, c.tolerance
        );
    }
    let failed: Vec<_> = cases.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for kernel in kernels::ptx::KERNELS {
        assert!(
            cases.iter().any(|c| c.kernel == kernel.name),
            "{} is not checked",
            kernel.name
        );
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
        // A side-by-side frame is a multiple of 4 wide and even tall.
        let odd = DeviceNv12 { width: 62, ..frame };
        assert!(k.compose_nv12_sbs(&stream, frame, frame, odd).is_err());
        let short = DeviceNv12 {
            height: 63,
            ..frame
        };
        assert!(k.compose_nv12_sbs(&stream, frame, frame, short).is_err());
        assert!(k.compose_nv12_sbs(&stream, null, frame, frame).is_err());
    }
}

#[test]
fn duet_composition_matches_the_cpu_reference() {
    let Some((k, stream)) = gpu() else { return };
    // The shared clips' shapes: a 4:3 and a 16:9 into a 1280x360 duet.
    let a = kernels::conformance::test_card(320, 240);
    let b = kernels::conformance::test_card(640, 360);
    let got = k.compose_nv12_sbs_host(&stream, &a, &b, 1280, 360).unwrap();
    let want = kernels::cpu::compose_nv12_sbs(&a, &b, 1280, 360).unwrap();
    let d = kernels::conformance::max_diff_u8(&got.y, &want.y)
        .max(kernels::conformance::max_diff_u8(&got.uv, &want.uv));
    println!("compose_nv12_sbs 320x240 + 640x360 -> 1280x360: max diff {d}");
    assert!(d <= 1, "differs from the CPU reference by {d}");
}
