//! Every GPU kernel against the CPU reference, as a library call: the
//! `kernels` GPU tests assert on it, and the GPU bring-up kit (`gpukit`)
//! reports it from a host that has no Rust toolchain.
//!
//! The inputs are deterministic synthetic frames ([`test_card`],
//! [`p010_ramp`]) so a failure reproduces anywhere. Tolerances are the
//! crate's: 1 code value for 8-bit outputs, 1e-4 for the tensor.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use serde::Serialize;

use crate::cpu::{self, chroma_size, Matrix, Normalisation, Nv12Frame, P010Frame, Range};
use crate::gpu::GpuKernels;
use crate::Result;

/// One kernel on one input shape, compared with the CPU reference.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// `resize_nv12_1n`, `resize_p010_1n`, `nv12_to_rgb` or `nv12_to_tensor`.
    pub kernel: &'static str,
    /// Input and output geometry (and matrix/range where they apply).
    pub case: String,
    /// Largest absolute difference over every output sample.
    pub max_diff: f64,
    pub tolerance: f64,
    pub passed: bool,
}

impl Case {
    fn new(kernel: &'static str, case: String, max_diff: f64, tolerance: f64) -> Self {
        Self {
            kernel,
            case,
            max_diff,
            tolerance,
            passed: max_diff <= tolerance,
        }
    }
}

/// Ladder sizes the resize cases scale to (wider than the source is skipped
/// past 2x): common rungs, an odd size, an upscale, and the 1x1 extreme.
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

/// Runs every kernel on the reference inputs; a kernel that fails to run is
/// an error, a kernel that runs but differs is a `Case` with `passed: false`.
pub fn check(k: &GpuKernels, stream: &Arc<CudaStream>) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (w, h) in [(1920, 1080), (640, 360), (127, 71)] {
        let src = test_card(w, h);
        let sizes: Vec<_> = LADDER
            .iter()
            .copied()
            .filter(|&(dw, _)| dw <= 2 * w)
            .collect();
        let got = k.resize_nv12_host(stream, &src, &sizes)?;
        let want = cpu::resize_nv12(&src, &sizes)?;
        for (g, c) in got.iter().zip(&want) {
            let d = nv12_diff(g, c);
            let case = format!("{w}x{h} -> {}x{}", c.width, c.height);
            cases.push(Case::new("resize_nv12_1n", case, d, 1.0));
        }
    }
    let src = p010_ramp(1280, 720);
    let sizes = [(1280, 720), (640, 360), (426, 240), (1920, 1080)];
    let got = k.resize_p010_host(stream, &src, &sizes)?;
    let want = cpu::resize_p010(&src, &sizes)?;
    for (g, c) in got.iter().zip(&want) {
        let case = format!("1280x720 -> {}x{}", c.width, c.height);
        cases.push(Case::new("resize_p010_1n", case, nv12_diff(g, c), 1.0));
    }
    let src = test_card(640, 360);
    for (matrix, range) in [
        (Matrix::Bt601, Range::Limited),
        (Matrix::Bt709, Range::Limited),
        (Matrix::Bt709, Range::Full),
    ] {
        for (w, h) in [(640, 360), (224, 224), (1001, 563)] {
            let got = k.nv12_to_rgb_host(stream, &src, w, h, matrix, range)?;
            let want = cpu::nv12_to_rgb(&src, w, h, matrix, range)?;
            let d = f64::from(max_diff_u8(&got.data, &want.data));
            let case = format!("640x360 -> {w}x{h} {matrix:?} {range:?}");
            cases.push(Case::new("nv12_to_rgb", case, d, 1.0));
        }
    }
    let src = test_card(1280, 720);
    let norm = Normalisation::IMAGENET;
    for (w, h) in [(224, 224), (384, 216)] {
        let (m, r) = (Matrix::Bt709, Range::Limited);
        let got = k.nv12_to_tensor_host(stream, &src, w, h, m, r, &norm)?;
        let want = cpu::nv12_to_tensor(&src, w, h, m, r, &norm)?;
        let d = f64::from(max_diff_f32(&got.data, &want.data));
        let case = format!("1280x720 -> {w}x{h} Bt709 Limited ImageNet");
        cases.push(Case::new("nv12_to_tensor", case, d, 1e-4));
    }
    // Duets: sources of different sizes and shapes (a 4:3 and a 16:9, a
    // portrait phone, odd sizes), into wide and portrait frames.
    for ((aw, ah), (bw, bh), (w, h)) in [
        ((320, 240), (640, 360), (1280, 360)),
        ((1080, 1920), (1920, 1080), (1216, 1080)),
        ((127, 71), (33, 65), (256, 144)),
        ((640, 360), (640, 360), (720, 1280)),
    ] {
        let (a, b) = (test_card(aw, ah), test_card(bw, bh));
        let got = k.compose_nv12_sbs_host(stream, &a, &b, w, h)?;
        let want = cpu::compose_nv12_sbs(&a, &b, w, h)?;
        let case = format!("{aw}x{ah} + {bw}x{bh} -> {w}x{h}");
        cases.push(Case::new(
            "compose_nv12_sbs",
            case,
            nv12_diff(&got, &want),
            1.0,
        ));
    }
    Ok(cases)
}

