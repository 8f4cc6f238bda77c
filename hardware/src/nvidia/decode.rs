//! NVDEC decode with the ladder scale fused in, fed Annex B: the cuvid
//! parser splits the bitstream, the hardware decoder decodes, and each
//! displayed surface is scaled in one kernel launch into every rung (frames
//! never leave the GPU). No FFmpeg types: `media` feeds it demuxed packets
//! (converted to Annex B) and wraps the rungs in `AVFrame`s; the GPU
//! bring-up kit feeds it elementary-stream files.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

use cudarc::driver::CudaStream;
use nvidia_video_codec_sdk::sys::cuviddec::{
    cudaVideoChromaFormat, cudaVideoCreateFlags, cudaVideoDeinterlaceMode, cudaVideoSurfaceFormat,
    CUvideodecoder, CUVIDDECODECREATEINFO, CUVIDPICPARAMS, CUVIDPROCPARAMS,
};
use nvidia_video_codec_sdk::sys::nvcuvid::{
    CUvideopacketflags, CUvideoparser, CUVIDEOFORMAT, CUVIDPARSERDISPINFO, CUVIDPARSERPARAMS,
    CUVIDSOURCEDATAPACKET,
};

use super::cuvid::{self, Cuvid};
use super::memory::{cuda_err, kernel_err, Device, DeviceFrame, Pool};
use crate::HardwareError;

type Result<T> = std::result::Result<T, HardwareError>;

fn failed(op: &'static str, code: c_int) -> HardwareError {
    HardwareError::Device {
        op,
        reason: format!("CUresult {code}"),
    }
}

/// The coded stream as the parser last announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFormat {
    pub coded_width: u32,
    pub coded_height: u32,
    pub bit_depth: u8,
    /// The display area (what the rungs are scaled from).
    pub width: u32,
    pub height: u32,
}

/// A displayed frame: every rung (in the order given to
/// [`NvdecSession::new`]) and the timestamp passed with its packet (0 when
/// none was).
pub struct Decoded {
    pub frame: DeviceFrame,
    pub timestamp: i64,
}

/// Decoder state the parser's callbacks reach through `pUserData`; boxed so
/// its address is stable.
struct State {
    cuvid: &'static Cuvid,
    device: Arc<Device>,
    stream: Arc<CudaStream>,
    codec: nvidia_video_codec_sdk::sys::cuviddec::cudaVideoCodec,
    decoder: CUvideodecoder,
    format: Option<SourceFormat>,
    deinterlace: bool,
    pools: Vec<Arc<Pool>>,
    /// Decoded frames in display order.
    decoded: VecDeque<Decoded>,
    error: Option<HardwareError>,
}

/// One NVDEC decoder and its parser on one GPU.
pub struct NvdecSession {
    state: Box<State>,
    parser: CUvideoparser,
}

// SAFETY: the decoder and parser handles are used only by the thread that
// owns this value (calls are serialised by &mut self); CUDA handles are not
// tied to a thread once the context is bound.
unsafe impl Send for NvdecSession {}

