//! NVENC encode of one rung: one session per rung (rungs encode in parallel
//! on their own threads), synchronous mode, IPPP with an IDR exactly on the
//! plan's GOP marks (no B-frames: the reorder delay is 0 on every rung, no
//! scene-cut IDRs: no lookahead), VBR at the rung's bit rate and VBV.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use ff::format::Pixel;
use ff::Rational;
use ffmpeg_next as ff;
use hardware::nvidia::nvenc::{self, Nvenc};
use nvidia_video_codec_sdk::sys::nvEncodeAPI::*;

use super::device::{self, Device, DeviceBuf, Mem};
use crate::backend::{EncoderSettings, FrameDescription, VideoEncoder};
use crate::error::{MediaError, Result};
use crate::plan::{LadderPlan, Rung};

fn err(op: &'static str) -> impl Fn(String) -> MediaError {
    move |reason| MediaError::Device { op, reason }
}

pub struct NvencEncoder {
    nvenc: &'static Nvenc,
    device: Arc<Device>,
    encoder: *mut c_void,
    bitstream: NV_ENC_OUTPUT_PTR,
    /// Registered input surfaces by device pointer (pools recycle a few).
    registered: HashMap<u64, NV_ENC_REGISTERED_PTR>,
    /// Where host frames are uploaded when scaling ran on the CPU.
    upload: Option<DeviceBuf>,
    width: u32,
    height: u32,
    time_base: Rational,
    extradata: Vec<u8>,
    colour: (
        ff::color::Space,
        ff::color::Primaries,
        ff::color::TransferCharacteristic,
    ),
    out: std::collections::VecDeque<ff::Packet>,
}

// SAFETY: an NVENC session may be used from any thread, one call at a time
// (guaranteed by &mut self).
unsafe impl Send for NvencEncoder {}

/// NVENC's preset (P1 fastest … P7 best) for the operator's x264-style
/// preset name. Public so the benchmark hands `h264_nvenc` the same one.
pub fn preset_level(settings: &EncoderSettings) -> u8 {
    match settings.preset.as_str() {
        "ultrafast" | "superfast" => 1,
        "veryfast" => 2,
        "faster" | "fast" => 3,
        "medium" => 4,
        "slow" => 5,
        "slower" => 6,
        _ => 7,
    }
}

fn preset(settings: &EncoderSettings) -> GUID {
    [
        NV_ENC_PRESET_P1_GUID,
        NV_ENC_PRESET_P2_GUID,
        NV_ENC_PRESET_P3_GUID,
        NV_ENC_PRESET_P4_GUID,
        NV_ENC_PRESET_P5_GUID,
        NV_ENC_PRESET_P6_GUID,
        NV_ENC_PRESET_P7_GUID,
    ][usize::from(preset_level(settings)) - 1]
}

impl NvencEncoder {
    pub fn new(
        gpu: usize,
        rung: &Rung,
        plan: &LadderPlan,
        first: &FrameDescription,
        settings: &EncoderSettings,
    ) -> Result<Self> {
        let nvenc = nvenc::get().map_err(|e| MediaError::Device {
            op: "loading NVENC",
            reason: e.clone(),
        })?;
        let device = Device::get(gpu)?;
        device
            .ctx
            .bind_to_thread()
            .map_err(device::cuda_err("binding the CUDA context"))?;
        // SAFETY: a live context of this device.
        let encoder = unsafe { nvenc.open_session(device.ctx.cu_ctx().cast()) }
            .map_err(err("opening an NVENC session"))?;
        let mut me = Self {
            nvenc,
            device,
            encoder,
            bitstream: std::ptr::null_mut(),
            registered: HashMap::new(),
            upload: None,
            width: rung.width,
            height: rung.height,
            time_base: Rational::new(plan.frame_rate.1, plan.frame_rate.0),
            extradata: Vec::new(),
            colour: (first.color_space, first.color_primaries, first.color_trc),
            out: Default::default(),
        };
        me.initialise(rung, plan, first, settings)?;
        Ok(me)
    }

    fn api<T>(&self, f: Option<T>) -> T {
        f.expect("checked when NVENC was loaded")
    }

