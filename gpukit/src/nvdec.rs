//! NVDEC decode with the fused ladder scale (the engine's own session,
//! `hardware::nvidia::decode`) on every clip, against the CPU: the identity
//! rung against FFmpeg's software decode (every frame hashed, kept frames by
//! PSNR), every other rung against the CPU decode + the CPU reference
//! resize; then decoded frames/s and scale time per frame, GPU and CPU.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::CudaStream;
use hardware::nvidia::decode::NvdecSession;
use hardware::nvidia::memory::{self, copy_2d, Device, Mem, Pool};
use hardware::Inventory;
use kernels::conformance::psnr;
use kernels::cpu::{self, Nv12Frame};
use serde::Serialize;

use crate::clips::{frame_sha256, Clip};
use crate::error::{KitError, Result};

/// Lowest PSNR (dB) that passes: the kernels' tolerance of one code value
/// everywhere would still give 48 dB.
const MIN_PSNR: f64 = 45.0;
/// Bytes handed to the parser per call (it splits access units itself).
const CHUNK: usize = 1 << 20;

#[derive(Debug, Serialize)]
pub struct ClipReport {
    pub clip: String,
    pub codec: String,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
    /// `passed`, `failed`, or `unsupported` (the GPU's NVDEC caps refuse it:
    /// the box decodes it on the CPU).
    pub status: &'static str,
    pub reason: Option<String>,
    pub frames_expected: usize,
    pub frames_decoded: usize,
    /// Identity-rung frames bit-identical to the CPU decode.
    pub frames_identical: usize,
    pub first_mismatch: Option<usize>,
    pub rungs: Vec<RungReport>,
    /// Decode + fused scale into every rung, frames left on the GPU.
    pub decode_fps: Option<f64>,
    pub scale_ms_per_frame_gpu: Option<f64>,
    pub scale_ms_per_frame_cpu: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct RungReport {
    pub width: u32,
    pub height: u32,
    /// Lowest over the kept frames, luma and chroma.
    pub psnr_y_min: f64,
    pub psnr_uv_min: f64,
    pub max_diff: u8,
}

pub fn run(dir: &Path, inventory: &Inventory, gpu: usize) -> Result<Vec<ClipReport>> {
    let clips = Clip::all_in(dir)?;
    if clips.is_empty() {
        return Err(KitError::Invalid(format!(
            "{}: no clip descriptions (*.json); scripts/gpu-bundle makes them",
            dir.display()
        )));
    }
    let caps = inventory.gpus.get(gpu).and_then(|g| g.nvdec.as_ref());
    let mut out = Vec::new();
    for (_, clip) in clips {
        let mut r = ClipReport {
            clip: clip.name().to_owned(),
            codec: clip.codec.clone(),
            bit_depth: clip.bit_depth,
            width: clip.width,
            height: clip.height,
            status: "failed",
            reason: None,
            frames_expected: clip.identity_sha256.len(),
            frames_decoded: 0,
            frames_identical: 0,
            first_mismatch: None,
            rungs: Vec::new(),
            decode_fps: None,
            scale_ms_per_frame_gpu: None,
            scale_ms_per_frame_cpu: None,
        };
        let supported =
            caps.is_some_and(|c| c.supports(&clip.codec, clip.bit_depth, clip.width, clip.height));
        if !supported {
            r.status = "unsupported";
            r.reason = Some(match caps {
                Some(_) => "this GPU's NVDEC caps do not list it".into(),
                None => "no NVDEC on this GPU".into(),
            });
        } else if let Err(e) = check(dir, &clip, gpu, &mut r) {
            r.reason = Some(e.to_string());
        }
        eprintln!(
            "  {} {}-bit {}x{}: {} ({}/{} frames, {} identical){}",
            r.codec,
            r.bit_depth,
            r.width,
            r.height,
            r.status,
            r.frames_decoded,
            r.frames_expected,
            r.frames_identical,
            r.reason
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
        out.push(r);
    }
    Ok(out)
}

fn check(dir: &Path, clip: &Clip, gpu: usize, r: &mut ClipReport) -> Result<()> {
    let path = dir.join(&clip.file);
    let stream_bytes = std::fs::read(&path).map_err(KitError::io(&path))?;
    let rungs = clip.rungs();
    let samples: Vec<(usize, Nv12Frame)> = clip
        .samples
        .iter()
        .map(|s| Ok((s.frame, clip.load_sample(dir, s)?)))
        .collect::<Result<_>>()?;
    let mut worst: Vec<RungReport> = rungs
        .iter()
        .map(|&(width, height)| RungReport {
            width,
            height,
            psnr_y_min: f64::INFINITY,
            psnr_uv_min: f64::INFINITY,
            max_diff: 0,
        })
        .collect();

    // Pass 1: correctness, every frame's identity rung downloaded.
    let mut session = NvdecSession::new(gpu, &clip.codec, &rungs, false)?;
    let stream = session.device().stream()?;
    let mut index = 0usize;
    let mut on_frame = |d: hardware::nvidia::decode::Decoded| -> Result<()> {
        let (y, uv) = memory::download_nv12(&stream, &d.frame.rungs[0])?;
        let same = clip
            .identity_sha256
            .get(index)
            .is_some_and(|h| *h == frame_sha256(&y, &uv));
        if same {
            r.frames_identical += 1;
        } else if r.first_mismatch.is_none() {
            r.first_mismatch = Some(index);
        }
        if let Some((_, want)) = samples.iter().find(|(f, _)| *f == index) {
            for (i, (buf, w)) in d.frame.rungs.iter().zip(worst.iter_mut()).enumerate() {
                let (gy, guv) = if i == 0 {
                    (y.clone(), uv.clone())
                } else {
                    memory::download_nv12(&stream, buf)?
                };
                let reference = cpu::resize_nv12(want, &[(w.width, w.height)])?.remove(0);
                w.psnr_y_min = w.psnr_y_min.min(psnr(&gy, &reference.y));
                w.psnr_uv_min = w.psnr_uv_min.min(psnr(&guv, &reference.uv));
                w.max_diff = w
                    .max_diff
                    .max(kernels::conformance::max_diff_u8(&gy, &reference.y))
                    .max(kernels::conformance::max_diff_u8(&guv, &reference.uv));
            }
        }
        index += 1;
        Ok(())
    };
    for chunk in stream_bytes.chunks(CHUNK) {
        session.parse(chunk, None)?;
        while let Some(d) = session.pop() {
            on_frame(d)?;
        }
    }
    session.finish()?;
    while let Some(d) = session.pop() {
        on_frame(d)?;
    }
    drop(session);
    r.frames_decoded = index;
    r.rungs = worst;

    // Pass 2: throughput, frames left on the GPU as the engine leaves them.
    let mut session = NvdecSession::new(gpu, &clip.codec, &rungs, false)?;
    let t = Instant::now();
    let mut timed = 0usize;
    for chunk in stream_bytes.chunks(CHUNK) {
        session.parse(chunk, None)?;
        while session.pop().is_some() {
            timed += 1;
        }
    }
    session.finish()?;
    while session.pop().is_some() {
        timed += 1;
    }
    r.decode_fps = Some(timed as f64 / t.elapsed().as_secs_f64());
    let device = Arc::clone(session.device());
    drop(session);

    if let Some((_, frame)) = samples.first() {
        let ladder = &rungs[1..];
        if !ladder.is_empty() {
            r.scale_ms_per_frame_gpu = Some(gpu_scale_ms(&device, frame, ladder)?);
            r.scale_ms_per_frame_cpu = Some(cpu_scale_ms(frame, ladder)?);
        }
    }

    let bad_rung = r
        .rungs
        .iter()
        .find(|w| w.psnr_y_min < MIN_PSNR || w.psnr_uv_min < MIN_PSNR);
    r.status = if r.frames_decoded != r.frames_expected {
        r.reason = Some(format!(
            "decoded {} frames, the CPU decoded {}",
            r.frames_decoded, r.frames_expected
        ));
        "failed"
    } else if let Some(w) = bad_rung {
        r.reason = Some(format!(
            "{}x{}: PSNR {:.1}/{:.1} dB against the CPU (below {MIN_PSNR})",
            w.width, w.height, w.psnr_y_min, w.psnr_uv_min
        ));
        "failed"
    } else {
        "passed"
    };
    Ok(())
}

/// The fused 1:N kernel alone, from a frame already in device memory.
fn gpu_scale_ms(device: &Arc<Device>, frame: &Nv12Frame, ladder: &[(u32, u32)]) -> Result<f64> {
    let stream: Arc<CudaStream> = device.stream()?;
    let src_pool = Pool::new(Arc::clone(&device.ctx), frame.width, frame.height);
    let src = src_pool.take()?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = cpu::chroma_size(frame.width, frame.height);
    // SAFETY: the host planes outlive the copies (synchronised below); the
    // pooled buffer holds h luma and ch chroma rows at its pitch.
    unsafe {
        copy_2d(
            &stream,
            Mem::Host(frame.y.as_ptr().cast_mut()),
            w,
            Mem::Device(src.ptr),
            src.pitch,
            w,
            h,
        )?;
        copy_2d(
            &stream,
            Mem::Host(frame.uv.as_ptr().cast_mut()),
            2 * cw as usize,
            Mem::Device(src.chroma()),
            src.pitch,
            2 * cw as usize,
            ch as usize,
        )?;
    }
    let pools: Vec<_> = ladder
        .iter()
        .map(|&(w, h)| Pool::new(Arc::clone(&device.ctx), w, h))
        .collect();
    let dsts = pools
        .iter()
        .map(|p| p.take())
        .collect::<Result<Vec<_>, _>>()?;
    let descs: Vec<_> = dsts.iter().map(|b| b.nv12()).collect();
    let k = device.kernels()?;
    let launch = || -> Result<()> {
        // SAFETY: source and destinations are live allocations of this
        // context, sized for their frames, untouched by other work.
        unsafe { k.resize_nv12_1n(&stream, src.nv12(), &descs) }?;
        Ok(())
    };
    launch()?;
    stream
        .synchronize()
        .map_err(memory::cuda_err("waiting for the scale"))?;
    const RUNS: usize = 200;
    let t = Instant::now();
    for _ in 0..RUNS {
        launch()?;
    }
    stream
        .synchronize()
        .map_err(memory::cuda_err("waiting for the scale"))?;
    Ok(t.elapsed().as_secs_f64() * 1e3 / RUNS as f64)
}

/// The CPU reference of the same 1:N resize, on this host's CPU.
fn cpu_scale_ms(frame: &Nv12Frame, ladder: &[(u32, u32)]) -> Result<f64> {
    const RUNS: usize = 3;
    let t = Instant::now();
    for _ in 0..RUNS {
        cpu::resize_nv12(frame, ladder)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / RUNS as f64)
}
