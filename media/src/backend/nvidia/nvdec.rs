//! NVDEC decode: libavformat packets → Annex B (bitstream filter) → cuvid
//! parser → hardware decoder → each displayed surface scaled in one kernel
//! launch into every rung (frames never leave the GPU) → constant frame rate.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

use cudarc::driver::CudaStream;
use ff::Rational;
use ffmpeg_next as ff;
use hardware::nvidia::cuvid::{self, Cuvid};
use nvidia_video_codec_sdk::sys::cuviddec::{
    cudaVideoChromaFormat, cudaVideoCreateFlags, cudaVideoDeinterlaceMode, cudaVideoSurfaceFormat,
    CUvideodecoder, CUVIDDECODECREATEINFO, CUVIDPICPARAMS, CUVIDPROCPARAMS,
};
use nvidia_video_codec_sdk::sys::nvcuvid::{
    CUvideopacketflags, CUvideoparser, CUVIDEOFORMAT, CUVIDPARSERDISPINFO, CUVIDPARSERPARAMS,
    CUVIDSOURCEDATAPACKET,
};

use super::annexb::AnnexB;
use super::device::{self, Device, DeviceFrame, Pool};
use crate::backend::{DecodeInput, VideoDecoder};
use crate::error::{MediaError, Result};

fn failed(op: &'static str, code: c_int) -> MediaError {
    MediaError::Device {
        op,
        reason: format!("CUresult {code}"),
    }
}

fn extradata(params: &ff::codec::Parameters) -> &[u8] {
    // SAFETY: extradata/extradata_size describe one buffer owned by `params`.
    unsafe {
        let p = params.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return &[];
        }
        std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize)
    }
}

/// Decoder state the parser's callbacks reach through `pUserData`; boxed so
/// its address is stable.
struct State {
    cuvid: &'static Cuvid,
    device: Arc<Device>,
    stream: Arc<CudaStream>,
    codec: nvidia_video_codec_sdk::sys::cuviddec::cudaVideoCodec,
    decoder: CUvideodecoder,
    /// Geometry the decoder was created for: (coded w, coded h, depth, target w, target h).
    format: Option<(u32, u32, u8, u32, u32)>,
    deinterlace: bool,
    pools: Vec<Arc<Pool>>,
    /// Decoded frames with their timestamps (stream time base), in display order.
    decoded: VecDeque<(ff::frame::Video, i64)>,
    error: Option<MediaError>,
}

pub struct NvdecDecoder {
    state: Box<State>,
    parser: CUvideoparser,
    annexb: AnnexB,
    cfr: Cfr,
    ready: VecDeque<ff::frame::Video>,
}

// SAFETY: the decoder and parser handles are used only by the thread that
// owns this value (calls are serialised by &mut self); CUDA handles are not
// tied to a thread once the context is bound.
unsafe impl Send for NvdecDecoder {}

impl NvdecDecoder {
    pub fn new(gpu: usize, input: DecodeInput<'_>) -> Result<Self> {
        let cuvid = cuvid::get().map_err(|e| MediaError::Device {
            op: "loading NVDEC",
            reason: e.clone(),
        })?;
        let codec_name = input.parameters.id().name();
        let codec = cuvid::codec_id(codec_name)
            .filter(|_| matches!(codec_name, "h264" | "hevc"))
            .ok_or_else(|| MediaError::Device {
                op: "choosing the NVDEC codec",
                reason: format!("{codec_name} is decoded on the CPU"),
            })?;
        if input.plan.rotation != 0 {
            return Err(MediaError::Device {
                op: "NVDEC decode",
                reason: "rotated sources are turned upright on the CPU".into(),
            });
        }
        let device = Device::get(gpu)?;
        device.kernels()?; // fail before decoding anything if the kernels cannot load
        let stream = device.stream()?;
        let rungs: Vec<(u32, u32)> = input
            .plan
            .rungs
            .iter()
            .map(|r| (r.width, r.height))
            .collect();
        if rungs.len() > kernels::MAX_RUNGS {
            return Err(MediaError::Device {
                op: "planning the GPU scale",
                reason: format!(
                    "{} rungs; the kernel takes {}",
                    rungs.len(),
                    kernels::MAX_RUNGS
                ),
            });
        }
        let pools = rungs
            .iter()
            .map(|&(w, h)| Pool::new(Arc::clone(&device.ctx), w, h))
            .collect();
        let mut state = Box::new(State {
            cuvid,
            device,
            stream,
            codec,
            decoder: std::ptr::null_mut(),
            format: None,
            deinterlace: input.plan.deinterlace,
            pools,
            decoded: VecDeque::new(),
            error: None,
        });
        // SAFETY: all-zero is the documented initial parameter block.
        let mut p: CUVIDPARSERPARAMS = unsafe { std::mem::zeroed() };
        p.CodecType = codec;
        p.ulMaxNumDecodeSurfaces = 1; // raised by the sequence callback
        p.ulMaxDisplayDelay = 2;
        p.pUserData = (&mut *state as *mut State).cast();
        p.pfnSequenceCallback = Some(on_sequence);
        p.pfnDecodePicture = Some(on_decode);
        p.pfnDisplayPicture = Some(on_display);
        let mut parser = std::ptr::null_mut();
        state
            .device
            .ctx
            .bind_to_thread()
            .map_err(device::cuda_err("binding the CUDA context"))?;
        // SAFETY: valid parameter block; `state` outlives the parser (dropped after it).
        let r = unsafe { (cuvid.create_video_parser)(&mut parser, &mut p) };
        if r != 0 {
            return Err(failed("creating the NVDEC parser", r));
        }
        let fps = input.plan.frame_rate;
        Ok(Self {
            state,
            parser,
            annexb: AnnexB::new(extradata(&input.parameters), codec_name == "hevc")?,
            cfr: Cfr::new(input.time_base, Rational::new(fps.0, fps.1)),
            ready: VecDeque::new(),
        })
    }

