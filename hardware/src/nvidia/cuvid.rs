//! `libnvcuvid` (NVDEC): the entry points, resolved once with `dlopen`.

use std::ffi::{c_int, c_uint, c_ulonglong};
use std::sync::OnceLock;

use nvidia_video_codec_sdk::sys::cuviddec::{
    cudaVideoChromaFormat, cudaVideoCodec, CUvideodecoder, CUVIDDECODECAPS, CUVIDDECODECREATEINFO,
    CUVIDPICPARAMS, CUVIDPROCPARAMS,
};
use nvidia_video_codec_sdk::sys::nvcuvid::{
    CUvideoparser, CUVIDPARSERPARAMS, CUVIDSOURCEDATAPACKET,
};

use crate::{CodecCaps, DecodeCaps};

/// `CUresult` as the integer it is: a driver newer than these bindings may
/// return codes a Rust enum would not know.
pub type CuResult = c_int;

/// NVDEC's entry points. Signatures follow `cuviddec.h`/`nvcuvid.h`.
pub struct Cuvid {
    _lib: libloading::Library,
    pub get_decoder_caps: unsafe extern "C" fn(*mut CUVIDDECODECAPS) -> CuResult,
    pub create_decoder:
        unsafe extern "C" fn(*mut CUvideodecoder, *mut CUVIDDECODECREATEINFO) -> CuResult,
    pub destroy_decoder: unsafe extern "C" fn(CUvideodecoder) -> CuResult,
    pub decode_picture: unsafe extern "C" fn(CUvideodecoder, *mut CUVIDPICPARAMS) -> CuResult,
    pub map_video_frame: unsafe extern "C" fn(
        CUvideodecoder,
        c_int,
        *mut c_ulonglong,
        *mut c_uint,
        *mut CUVIDPROCPARAMS,
    ) -> CuResult,
    pub unmap_video_frame: unsafe extern "C" fn(CUvideodecoder, c_ulonglong) -> CuResult,
    pub create_video_parser:
        unsafe extern "C" fn(*mut CUvideoparser, *mut CUVIDPARSERPARAMS) -> CuResult,
    pub parse_video_data:
        unsafe extern "C" fn(CUvideoparser, *mut CUVIDSOURCEDATAPACKET) -> CuResult,
    pub destroy_video_parser: unsafe extern "C" fn(CUvideoparser) -> CuResult,
}

/// The process-wide table, or why there is none.
pub fn get() -> Result<&'static Cuvid, &'static String> {
    static CUVID: OnceLock<Result<Cuvid, String>> = OnceLock::new();
    CUVID.get_or_init(load).as_ref()
}

fn load() -> Result<Cuvid, String> {
    if !super::driver_present() {
        return Err("libcuda is missing, so NVDEC cannot run".into());
    }
    let (name, lib) = super::find(&["libnvcuvid.so.1".into(), "libnvcuvid.so".into()])
        .ok_or_else(|| "libnvcuvid.so.1 not found (it ships with the NVIDIA driver)".to_owned())?;
    macro_rules! sym {
        ($s:literal) => {
            // SAFETY: the symbol's type is the one declared in NVIDIA's header.
            *unsafe { lib.get(concat!($s, "\0").as_bytes()) }
                .map_err(|e| format!("{name} lacks {}: {e}", $s))?
        };
    }
    Ok(Cuvid {
        get_decoder_caps: sym!("cuvidGetDecoderCaps"),
        create_decoder: sym!("cuvidCreateDecoder"),
        destroy_decoder: sym!("cuvidDestroyDecoder"),
        decode_picture: sym!("cuvidDecodePicture"),
        map_video_frame: sym!("cuvidMapVideoFrame64"),
        unmap_video_frame: sym!("cuvidUnmapVideoFrame64"),
        create_video_parser: sym!("cuvidCreateVideoParser"),
        parse_video_data: sym!("cuvidParseVideoData"),
        destroy_video_parser: sym!("cuvidDestroyVideoParser"),
        _lib: lib,
    })
}

pub fn codec_id(codec: &str) -> Option<cudaVideoCodec> {
    Some(match codec {
        "h264" => cudaVideoCodec::cudaVideoCodec_H264,
        "hevc" => cudaVideoCodec::cudaVideoCodec_HEVC,
        "vp9" => cudaVideoCodec::cudaVideoCodec_VP9,
        "av1" => cudaVideoCodec::cudaVideoCodec_AV1,
        _ => return None,
    })
}

impl Cuvid {
    /// Asks NVDEC what it decodes (4:2:0 only: the ladder is 4:2:0).
    ///
    /// # Safety
    /// A CUDA context must be current on this thread.
    pub unsafe fn decode_caps(&self) -> Result<DecodeCaps, String> {
        let mut caps = DecodeCaps {
            engines: None,
            codecs: Vec::new(),
        };
        for &(codec, depth) in super::DECODE_CODECS {
            let Some(id) = codec_id(codec) else { continue };
            // SAFETY: a plain C struct; all-zero is its documented initial state.
            let mut q: CUVIDDECODECAPS = unsafe { std::mem::zeroed() };
            q.eCodecType = id;
            q.eChromaFormat = cudaVideoChromaFormat::cudaVideoChromaFormat_420;
            q.nBitDepthMinus8 = c_uint::from(depth - 8);
            // SAFETY: `q` is a valid, writable CUVIDDECODECAPS; context per contract.
            let r = unsafe { (self.get_decoder_caps)(&mut q) };
            if r != 0 {
                return Err(format!("cuvidGetDecoderCaps failed (CUresult {r})"));
            }
            if q.bIsSupported != 0 {
                caps.engines = Some(u32::from(q.nNumNVDECs)).filter(|n| *n > 0);
                caps.codecs.push(CodecCaps {
                    codec: codec.into(),
                    bit_depth: depth,
                    max_width: q.nMaxWidth,
                    max_height: q.nMaxHeight,
                });
            }
        }
        Ok(caps)
    }
}

/// The table is immutable function pointers into a library that is never
/// unloaded.
unsafe impl Sync for Cuvid {}
unsafe impl Send for Cuvid {}