    fn initialise(
        &mut self,
        rung: &Rung,
        plan: &LadderPlan,
        first: &FrameDescription,
        settings: &EncoderSettings,
    ) -> Result<()> {
        let preset_guid = preset(settings);
        let tuning = NV_ENC_TUNING_INFO::NV_ENC_TUNING_INFO_HIGH_QUALITY;
        // SAFETY: documented zero-initialised parameter blocks; pointers stay
        // valid for each call; the session is ours.
        unsafe {
            let mut pc = nvenc::blocks::preset_config();
            pc.version = NV_ENC_PRESET_CONFIG_VER;
            pc.presetCfg.version = NV_ENC_CONFIG_VER;
            let get = self.api(self.nvenc.api.nvEncGetEncodePresetConfigEx);
            nvenc::check(
                get(
                    self.encoder,
                    NV_ENC_CODEC_H264_GUID,
                    preset_guid,
                    tuning,
                    &mut pc,
                ),
                "reading the NVENC preset",
            )
            .map_err(err("configuring NVENC"))?;
            let mut cfg = pc.presetCfg;
            cfg.version = NV_ENC_CONFIG_VER;
            cfg.profileGUID = NV_ENC_H264_PROFILE_HIGH_GUID;
            cfg.gopLength = NVENC_INFINITE_GOPLENGTH;
            cfg.frameIntervalP = 1;
            cfg.rcParams.rateControlMode = NV_ENC_PARAMS_RC_MODE::NV_ENC_PARAMS_RC_VBR;
            cfg.rcParams.averageBitRate = rung.bitrate as u32;
            cfg.rcParams.maxBitRate = rung.max_bitrate as u32;
            cfg.rcParams.vbvBufferSize = rung.buffer_size as u32;
            cfg.rcParams.vbvInitialDelay = rung.buffer_size as u32;
            cfg.rcParams.lookaheadDepth = 0;
            let h = &mut cfg.encodeCodecConfig.h264Config;
            h.idrPeriod = NVENC_INFINITE_GOPLENGTH;
            h.maxNumRefFrames = 0; // the preset's choice
            let vui = &mut h.h264VUIParameters;
            if let Some((p, t, m)) = vui_colour(first) {
                vui.videoSignalTypePresentFlag = 1;
                vui.videoFormat = NV_ENC_VUI_VIDEO_FORMAT::NV_ENC_VUI_VIDEO_FORMAT_UNSPECIFIED;
                vui.videoFullRangeFlag = 0;
                vui.colourDescriptionPresentFlag = 1;
                vui.colourPrimaries = p;
                vui.transferCharacteristics = t;
                vui.colourMatrix = m;
            }
            let mut init: NV_ENC_INITIALIZE_PARAMS = std::mem::zeroed();
            init.version = NV_ENC_INITIALIZE_PARAMS_VER;
            init.encodeGUID = NV_ENC_CODEC_H264_GUID;
            init.presetGUID = preset_guid;
            init.tuningInfo = tuning;
            init.encodeWidth = rung.width;
            init.encodeHeight = rung.height;
            init.darWidth = rung.width;
            init.darHeight = rung.height;
            init.maxEncodeWidth = rung.width;
            init.maxEncodeHeight = rung.height;
            init.frameRateNum = plan.frame_rate.0 as u32;
            init.frameRateDen = plan.frame_rate.1 as u32;
            init.enablePTD = 1;
            init.enableEncodeAsync = 0;
            init.encodeConfig = &mut cfg;
            let initialise = self.api(self.nvenc.api.nvEncInitializeEncoder);
            nvenc::check(
                initialise(self.encoder, &mut init),
                "nvEncInitializeEncoder",
            )
            .map_err(err("configuring NVENC"))?;

            let mut bs: NV_ENC_CREATE_BITSTREAM_BUFFER = std::mem::zeroed();
            bs.version = NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
            let create = self.api(self.nvenc.api.nvEncCreateBitstreamBuffer);
            nvenc::check(create(self.encoder, &mut bs), "nvEncCreateBitstreamBuffer")
                .map_err(err("configuring NVENC"))?;
            self.bitstream = bs.bitstreamBuffer;

            let mut sps = vec![0u8; 1024];
            let mut size = 0u32;
            let mut sp: NV_ENC_SEQUENCE_PARAM_PAYLOAD = std::mem::zeroed();
            sp.version = NV_ENC_SEQUENCE_PARAM_PAYLOAD_VER;
            sp.inBufferSize = sps.len() as u32;
            sp.spsppsBuffer = sps.as_mut_ptr().cast();
            sp.outSPSPPSPayloadSize = &mut size;
            let get_sps = self.api(self.nvenc.api.nvEncGetSequenceParams);
            nvenc::check(get_sps(self.encoder, &mut sp), "nvEncGetSequenceParams")
                .map_err(err("configuring NVENC"))?;
            sps.truncate(size as usize);
            self.extradata = sps;
        }
        Ok(())
    }