    fn parse(&mut self, payload: &[u8], pts: Option<i64>, end: bool) -> Result<()> {
        // SAFETY: all-zero is a valid empty packet.
        let mut pkt: CUVIDSOURCEDATAPACKET = unsafe { std::mem::zeroed() };
        pkt.payload = payload.as_ptr();
        pkt.payload_size = payload.len() as _;
        if let Some(t) = pts {
            pkt.flags |= CUvideopacketflags::CUVID_PKT_TIMESTAMP as std::ffi::c_ulong;
            pkt.timestamp = t;
        }
        if end {
            pkt.flags |= CUvideopacketflags::CUVID_PKT_ENDOFSTREAM as std::ffi::c_ulong;
        }
        self.state
            .device
            .ctx
            .bind_to_thread()
            .map_err(device::cuda_err("binding the CUDA context"))?;
        // SAFETY: the payload outlives the call; callbacks run inside it.
        let r = unsafe { (self.state.cuvid.parse_video_data)(self.parser, &mut pkt) };
        if let Some(e) = self.state.error.take() {
            return Err(e);
        }
        if r != 0 {
            return Err(failed("parsing the video bitstream", r));
        }
        while let Some((frame, ts)) = self.state.decoded.pop_front() {
            self.cfr.push(frame, ts, &mut self.ready)?;
        }
        Ok(())
    }
}

impl VideoDecoder for NvdecDecoder {
    fn send_packet(&mut self, packet: &ff::Packet) -> Result<()> {
        let Some(data) = packet.data() else {
            return Ok(());
        };
        let data = self.annexb.convert(data, packet.is_key())?;
        self.parse(&data, packet.pts(), false)
    }

    fn send_eof(&mut self) -> Result<()> {
        self.parse(&[], None, true)?;
        self.cfr.finish(&mut self.ready);
        Ok(())
    }

    fn receive_frame(&mut self) -> Result<Option<ff::frame::Video>> {
        Ok(self.ready.pop_front())
    }
}

impl Drop for NvdecDecoder {
    fn drop(&mut self) {
        let _ = self.state.device.ctx.bind_to_thread();
        // SAFETY: handles created by this decoder, destroyed once, parser first
        // (its callbacks reference `state`).
        unsafe {
            (self.state.cuvid.destroy_video_parser)(self.parser);
            if !self.state.decoder.is_null() {
                (self.state.cuvid.destroy_decoder)(self.state.decoder);
            }
        }
    }
}

/// Recovers the decoder state from the parser's user data.
///
/// # Safety
/// `user` is the `State` registered at parser creation, alive and not
/// otherwise borrowed while the parser runs a callback.
unsafe fn state<'a>(user: *mut c_void) -> &'a mut State {
    // SAFETY: per the contract.
    unsafe { &mut *user.cast::<State>() }
}

/// New sequence: (re)create the decoder. Returns the surface count the
/// parser should keep, or 0 to stop.
unsafe extern "C" fn on_sequence(user: *mut c_void, fmt: *mut CUVIDEOFORMAT) -> c_int {
    // SAFETY: called by the parser with our user data and a valid format.
    let (s, f) = unsafe { (state(user), &*fmt) };
    match s.create_decoder(f) {
        Ok(n) => n,
        Err(e) => {
            s.error.get_or_insert(e);
            0
        }
    }
}

