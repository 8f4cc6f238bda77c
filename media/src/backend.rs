//! The decode/scale/encode seam. A job's [`Stages`] are chosen per stage from
//! the `hardware` placement, so a host can decode on one engine and encode on
//! another. Frames cross the seam as FFmpeg `AVFrame`s: host memory for the
//! CPU backend; a device backend carries `AV_PIX_FMT_CUDA` frames the same way.
//!
//! Contract for every backend, relied on by the packager:
//! - decoders emit frames already deinterlaced, upright and at the plan's
//!   constant frame rate; the pipeline numbers them (pts = output frame index);
//! - scalers keep the frame's pts and picture type;
//! - encoders emit H.264 High with an IDR exactly on frames whose picture type
//!   is `I`, and nowhere else, so every rung cuts segments at the same instants.

use ff::Rational;
use ffmpeg_next as ff;

use hardware::{BackendRequest, Engine, HardwareError, Placement};

use crate::error::{MediaError, Result};
use crate::plan::{LadderPlan, Rung};

pub mod cpu;
pub mod nvidia;

/// A decoder plus the normalising filters (deinterlace, rotate, constant rate).
pub trait VideoDecoder: Send {
    fn send_packet(&mut self, packet: &ff::Packet) -> Result<()>;
    fn send_eof(&mut self) -> Result<()>;
    /// The next normalised frame, or `None` when more input is needed (or at the end).
    fn receive_frame(&mut self) -> Result<Option<ff::frame::Video>>;
    /// Packets or frames dropped so far as undecodable.
    fn damaged(&self) -> u64 {
        0
    }
}

pub trait Scaler {
    /// Scales `src` to the rung; `None` when `src` already has the rung's size
    /// and pixel format and can be encoded as is.
    fn scale(&mut self, src: &ff::frame::Video) -> Result<Option<ff::frame::Video>>;
}

pub trait VideoEncoder: Send {
    /// `None` drains the encoder.
    fn send_frame(&mut self, frame: Option<&ff::frame::Video>) -> Result<()>;
    fn receive_packet(&mut self) -> Result<Option<ff::Packet>>;
    /// Codec parameters for the muxer (with SPS/PPS as extradata).
    fn parameters(&self) -> ff::codec::Parameters;
    fn time_base(&self) -> Rational;
}

/// What a scaled frame keeps of its source: the scaler contract (pts and
/// picture type) and the colour description the encoder copies.
pub(crate) fn carry_over(src: &ff::frame::Video, out: &mut ff::frame::Video) {
    out.set_pts(src.pts());
    out.set_kind(src.kind());
    out.set_color_space(src.color_space());
    out.set_color_primaries(src.color_primaries());
    out.set_color_transfer_characteristic(src.color_transfer_characteristic());
}

/// What the decoder needs to know about the input stream.
pub struct DecodeInput<'a> {
    pub parameters: ff::codec::Parameters,
    pub time_base: Rational,
    pub plan: &'a LadderPlan,
}

/// Properties of the first frame a rung sees: the encoder copies its colour
/// description so the output is tagged like the source.
pub struct FrameDescription {
    pub color_space: ff::color::Space,
    pub color_primaries: ff::color::Primaries,
    pub color_trc: ff::color::TransferCharacteristic,
}

pub trait DecodeBackend: Sync {
    fn name(&self) -> &'static str;
    fn video_decoder(&self, input: DecodeInput<'_>) -> Result<Box<dyn VideoDecoder>>;
}

pub trait ScaleBackend: Sync {
    fn name(&self) -> &'static str;
    /// Called on the rung's worker thread (scalers need not be `Send`).
    fn scaler(&self, rung: &Rung) -> Result<Box<dyn Scaler>>;
}

pub trait EncodeBackend: Sync {
    fn name(&self) -> &'static str;
    fn encoder(
        &self,
        rung: &Rung,
        plan: &LadderPlan,
        first: &FrameDescription,
        settings: &EncoderSettings,
    ) -> Result<Box<dyn VideoEncoder>>;
}

/// Encoder knobs that are the operator's (and the benchmark's) to choose.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    /// x264 preset for the CPU encoder.
    pub preset: String,
    /// x264 tune, e.g. `zerolatency` for live (no B-frames, no look-ahead:
    /// a packet leaves the encoder with its frame).
    pub tune: Option<String>,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            preset: "veryfast".into(),
            tune: None,
        }
    }
}

/// The backends a job runs on, one per stage.
#[derive(Clone, Copy)]
pub struct Stages {
    pub decode: &'static dyn DecodeBackend,
    pub scale: &'static dyn ScaleBackend,
    pub encode: &'static dyn EncodeBackend,
}

impl Stages {
    /// The backends of a placement. GPU scaling is fused into NVDEC decode
    /// (one kernel launch writes every rung), so a GPU scale stage needs a GPU
    /// decoder on the same device; an upload-then-scale path is not built.
    pub fn for_placement(placement: Placement) -> Result<Self> {
        let decode: &'static dyn DecodeBackend = match placement.decode {
            Engine::Cpu => &cpu::CPU,
            Engine::Nvidia(g) => nvidia::decoder(g)?,
        };
        let scale: &'static dyn ScaleBackend = match (placement.scale, placement.decode) {
            (Engine::Cpu, Engine::Cpu) => &cpu::CPU,
            (Engine::Nvidia(g), Engine::Nvidia(d)) if g == d => {
                nvidia::scaler(g, matches!(placement.encode, Engine::Nvidia(e) if e == g))?
            }
            (Engine::Cpu | Engine::Nvidia(_), _) => {
                return Err(MediaError::Backend(HardwareError::BackendUnavailable {
                    requested: BackendRequest::Nvidia,
                    reason: format!("unsupported stage combination ({placement}): GPU scaling runs on the decoding GPU"),
                }))
            }
        };
        let encode: &'static dyn EncodeBackend = match placement.encode {
            Engine::Cpu => &cpu::CPU,
            Engine::Nvidia(g) => nvidia::encoder(g)?,
        };
        if let (Engine::Nvidia(e), Engine::Nvidia(d)) = (placement.encode, placement.decode) {
            if e != d {
                return Err(MediaError::Backend(HardwareError::BackendUnavailable {
                    requested: BackendRequest::Nvidia,
                    reason: format!("unsupported stage combination ({placement}): frames do not move between GPUs"),
                }));
            }
        }
        Ok(Self {
            decode,
            scale,
            encode,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "decode={} scale={} encode={}",
            self.decode.name(),
            self.scale.name(),
            self.encode.name()
        )
    }
}