    /// Registers a frame-sized device buffer of this rung (once per buffer:
    /// pools recycle a few).
    fn register(
        &mut self,
        ptr: u64,
        pitch: usize,
        format: NV_ENC_BUFFER_FORMAT,
    ) -> Result<NV_ENC_REGISTERED_PTR> {
        if let Some(r) = self.registered.get(&ptr) {
            return Ok(*r);
        }
        // SAFETY: zero-initialised block; the device buffer outlives the
        // registration (pool buffers are freed only after the pool, which
        // frames keep alive, and we unregister on drop before the Device goes).
        unsafe {
            let mut r: NV_ENC_REGISTER_RESOURCE = std::mem::zeroed();
            r.version = NV_ENC_REGISTER_RESOURCE_VER;
            r.resourceType = NV_ENC_INPUT_RESOURCE_TYPE::NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR;
            r.width = self.width;
            r.height = self.height;
            r.pitch = pitch as u32;
            r.resourceToRegister = ptr as *mut c_void;
            r.bufferFormat = format;
            r.bufferUsage = NV_ENC_BUFFER_USAGE::NV_ENC_INPUT_IMAGE;
            let f = self.api(self.nvenc.api.nvEncRegisterResource);
            nvenc::check(f(self.encoder, &mut r), "nvEncRegisterResource")
                .map_err(err("registering a frame with NVENC"))?;
            self.registered.insert(ptr, r.registeredResource);
            Ok(r.registeredResource)
        }
    }

    /// Uploads a host YUV420P frame (CPU-scaled rung) as IYUV.
    fn upload(&mut self, frame: &ff::frame::Video) -> Result<u64> {
        if frame.format() != Pixel::YUV420P
            || frame.width() != self.width
            || frame.height() != self.height
        {
            return Err(MediaError::Device {
                op: "uploading a frame to NVENC",
                reason: format!(
                    "expected {}x{} yuv420p, got {}x{} {:?}",
                    self.width,
                    self.height,
                    frame.width(),
                    frame.height(),
                    frame.format()
                ),
            });
        }
        let (w, h) = (self.width as usize, self.height as usize);
        if self.upload.is_none() {
            self.device
                .ctx
                .bind_to_thread()
                .map_err(device::cuda_err("binding the CUDA context"))?;
            let pitch = w.next_multiple_of(256);
            // IYUV: Y rows, then U rows, then V rows, U/V at half pitch.
            let bytes = pitch * h + 2 * (pitch / 2) * h.div_ceil(2);
            // SAFETY: plain allocation, freed on drop.
            let ptr = unsafe { cudarc::driver::result::malloc_sync(bytes) }
                .map_err(device::cuda_err("allocating the NVENC upload buffer"))?;
            self.upload = Some(DeviceBuf {
                ptr,
                pitch,
                width: self.width,
                height: self.height,
            });
        }
        let up = self.upload.as_ref().expect("set above");
        let stream = self.device.ctx.default_stream();
        let (p, cp) = (up.pitch, up.pitch / 2);
        let planes = [
            (0usize, up.ptr, p, w, h),
            (1, up.ptr + (p * h) as u64, cp, w.div_ceil(2), h.div_ceil(2)),
            (
                2,
                up.ptr + (p * h + cp * h.div_ceil(2)) as u64,
                cp,
                w.div_ceil(2),
                h.div_ceil(2),
            ),
        ];
        for (i, dst, dpitch, width, rows) in planes {
            // SAFETY: the host plane holds `rows` rows of `stride(i)` bytes;
            // the device plane was sized for them above.
            unsafe {
                device::copy_2d(
                    &stream,
                    Mem::Host(frame.data(i).as_ptr().cast_mut()),
                    frame.stride(i),
                    Mem::Device(dst),
                    dpitch,
                    width,
                    rows,
                )?;
            }
        }
        stream
            .synchronize()
            .map_err(device::cuda_err("uploading a frame"))?;
        Ok(up.ptr)
    }