unsafe extern "C" fn on_decode(user: *mut c_void, pic: *mut CUVIDPICPARAMS) -> c_int {
    // SAFETY: as above.
    let s = unsafe { state(user) };
    if s.decoder.is_null() {
        s.error
            .get_or_insert(failed("decoding before a sequence header", -1));
        return 0;
    }
    // SAFETY: a picture from the parser for our decoder.
    let r = unsafe { (s.cuvid.decode_picture)(s.decoder, pic) };
    if r != 0 {
        s.error.get_or_insert(failed("decoding a picture", r));
        return 0;
    }
    1
}

unsafe extern "C" fn on_display(user: *mut c_void, info: *mut CUVIDPARSERDISPINFO) -> c_int {
    // SAFETY: as above; `info` is null at the end of the stream.
    let s = unsafe { state(user) };
    if info.is_null() {
        return 1;
    }
    // SAFETY: non-null display info from the parser.
    let info = unsafe { &*info };
    match s.scale_surface(info) {
        Ok(frame) => {
            s.decoded.push_back((frame, info.timestamp));
            1
        }
        Err(e) => {
            s.error.get_or_insert(e);
            0
        }
    }
}

impl State {
    fn create_decoder(&mut self, f: &CUVIDEOFORMAT) -> Result<c_int> {
        let depth = f.bit_depth_luma_minus8 + 8;
        if f.chroma_format != cudaVideoChromaFormat::cudaVideoChromaFormat_420 {
            return Err(MediaError::Device {
                op: "NVDEC decode",
                reason: "only 4:2:0 sources decode on the GPU".into(),
            });
        }
        let (tw, th) = (
            (f.display_area.right - f.display_area.left) as u32,
            (f.display_area.bottom - f.display_area.top) as u32,
        );
        let key = (f.coded_width, f.coded_height, depth, tw, th);
        let surfaces = c_int::from(f.min_num_decode_surfaces).max(1) + 4;
        if self.format == Some(key) {
            return Ok(surfaces);
        }
        if !self.decoder.is_null() {
            // SAFETY: our decoder, no frame of it mapped (frames are copied out).
            unsafe { (self.cuvid.destroy_decoder)(self.decoder) };
            self.decoder = std::ptr::null_mut();
        }
        // SAFETY: all-zero is the documented initial create info.
        let mut ci: CUVIDDECODECREATEINFO = unsafe { std::mem::zeroed() };
        ci.CodecType = self.codec;
        ci.ChromaFormat = f.chroma_format;
        ci.ulWidth = f.coded_width.into();
        ci.ulHeight = f.coded_height.into();
        ci.ulMaxWidth = f.coded_width.into();
        ci.ulMaxHeight = f.coded_height.into();
        ci.ulNumDecodeSurfaces = surfaces as _;
        ci.ulNumOutputSurfaces = 2;
        ci.ulCreationFlags = cudaVideoCreateFlags::cudaVideoCreate_PreferCUVID as _;
        ci.bitDepthMinus8 = f.bit_depth_luma_minus8.into();
        ci.OutputFormat = if depth > 8 {
            cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_P016
        } else {
            cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_NV12
        };
        ci.DeinterlaceMode = if f.progressive_sequence == 0 && self.deinterlace {
            cudaVideoDeinterlaceMode::cudaVideoDeinterlaceMode_Adaptive
        } else {
            cudaVideoDeinterlaceMode::cudaVideoDeinterlaceMode_Weave
        };
        ci.display_area.left = f.display_area.left as i16;
        ci.display_area.top = f.display_area.top as i16;
        ci.display_area.right = f.display_area.right as i16;
        ci.display_area.bottom = f.display_area.bottom as i16;
        ci.ulTargetWidth = tw.into();
        ci.ulTargetHeight = th.into();
        // SAFETY: valid create info; the context is bound by the caller of parse.
        let r = unsafe { (self.cuvid.create_decoder)(&mut self.decoder, &mut ci) };
        if r != 0 {
            self.decoder = std::ptr::null_mut();
            return Err(failed("creating the NVDEC decoder", r));
        }
        self.format = Some(key);
        Ok(surfaces)
    }