fn nv12_diff(a: &Nv12Frame, b: &Nv12Frame) -> f64 {
    if (a.width, a.height) != (b.width, b.height) {
        return f64::INFINITY;
    }
    f64::from(max_diff_u8(&a.y, &b.y).max(max_diff_u8(&a.uv, &b.uv)))
}

/// 75% colour bars as BT.601 limited-range Y'CbCr: white, yellow, cyan,
/// green, magenta, red, blue, black.
pub const BARS_601: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];

/// A test card: colour bars over the top two thirds; below, a luma gradient
/// (left half) and a 4-pixel checkerboard (right half) on neutral chroma.
pub fn test_card(width: u32, height: u32) -> Nv12Frame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let bars_end = h * 2 / 3;
    let bar = |x: usize| BARS_601[(x * 8 / w).min(7)];
    let mut y = vec![0u8; w * h];
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = if r < bars_end {
                bar(c).0
            } else if c < w / 2 {
                (16 + (c * 219 / (w / 2).max(1)) + (r - bars_end) % 3) as u8
            } else if ((c / 4) + (r / 4)) % 2 == 0 {
                235
            } else {
                16
            };
        }
    }
    let mut uv = vec![128u8; 2 * cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            if 2 * r < bars_end {
                let (_, cb, cr) = bar((2 * c).min(w - 1));
                uv[2 * (r * cw + c)] = cb;
                uv[2 * (r * cw + c) + 1] = cr;
            }
        }
    }
    Nv12Frame {
        width,
        height,
        y,
        uv,
    }
}

/// A 10-bit P010 ramp: luma rises 0..=1023 along the diagonal, Cb along x,
/// Cr along y; samples stored `value10 << 6`.
pub fn p010_ramp(width: u32, height: u32) -> P010Frame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let span = (w + h - 2).max(1);
    let mut y = vec![0u16; w * h];
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = (((r + c) * 1023 / span) as u16) << 6;
        }
    }
    let mut uv = vec![0u16; 2 * cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            uv[2 * (r * cw + c)] = ((c * 1023 / (cw - 1).max(1)) as u16) << 6;
            uv[2 * (r * cw + c) + 1] = ((r * 1023 / (ch - 1).max(1)) as u16) << 6;
        }
    }
    P010Frame {
        width,
        height,
        y,
        uv,
    }
}

/// Largest absolute difference between two 8-bit buffers (`u8::MAX` when
/// their lengths differ).
pub fn max_diff_u8(a: &[u8], b: &[u8]) -> u8 {
    if a.len() != b.len() {
        return u8::MAX;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Largest absolute difference between two float buffers (infinite when
/// their lengths differ).
pub fn max_diff_f32(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Peak signal-to-noise ratio of two 8-bit planes in dB (`f64::INFINITY`
/// when identical, 0 when the lengths differ).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)).pow(2))
        .sum();
    if se == 0 {
        return f64::INFINITY;
    }
    let mse = se as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_valid_frames() {
        test_card(127, 71).validate().unwrap();
        p010_ramp(33, 17).validate().unwrap();
    }

    #[test]
    fn psnr_of_known_errors() {
        assert_eq!(psnr(&[1, 2, 3], &[1, 2, 3]), f64::INFINITY);
        // Every sample off by 1: MSE 1 → 48.13 dB.
        let p = psnr(&[10; 100], &[11; 100]);
        assert!((p - 48.1308).abs() < 1e-3, "{p}");
        assert_eq!(psnr(&[1], &[1, 2]), 0.0);
    }
}
