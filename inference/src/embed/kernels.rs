//! CPU kernels for the packed BERT forward in [`super::bert`]: every matrix
//! is a row-major `&[f32]` of token rows, so nothing is copied to make it
//! contiguous and no pad rows are computed.
//!
//! The matrix products go to the `gemm` crate (the one candle uses), which
//! picks AVX2/AVX-512 at run time and spreads over rayon's threads. The
//! elementwise kernels are written so that LLVM vectorises them, and
//! [`simd!`] compiles them a second time with AVX2+FMA / AVX-512 for CPUs
//! that have them: the crate itself is built for baseline x86-64 (SSE2).

use rayon::prelude::*;

/// Token rows handed to one rayon task by the row-wise kernels: enough
/// work to be worth a task, small enough that two cores share a batch of
/// one sentence.
const ROWS_PER_TASK: usize = 8;

/// Defines `$name(args)` that runs `$body` compiled for the best of
/// AVX-512F, AVX2+FMA or the baseline, chosen once per call from the CPU's
/// features (the check is a cached load).
macro_rules! simd {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` is built for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` is built for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// `out[m×n] += a[m×k] · w[k×n]`, so callers fill `out` with a bias (and
/// residual) first and get the sum without another pass. `w` is the
/// transpose of PyTorch's `Linear` weight (see [`transpose`]): gemm then
/// reads it in place instead of packing a copy of it on every call, which
/// costs as much as the product itself for a single short sentence.
pub fn matmul_acc(out: &mut [f32], a: &[f32], w: &[f32], m: usize, n: usize, k: usize) {
    assert!(out.len() == m * n && a.len() == m * k && w.len() == n * k);
    if m == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index gemm forms (row-major
    // `out` and `a`, `w` read as its transpose) inside its slice, and `out`
    // borrows mutably what no input aliases.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// The `cols×rows` transpose of a row-major `rows×cols` matrix.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate().take(rows) {
        for (c, v) in row.iter().enumerate() {
            t[c * rows + r] = *v;
        }
    }
    t
}

/// Sets every `bias.len()`-wide row of `out` to `bias`.
pub fn fill_rows(out: &mut [f32], bias: &[f32]) {
    out.chunks_exact_mut(bias.len())
        .for_each(|row| row.copy_from_slice(bias));
}

/// Sets `out` to `residual` plus `bias` on every row.
pub fn residual_rows(out: &mut [f32], residual: &[f32], bias: &[f32]) {
    out.par_chunks_mut(bias.len() * ROWS_PER_TASK)
        .zip(residual.par_chunks(bias.len() * ROWS_PER_TASK))
        .for_each(|(o, r)| add_rows(o, r, bias));
}

simd! {
    fn add_rows(out: &mut [f32], residual: &[f32], bias: &[f32]) {
        for (o, r) in out.chunks_exact_mut(bias.len()).zip(residual.chunks_exact(bias.len())) {
            for ((o, r), b) in o.iter_mut().zip(r).zip(bias) {
                *o = r + b;
            }
        }
    }
}

/// LayerNorm over each `gamma.len()`-wide row, in place.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    x.par_chunks_mut(gamma.len() * ROWS_PER_TASK)
        .for_each(|rows| layer_norm_rows(rows, gamma, beta, eps));
}

simd! {
    fn layer_norm_rows(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = gamma.len() as f32;
        for row in x.chunks_exact_mut(gamma.len()) {
            let mean = sum(row) / n;
            let mut sq = [0f32; LANES];
            for c in row.chunks_exact(LANES) {
                for (s, v) in sq.iter_mut().zip(c) {
                    *s += (v - mean) * (v - mean);
                }
            }
            let tail: f32 = row.chunks_exact(LANES).remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            let inv = 1.0 / ((sq.iter().sum::<f32>() + tail) / n + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// Independent partial sums: a float sum in order cannot be vectorised.
const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// GELU with the exact erf (what BERT was trained with; the tanh form
/// differs by up to 5e-4), in place.
pub fn gelu(x: &mut [f32], width: usize) {
    x.par_chunks_mut(width * ROWS_PER_TASK).for_each(gelu_rows);
}

simd! {
    fn gelu_rows(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// erf as a rational function of x on [-4, 4] (erf is ±1 to f32 precision
/// outside): the approximation Eigen and XLA use for f32, within a few ulp,
/// and branch-free so it vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// Self-attention over packed token rows. `qkv` holds each token's query,
/// key and value side by side (`3 × heads × head_dim` wide); sentence `s`
/// owns the next `lens[s]` rows, so a token attends to its own sentence
/// only and no mask is needed. Writes the heads' outputs side by side into
/// `ctx` (`heads × head_dim` wide). Sentences run in parallel; each
/// (sentence, head) reads Q, K and V where the projection left them.
pub fn attention(qkv: &[f32], ctx: &mut [f32], lens: &[usize], heads: usize, head_dim: usize) {
    let hidden = heads * head_dim;
    let mut jobs = Vec::with_capacity(lens.len());
    let (mut rest, mut start) = (ctx, 0);
    for &len in lens {
        let (mine, tail) = rest.split_at_mut(len * hidden);
        jobs.push((start, len, mine));
        rest = tail;
        start += len;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    jobs.into_par_iter().for_each(|(start, len, out)| {
        let rows = &qkv[start * 3 * hidden..(start + len) * 3 * hidden];
        sentence_attention(rows, out, len, heads, head_dim, scale);
    });
}

simd! {
    fn sentence_attention(rows: &[f32], out: &mut [f32], len: usize, heads: usize, head_dim: usize, scale: f32) {
        let hidden = heads * head_dim;
        let stride = 3 * hidden;
        let mut p = vec![0f32; len];
        for h in 0..heads {
            let col = h * head_dim;
            for i in 0..len {
                let q = &rows[i * stride + col..][..head_dim];
                for (j, p) in p.iter_mut().enumerate() {
                    *p = dot(q, &rows[j * stride + hidden + col..][..head_dim]) * scale;
                }
                // Softmax over the sentence's real tokens, with std's exact exp.
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0.0;
                for v in p.iter_mut() {
                    *v = (*v - max).exp();
                    total += *v;
                }
                let o = &mut out[i * hidden + col..][..head_dim];
                o.fill(0.0);
                for (j, w) in p.iter().enumerate() {
                    let v = &rows[j * stride + 2 * hidden + col..][..head_dim];
                    let w = w / total;
                    for (o, v) in o.iter_mut().zip(v) {
                        *o += w * v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_the_reference_within_float_precision() {
        // Reference: libm's erf in f64 (what candle's gelu_erf uses).
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let want = libm::erf(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() < 1e-6,
                "erf({x}): {} vs {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn matmul_adds_a_times_a_linear_weight() {
        let (m, n, k) = (3, 5, 7);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.1).collect();
        // `w` as PyTorch stores a Linear weight: n×k.
        let w: Vec<f32> = (0..n * k).map(|i| 1.0 - i as f32 * 0.03).collect();
        let mut out = vec![1.0; m * n];
        matmul_acc(&mut out, &a, &transpose(&w, n, k), m, n, k);
        for i in 0..m {
            for j in 0..n {
                let want = 1.0 + (0..k).map(|t| a[i * k + t] * w[j * k + t]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