    /// Maps the decoded surface, scales it into every rung in one launch,
    /// waits, unmaps.
    fn scale_surface(&mut self, info: &CUVIDPARSERDISPINFO) -> Result<ff::frame::Video> {
        let (_, _, depth, tw, th) = self
            .format
            .ok_or_else(|| failed("display before decode", -1))?;
        // SAFETY: all-zero is a valid CUVIDPROCPARAMS to fill in.
        let mut vpp: CUVIDPROCPARAMS = unsafe { std::mem::zeroed() };
        vpp.progressive_frame = info.progressive_frame;
        vpp.top_field_first = info.top_field_first;
        vpp.output_stream = self.stream.cu_stream().cast();
        let (mut ptr, mut pitch) = (0u64, 0u32);
        // SAFETY: a picture index the parser gave us for our decoder.
        let r = unsafe {
            (self.cuvid.map_video_frame)(
                self.decoder,
                info.picture_index,
                &mut ptr,
                &mut pitch,
                &mut vpp,
            )
        };
        if r != 0 {
            return Err(failed("mapping a decoded frame", r));
        }
        let result = (|| {
            let rungs = self
                .pools
                .iter()
                .map(|p| p.take())
                .collect::<Result<Vec<_>>>()?;
            let dsts: Vec<_> = rungs.iter().map(|b| b.nv12()).collect();
            // The chroma plane follows the target height's luma rows.
            let uv = ptr + u64::from(pitch) * u64::from(th.next_multiple_of(2));
            let k = self.device.kernels()?;
            // SAFETY: the mapped surface holds th luma and th/2 chroma rows at
            // `pitch` until unmapped below, after the stream is drained; the
            // rung buffers are fresh from their pools.
            unsafe {
                if depth > 8 {
                    let src = kernels::gpu::DeviceP010 {
                        y: ptr,
                        uv,
                        pitch: pitch as usize,
                        width: tw,
                        height: th,
                    };
                    k.resize_p010_1n(&self.stream, src, &dsts)
                } else {
                    let src = kernels::gpu::DeviceNv12 {
                        y: ptr,
                        uv,
                        pitch: pitch as usize,
                        width: tw,
                        height: th,
                    };
                    k.resize_nv12_1n(&self.stream, src, &dsts)
                }
            }
            .map_err(device::kernel_err("scaling into the ladder"))?;
            self.stream
                .synchronize()
                .map_err(device::cuda_err("waiting for the ladder scale"))?;
            device::wrap(DeviceFrame {
                rungs,
                gpu: self.device.ctx.ordinal(),
            })
        })();
        // SAFETY: unmapping what was mapped above, once.
        let r = unsafe { (self.cuvid.unmap_video_frame)(self.decoder, ptr) };
        let frame = result?;
        if r != 0 {
            return Err(failed("unmapping a decoded frame", r));
        }
        Ok(frame)
    }
}

/// Turns display-order frames with timestamps into a constant-rate sequence
/// as FFmpeg's `fps` filter does (rounding to the nearest output slot): a
/// frame that lands on an occupied slot is dropped, a gap repeats the
/// previous frame.
struct Cfr {
    time_base: Rational,
    rate: Rational,
    first: Option<i64>,
    next: i64,
    pending: Option<ff::frame::Video>,
}

impl Cfr {
    fn new(time_base: Rational, rate: Rational) -> Self {
        Self {
            time_base,
            rate,
            first: None,
            next: 0,
            pending: None,
        }
    }

    fn slot(&self, ts: i64) -> i64 {
        let first = self.first.unwrap_or(ts);
        // (ts - first) * time_base * rate, rounded to nearest.
        let num = i128::from(ts - first)
            * i128::from(self.time_base.numerator())
            * i128::from(self.rate.numerator());
        let den = i128::from(self.time_base.denominator()) * i128::from(self.rate.denominator());
        ((num * 2 + den) / (2 * den)) as i64
    }

    fn push(
        &mut self,
        frame: ff::frame::Video,
        ts: i64,
        out: &mut VecDeque<ff::frame::Video>,
    ) -> Result<()> {
        self.first.get_or_insert(ts);
        let slot = self.slot(ts);
        if let Some(prev) = self.pending.take() {
            if slot <= self.next {
                // Same slot as the pending frame: the newer one wins.
                self.pending = Some(frame);
                drop(prev);
                return Ok(());
            }
            while self.next + 1 < slot {
                out.push_back(device::share(&prev)?);
                self.next += 1;
            }
            out.push_back(prev);
            self.next += 1;
        } else {
            self.next = slot.max(0);
        }
        self.pending = Some(frame);
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<ff::frame::Video>) {
        if let Some(f) = self.pending.take() {
            out.push_back(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfr_slots_round_to_the_nearest_output_frame() {
        // 90 kHz timestamps at 25 fps output.
        let c = Cfr {
            first: Some(1000),
            ..Cfr::new(Rational::new(1, 90_000), Rational::new(25, 1))
        };
        assert_eq!(c.slot(1000), 0);
        assert_eq!(c.slot(1000 + 3600), 1);
        assert_eq!(c.slot(1000 + 1799), 0);
        assert_eq!(c.slot(1000 + 1800), 1);
        assert_eq!(c.slot(1000 + 36_000), 10);
    }
}