    fn encode(&mut self, frame: &ff::frame::Video) -> Result<()> {
        let (buf_format, registered, pitch) = match device::device_frame(frame) {
            Some(df) => {
                let rung = df
                    .rungs
                    .iter()
                    .find(|b| b.width == self.width && b.height == self.height)
                    .ok_or_else(|| MediaError::Device {
                        op: "encoding a device frame",
                        reason: format!("the frame carries no {}x{} rung", self.width, self.height),
                    })?;
                let (ptr, pitch) = (rung.ptr, rung.pitch);
                let fmt = NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12;
                (fmt, self.register(ptr, pitch, fmt)?, pitch)
            }
            None => {
                let ptr = self.upload(frame)?;
                let pitch = self.upload.as_ref().expect("uploaded").pitch;
                let fmt = NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_IYUV;
                (fmt, self.register(ptr, pitch, fmt)?, pitch)
            }
        };
        let pts = frame.pts().unwrap_or(0);
        let idr = frame.kind() == ff::picture::Type::I;
        // SAFETY: zero-initialised blocks; the registered surface and the
        // bitstream buffer belong to this session; synchronous mode returns
        // with the output ready to lock.
        unsafe {
            let mut map: NV_ENC_MAP_INPUT_RESOURCE = std::mem::zeroed();
            map.version = NV_ENC_MAP_INPUT_RESOURCE_VER;
            map.registeredResource = registered;
            let f = self.api(self.nvenc.api.nvEncMapInputResource);
            nvenc::check(f(self.encoder, &mut map), "nvEncMapInputResource")
                .map_err(err("encoding H.264 on NVENC"))?;
            let mut pic = nvenc::blocks::pic_params();
            pic.version = NV_ENC_PIC_PARAMS_VER;
            pic.inputWidth = self.width;
            pic.inputHeight = self.height;
            pic.inputPitch = pitch as u32;
            pic.inputBuffer = map.mappedResource;
            pic.bufferFmt = buf_format;
            pic.outputBitstream = self.bitstream;
            pic.pictureStruct = NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME;
            pic.inputTimeStamp = pts as u64;
            pic.inputDuration = 1;
            if idr {
                pic.encodePicFlags = NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_FORCEIDR as u32
                    | NV_ENC_PIC_FLAGS::NV_ENC_PIC_FLAG_OUTPUT_SPSPPS as u32;
            }
            let f = self.api(self.nvenc.api.nvEncEncodePicture);
            let status = f(self.encoder, &mut pic);
            let unmap = self.api(self.nvenc.api.nvEncUnmapInputResource);
            let result =
                nvenc::check(status, "nvEncEncodePicture").and_then(|()| self.lock_output());
            let _ = unmap(self.encoder, map.mappedResource);
            result.map_err(err("encoding H.264 on NVENC"))
        }
    }

    fn lock_output(&mut self) -> std::result::Result<(), String> {
        // SAFETY: zero-initialised block on our bitstream buffer; the locked
        // bytes are copied before unlocking.
        unsafe {
            let mut lock = nvenc::blocks::lock_bitstream();
            lock.version = NV_ENC_LOCK_BITSTREAM_VER;
            lock.outputBitstream = self.bitstream;
            let f = self.api(self.nvenc.api.nvEncLockBitstream);
            nvenc::check(f(self.encoder, &mut lock), "nvEncLockBitstream")?;
            let bytes = std::slice::from_raw_parts(
                lock.bitstreamBufferPtr.cast::<u8>(),
                lock.bitstreamSizeInBytes as usize,
            );
            let mut p = ff::Packet::copy(bytes);
            let ts = lock.outputTimeStamp as i64;
            p.set_pts(Some(ts));
            p.set_dts(Some(ts)); // no B-frames: decode order is display order
            p.set_duration(1);
            if lock.pictureType == NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR {
                p.set_flags(ff::packet::Flags::KEY);
            }
            let unlock = self.api(self.nvenc.api.nvEncUnlockBitstream);
            nvenc::check(unlock(self.encoder, self.bitstream), "nvEncUnlockBitstream")?;
            self.out.push_back(p);
        }
        Ok(())
    }
}