impl NvdecSession {
    /// A decoder for `codec` (`h264` or `hevc`) on GPU `gpu` that scales
    /// every displayed frame into each of `rungs` (width, height) at once.
    pub fn new(gpu: usize, codec: &str, rungs: &[(u32, u32)], deinterlace: bool) -> Result<Self> {
        let cuvid = cuvid::get().map_err(|e| HardwareError::Device {
            op: "loading NVDEC",
            reason: e.clone(),
        })?;
        let codec_id = cuvid::codec_id(codec)
            .filter(|_| matches!(codec, "h264" | "hevc"))
            .ok_or_else(|| HardwareError::Device {
                op: "choosing the NVDEC codec",
                reason: format!("{codec} is decoded on the CPU"),
            })?;
        if rungs.is_empty() || rungs.len() > kernels::MAX_RUNGS {
            return Err(HardwareError::Device {
                op: "planning the GPU scale",
                reason: format!(
                    "{} rungs; the kernel takes 1 to {}",
                    rungs.len(),
                    kernels::MAX_RUNGS
                ),
            });
        }
        let device = Device::get(gpu)?;
        device.kernels()?; // fail before decoding anything if the kernels cannot load
        let stream = device.stream()?;
        let pools = rungs
            .iter()
            .map(|&(w, h)| Pool::new(Arc::clone(&device.ctx), w, h))
            .collect();
        let mut state = Box::new(State {
            cuvid,
            device,
            stream,
            codec: codec_id,
            decoder: std::ptr::null_mut(),
            format: None,
            deinterlace,
            pools,
            decoded: VecDeque::new(),
            error: None,
        });
        // SAFETY: all-zero is the documented initial parameter block.
        let mut p: CUVIDPARSERPARAMS = unsafe { std::mem::zeroed() };
        p.CodecType = codec_id;
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
            .map_err(cuda_err("binding the CUDA context"))?;
        // SAFETY: valid parameter block; `state` outlives the parser (dropped after it).
        let r = unsafe { (cuvid.create_video_parser)(&mut parser, &mut p) };
        if r != 0 {
            return Err(failed("creating the NVDEC parser", r));
        }
        Ok(Self { state, parser })
    }

    /// Feeds Annex B bytes (any split: whole access units or arbitrary
    /// chunks); `pts` rides with the frame that starts in them.
    pub fn parse(&mut self, payload: &[u8], pts: Option<i64>) -> Result<()> {
        self.feed(payload, pts, false)
    }

    /// Ends the stream: every frame still held is decoded and displayed.
    pub fn finish(&mut self) -> Result<()> {
        self.feed(&[], None, true)
    }

    /// The next displayed frame, in display order.
    pub fn pop(&mut self) -> Option<Decoded> {
        self.state.decoded.pop_front()
    }

    /// The stream's geometry, once the first sequence header is parsed.
    pub fn format(&self) -> Option<SourceFormat> {
        self.state.format
    }

    /// The GPU's context and kernels this session decodes with.
    pub fn device(&self) -> &Arc<Device> {
        &self.state.device
    }

    fn feed(&mut self, payload: &[u8], pts: Option<i64>, end: bool) -> Result<()> {
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
            .map_err(cuda_err("binding the CUDA context"))?;
        // SAFETY: the payload outlives the call; callbacks run inside it.
        let r = unsafe { (self.state.cuvid.parse_video_data)(self.parser, &mut pkt) };
        if let Some(e) = self.state.error.take() {
            return Err(e);
        }
        if r != 0 {
            return Err(failed("parsing the video bitstream", r));
        }
        Ok(())
    }
}

impl Drop for NvdecSession {
    fn drop(&mut self) {
        let _ = self.state.device.ctx.bind_to_thread();
        // SAFETY: handles created by this session, destroyed once, parser
        // first (its callbacks reference `state`).
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
            s.decoded.push_back(Decoded {
                frame,
                timestamp: info.timestamp,
            });
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
            return Err(HardwareError::Device {
                op: "NVDEC decode",
                reason: "only 4:2:0 sources decode on the GPU".into(),
            });
        }
        let (tw, th) = (
            (f.display_area.right - f.display_area.left) as u32,
            (f.display_area.bottom - f.display_area.top) as u32,
        );
        let key = SourceFormat {
            coded_width: f.coded_width,
            coded_height: f.coded_height,
            bit_depth: depth,
            width: tw,
            height: th,
        };
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
    fn scale_surface(&mut self, info: &CUVIDPARSERDISPINFO) -> Result<DeviceFrame> {
        let SourceFormat {
            bit_depth: depth,
            width: tw,
            height: th,
            ..
        } = self
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
            .map_err(kernel_err("scaling into the ladder"))?;
            self.stream
                .synchronize()
                .map_err(cuda_err("waiting for the ladder scale"))?;
            Ok(DeviceFrame {
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
