//! NVIDIA backend: NVDEC decode with the ladder scale fused in (one kernel
//! launch per decoded frame writes every rung), NVENC encode, frames in
//! device memory from decode to encode. NVIDIA's libraries are loaded at run
//! time (`hardware::nvidia`), so this code is in every build and only runs
//! where the placement put a stage on a GPU.
//!
//! Stage combinations, as `hardware`'s policy produces them:
//! - NVDEC + CUDA scale + NVENC on one GPU: device memory end to end;
//! - NVDEC + CUDA scale, CPU encode (H100/H200/A100: no NVENC): each rung is
//!   downloaded once, after scaling;
//! - CPU decode + CPU scale + NVENC: each rung is uploaded once, before NVENC.

mod annexb;

/// Public for the fuzz target (`fuzz/fuzz_targets/annexb.rs`): it parses
/// bytes from uploaded files.
pub use annexb::AnnexB;
mod device;
mod nvdec;
mod nvenc;

use std::sync::OnceLock;

use super::{
    DecodeBackend, DecodeInput, EncodeBackend, EncoderSettings, FrameDescription, ScaleBackend,
    Scaler, VideoDecoder, VideoEncoder,
};
use crate::error::{MediaError, Result};
use crate::plan::{LadderPlan, Rung};

pub use device::device_frame;
pub use nvenc::preset_level as nvenc_preset_level;

/// GPUs this process addresses at most (backends are `'static`, one per GPU).
const MAX_GPUS: usize = 16;

pub struct Nvdec {
    gpu: usize,
}

pub struct CudaScale {
    gpu: usize,
    /// Hand the rung to a CPU encoder (download) rather than to NVENC.
    download: bool,
}

pub struct Nvenc {
    gpu: usize,
}

struct Backends {
    nvdec: Vec<Nvdec>,
    scale_keep: Vec<CudaScale>,
    scale_download: Vec<CudaScale>,
    nvenc: Vec<Nvenc>,
}

fn backends() -> &'static Backends {
    static B: OnceLock<Backends> = OnceLock::new();
    B.get_or_init(|| Backends {
        nvdec: (0..MAX_GPUS).map(|gpu| Nvdec { gpu }).collect(),
        scale_keep: (0..MAX_GPUS)
            .map(|gpu| CudaScale {
                gpu,
                download: false,
            })
            .collect(),
        scale_download: (0..MAX_GPUS)
            .map(|gpu| CudaScale {
                gpu,
                download: true,
            })
            .collect(),
        nvenc: (0..MAX_GPUS).map(|gpu| Nvenc { gpu }).collect(),
    })
}

fn slot<T>(list: &'static [T], gpu: usize) -> Result<&'static T> {
    list.get(gpu).ok_or_else(|| MediaError::Device {
        op: "choosing a GPU",
        reason: format!("GPU {gpu} is past the {MAX_GPUS} this build addresses"),
    })
}

pub fn decoder(gpu: usize) -> Result<&'static Nvdec> {
    slot(&backends().nvdec, gpu)
}

pub fn scaler(gpu: usize, encode_on_gpu: bool) -> Result<&'static CudaScale> {
    let b = backends();
    slot(
        if encode_on_gpu {
            &b.scale_keep
        } else {
            &b.scale_download
        },
        gpu,
    )
}

pub fn encoder(gpu: usize) -> Result<&'static Nvenc> {
    slot(&backends().nvenc, gpu)
}

impl DecodeBackend for Nvdec {
    fn name(&self) -> &'static str {
        "nvdec"
    }

    fn video_decoder(&self, input: DecodeInput<'_>) -> Result<Box<dyn VideoDecoder>> {
        Ok(Box::new(nvdec::NvdecDecoder::new(self.gpu, input)?))
    }
}

impl ScaleBackend for CudaScale {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn scaler(&self, rung: &Rung) -> Result<Box<dyn Scaler>> {
        let device = device::Device::get(self.gpu)?;
        let stream = device.stream()?;
        Ok(Box::new(RungPick {
            width: rung.width,
            height: rung.height,
            download: self.download,
            stream,
        }))
    }
}

/// The rung was scaled by the decoder's fused kernel; this picks it out of
/// the device frame (and downloads it when a CPU encoder follows).
struct RungPick {
    width: u32,
    height: u32,
    download: bool,
    stream: std::sync::Arc<cudarc::driver::CudaStream>,
}

impl Scaler for RungPick {
    fn scale(
        &mut self,
        src: &ffmpeg_next::frame::Video,
    ) -> Result<Option<ffmpeg_next::frame::Video>> {
        let df = device::device_frame(src).ok_or_else(|| MediaError::Device {
            op: "GPU scale",
            reason: "the decoder did not hand over a device frame".into(),
        })?;
        if !self.download {
            return Ok(None); // NVENC picks its rung out of the device frame
        }
        let rung = df
            .rungs
            .iter()
            .find(|b| b.width == self.width && b.height == self.height)
            .ok_or_else(|| MediaError::Device {
                op: "GPU scale",
                reason: format!("no {}x{} rung on the frame", self.width, self.height),
            })?;
        let mut out = device::download(&self.stream, rung)?;
        super::carry_over(src, &mut out);
        Ok(Some(out))
    }
}

impl EncodeBackend for Nvenc {
    fn name(&self) -> &'static str {
        "nvenc"
    }

    fn encoder(
        &self,
        rung: &Rung,
        plan: &LadderPlan,
        first: &FrameDescription,
        settings: &EncoderSettings,
    ) -> Result<Box<dyn VideoEncoder>> {
        Ok(Box::new(nvenc::NvencEncoder::new(
            self.gpu, rung, plan, first, settings,
        )?))
    }
}

/// A host copy of the largest rung of a device frame, for the poster.
pub fn download_top(
    frame: &ffmpeg_next::frame::Video,
) -> Result<Option<ffmpeg_next::frame::Video>> {
    let Some(df) = device::device_frame(frame) else {
        return Ok(None);
    };
    let Some(top) = df.rungs.first() else {
        return Ok(None);
    };
    let stream = device::Device::get(df.gpu)?.stream()?;
    device::download(&stream, top).map(Some)
}