/// The VUI colour description for the colours NVENC's enums name.
fn vui_colour(
    first: &FrameDescription,
) -> Option<(
    NV_ENC_VUI_COLOR_PRIMARIES,
    NV_ENC_VUI_TRANSFER_CHARACTERISTIC,
    NV_ENC_VUI_MATRIX_COEFFS,
)> {
    use ff::color::Space;
    if first.color_space == Space::BT709 {
        Some((
            NV_ENC_VUI_COLOR_PRIMARIES::NV_ENC_VUI_COLOR_PRIMARIES_BT709,
            NV_ENC_VUI_TRANSFER_CHARACTERISTIC::NV_ENC_VUI_TRANSFER_CHARACTERISTIC_BT709,
            NV_ENC_VUI_MATRIX_COEFFS::NV_ENC_VUI_MATRIX_COEFFS_BT709,
        ))
    } else if matches!(first.color_space, Space::BT470BG | Space::SMPTE170M) {
        Some((
            NV_ENC_VUI_COLOR_PRIMARIES::NV_ENC_VUI_COLOR_PRIMARIES_SMPTE170M,
            NV_ENC_VUI_TRANSFER_CHARACTERISTIC::NV_ENC_VUI_TRANSFER_CHARACTERISTIC_SMPTE170M,
            NV_ENC_VUI_MATRIX_COEFFS::NV_ENC_VUI_MATRIX_COEFFS_SMPTE170M,
        ))
    } else {
        None
    }
}

impl VideoEncoder for NvencEncoder {
    fn send_frame(&mut self, frame: Option<&ff::frame::Video>) -> Result<()> {
        match frame {
            Some(f) => self.encode(f),
            // Synchronous IPPP: every picture's output is already out.
            None => Ok(()),
        }
    }

    fn receive_packet(&mut self) -> Result<Option<ff::Packet>> {
        Ok(self.out.pop_front())
    }

    fn parameters(&self) -> ff::codec::Parameters {
        let mut params = ff::codec::Parameters::new();
        // SAFETY: field writes on an owned AVCodecParameters; extradata is
        // allocated with FFmpeg's allocator (padded) so FFmpeg may free it.
        unsafe {
            let p = params.as_mut_ptr();
            (*p).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*p).codec_id = ff::ffi::AVCodecID::AV_CODEC_ID_H264;
            (*p).width = self.width as i32;
            (*p).height = self.height as i32;
            (*p).format = ff::ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32;
            (*p).profile = 100; // High
            (*p).sample_aspect_ratio = ff::ffi::AVRational { num: 1, den: 1 };
            (*p).color_range = ff::ffi::AVColorRange::AVCOL_RANGE_MPEG;
            (*p).color_space = self.colour.0.into();
            (*p).color_primaries = self.colour.1.into();
            (*p).color_trc = self.colour.2.into();
            let n = self.extradata.len();
            let e = ff::ffi::av_mallocz(n + ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize)
                .cast::<u8>();
            if !e.is_null() {
                std::ptr::copy_nonoverlapping(self.extradata.as_ptr(), e, n);
                (*p).extradata = e;
                (*p).extradata_size = n as i32;
            }
        }
        params
    }

    fn time_base(&self) -> Rational {
        self.time_base
    }
}

impl Drop for NvencEncoder {
    fn drop(&mut self) {
        let _ = self.device.ctx.bind_to_thread();
        // SAFETY: resources of this session, each released once, session last.
        unsafe {
            if let Some(f) = self.nvenc.api.nvEncUnregisterResource {
                for r in self.registered.values() {
                    let _ = f(self.encoder, *r);
                }
            }
            if let (Some(f), false) = (
                self.nvenc.api.nvEncDestroyBitstreamBuffer,
                self.bitstream.is_null(),
            ) {
                let _ = f(self.encoder, self.bitstream);
            }
            if let Some(f) = self.nvenc.api.nvEncDestroyEncoder {
                let _ = f(self.encoder);
            }
            if let Some(up) = self.upload.take() {
                let _ = cudarc::driver::result::free_sync(up.ptr);
            }
        }
    }
}
