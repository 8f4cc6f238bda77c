//! `libnvidia-encode` (NVENC): the API function list, filled once through
//! `NvEncodeAPICreateInstance` resolved with `dlopen`.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use nvidia_video_codec_sdk::sys::nvEncodeAPI::{
    GUID, NVENCAPI_MAJOR_VERSION, NVENCAPI_MINOR_VERSION, NVENCAPI_VERSION, NVENCSTATUS,
    NV_ENCODE_API_FUNCTION_LIST, NV_ENCODE_API_FUNCTION_LIST_VER, NV_ENC_CAPS, NV_ENC_CAPS_PARAM,
    NV_ENC_CAPS_PARAM_VER, NV_ENC_CODEC_AV1_GUID, NV_ENC_CODEC_H264_GUID, NV_ENC_CODEC_HEVC_GUID,
    NV_ENC_DEVICE_TYPE, NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS,
    NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER,
};

use crate::{CodecCaps, EncodeCaps};

/// NVENC's function list. Every entry is checked present at load.
pub struct Nvenc {
    _lib: libloading::Library,
    pub api: NV_ENCODE_API_FUNCTION_LIST,
}

// SAFETY: the list is immutable function pointers into a library that stays
// loaded; NVENC's entry points are thread-safe per session.
unsafe impl Sync for Nvenc {}
unsafe impl Send for Nvenc {}

pub fn get() -> Result<&'static Nvenc, &'static String> {
    static NVENC: OnceLock<Result<Nvenc, String>> = OnceLock::new();
    NVENC.get_or_init(load).as_ref()
}

fn load() -> Result<Nvenc, String> {
    if !super::driver_present() {
        return Err("libcuda is missing, so NVENC cannot run".into());
    }
    let (name, lib) = super::find(&["libnvidia-encode.so.1".into(), "libnvidia-encode.so".into()])
        .ok_or_else(|| {
            "libnvidia-encode.so.1 not found (it ships with the NVIDIA driver)".to_owned()
        })?;
    type MaxVersion = unsafe extern "C" fn(*mut u32) -> NVENCSTATUS;
    type Create = unsafe extern "C" fn(*mut NV_ENCODE_API_FUNCTION_LIST) -> NVENCSTATUS;
    // SAFETY: the symbols' types are the ones declared in nvEncodeAPI.h.
    let (max_version, create) = unsafe {
        let m: MaxVersion = *lib
            .get(b"NvEncodeAPIGetMaxSupportedVersion\0")
            .map_err(|e| format!("{name}: {e}"))?;
        let c: Create = *lib
            .get(b"NvEncodeAPICreateInstance\0")
            .map_err(|e| format!("{name}: {e}"))?;
        (m, c)
    };
    let mut driver = 0u32;
    // SAFETY: writes one u32.
    check(
        unsafe { max_version(&mut driver) },
        "NvEncodeAPIGetMaxSupportedVersion",
    )?;
    let ours = (NVENCAPI_MAJOR_VERSION << 4) | NVENCAPI_MINOR_VERSION;
    if driver < ours {
        return Err(format!(
            "the driver's NVENC API is {}.{}, this build needs {NVENCAPI_MAJOR_VERSION}.{NVENCAPI_MINOR_VERSION} (driver ≥ 530)",
            driver >> 4,
            driver & 0xf
        ));
    }
    // SAFETY: an all-zero function list with its version set is the
    // documented input of NvEncodeAPICreateInstance.
    let mut api: NV_ENCODE_API_FUNCTION_LIST = unsafe { std::mem::zeroed() };
    api.version = NV_ENCODE_API_FUNCTION_LIST_VER;
    check(unsafe { create(&mut api) }, "NvEncodeAPICreateInstance")?;
    let needed = [
        api.nvEncOpenEncodeSessionEx.is_some(),
        api.nvEncGetEncodeGUIDCount.is_some(),
        api.nvEncGetEncodeGUIDs.is_some(),
        api.nvEncGetEncodeCaps.is_some(),
        api.nvEncGetEncodePresetConfigEx.is_some(),
        api.nvEncInitializeEncoder.is_some(),
        api.nvEncCreateBitstreamBuffer.is_some(),
        api.nvEncDestroyBitstreamBuffer.is_some(),
        api.nvEncRegisterResource.is_some(),
        api.nvEncUnregisterResource.is_some(),
        api.nvEncMapInputResource.is_some(),
        api.nvEncUnmapInputResource.is_some(),
        api.nvEncEncodePicture.is_some(),
        api.nvEncLockBitstream.is_some(),
        api.nvEncUnlockBitstream.is_some(),
        api.nvEncGetSequenceParams.is_some(),
        api.nvEncDestroyEncoder.is_some(),
    ];
    if needed.contains(&false) {
        return Err(format!("{name} returned an incomplete NVENC function list"));
    }
    Ok(Nvenc { _lib: lib, api })
}

pub fn check(status: NVENCSTATUS, what: &str) -> Result<(), String> {
    if status == NVENCSTATUS::NV_ENC_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed: {status:?}"))
    }
}

/// A session opened only to read capabilities; closed on drop.
struct Probe<'a> {
    nvenc: &'a Nvenc,
    encoder: *mut c_void,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(destroy) = self.nvenc.api.nvEncDestroyEncoder {
            // SAFETY: `encoder` came from nvEncOpenEncodeSessionEx and is
            // destroyed exactly once.
            unsafe { destroy(self.encoder) };
        }
    }
}

const CODECS: &[(&str, GUID)] = &[
    ("h264", NV_ENC_CODEC_H264_GUID),
    ("hevc", NV_ENC_CODEC_HEVC_GUID),
    ("av1", NV_ENC_CODEC_AV1_GUID),
];

impl Nvenc {
    /// Opens an encode session on `cuda_ctx` (a `CUcontext`).
    ///
    /// # Safety
    /// `cuda_ctx` must be a live CUDA context.
    pub unsafe fn open_session(&self, cuda_ctx: *mut c_void) -> Result<*mut c_void, String> {
        // SAFETY: documented zero-initialised parameter block.
        let mut p: NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS = unsafe { std::mem::zeroed() };
        p.version = NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
        p.deviceType = NV_ENC_DEVICE_TYPE::NV_ENC_DEVICE_TYPE_CUDA;
        p.device = cuda_ctx;
        p.apiVersion = NVENCAPI_VERSION;
        let mut encoder = std::ptr::null_mut();
        let open = self.api.nvEncOpenEncodeSessionEx.expect("checked at load");
        // SAFETY: both pointers are valid for the call.
        check(
            unsafe { open(&mut p, &mut encoder) },
            "opening an NVENC session",
        )?;
        Ok(encoder)
    }

    /// What NVENC offers on the device of `cuda_ctx`. A data-centre GPU
    /// without NVENC (H100, A100) fails to open a session: that is the answer.
    ///
    /// # Safety
    /// `cuda_ctx` must be a live CUDA context.
    pub unsafe fn encode_caps(
        &self,
        cuda_ctx: *mut c_void,
        gpu_name: &str,
    ) -> Result<EncodeCaps, String> {
        // SAFETY: per this function's contract.
        let encoder = unsafe { self.open_session(cuda_ctx) }
            .map_err(|e| format!("no usable NVENC on this GPU ({e})"))?;
        let probe = Probe {
            nvenc: self,
            encoder,
        };
        let count_fn = self.api.nvEncGetEncodeGUIDCount.expect("checked at load");
        let guids_fn = self.api.nvEncGetEncodeGUIDs.expect("checked at load");
        let mut n = 0u32;
        // SAFETY: valid session and out-pointer.
        check(
            unsafe { count_fn(probe.encoder, &mut n) },
            "nvEncGetEncodeGUIDCount",
        )?;
        let mut guids = vec![
            GUID {
                Data1: 0,
                Data2: 0,
                Data3: 0,
                Data4: [0; 8]
            };
            n as usize
        ];
        let mut got = 0u32;
        // SAFETY: the buffer holds `n` GUIDs.
        check(
            unsafe { guids_fn(probe.encoder, guids.as_mut_ptr(), n, &mut got) },
            "nvEncGetEncodeGUIDs",
        )?;
        guids.truncate(got as usize);
        let mut caps = EncodeCaps {
            engines: None,
            max_sessions: session_limit(gpu_name),
            codecs: Vec::new(),
        };
        for (codec, guid) in CODECS {
            if !guids.contains(guid) {
                continue;
            }
            let w = self.cap(&probe, *guid, NV_ENC_CAPS::NV_ENC_CAPS_WIDTH_MAX);
            let h = self.cap(&probe, *guid, NV_ENC_CAPS::NV_ENC_CAPS_HEIGHT_MAX);
            if *codec == "h264" {
                caps.engines = self
                    .cap(&probe, *guid, NV_ENC_CAPS::NV_ENC_CAPS_NUM_ENCODER_ENGINES)
                    .filter(|n| *n > 0);
            }
            caps.codecs.push(CodecCaps {
                codec: (*codec).into(),
                bit_depth: 8,
                max_width: w.unwrap_or(4096),
                max_height: h.unwrap_or(4096),
            });
        }
        if caps.codecs.is_empty() {
            return Err("NVENC offers no codec this appliance encodes".into());
        }
        Ok(caps)
    }

    fn cap(&self, probe: &Probe<'_>, codec: GUID, what: NV_ENC_CAPS) -> Option<u32> {
        let f = self.api.nvEncGetEncodeCaps?;
        // SAFETY: documented zero-initialised parameter block.
        let mut p: NV_ENC_CAPS_PARAM = unsafe { std::mem::zeroed() };
        p.version = NV_ENC_CAPS_PARAM_VER;
        p.capsToQuery = what;
        let mut v: c_int = 0;
        // SAFETY: valid session, parameter block and out-pointer.
        let status = unsafe { f(probe.encoder, codec, &mut p, &mut v) };
        (status == NVENCSTATUS::NV_ENC_SUCCESS).then_some(v.max(0) as u32)
    }
}

/// The driver caps concurrent NVENC sessions on consumer (GeForce) boards
/// (8 since driver 550); professional and data-centre boards have no cap
/// beyond memory. NVENC has no query for it, so it is read off the name.
pub fn session_limit(gpu_name: &str) -> Option<u32> {
    gpu_name.contains("GeForce").then_some(8)
}

/// NVENC's parameter blocks start all-zero, as the SDK's samples `memset`
/// them, but three hold an enum whose first value is 1
/// (`NV_ENC_PIC_STRUCT`, `NV_ENC_PARAMS_FRAME_FIELD_MODE`): zero bytes are no
/// value of those types, and `mem::zeroed` aborts the process. These make
/// the blocks with those fields set to progressive frames, the only kind
/// the box encodes, while the block is still raw memory.
pub mod blocks {
    use std::mem::MaybeUninit;
    use std::ptr::addr_of_mut;

    use nvidia_video_codec_sdk::sys::nvEncodeAPI::{
        NV_ENC_LOCK_BITSTREAM, NV_ENC_PARAMS_FRAME_FIELD_MODE, NV_ENC_PIC_PARAMS,
        NV_ENC_PIC_STRUCT, NV_ENC_PRESET_CONFIG,
    };

    pub fn preset_config() -> NV_ENC_PRESET_CONFIG {
        let mut m = MaybeUninit::<NV_ENC_PRESET_CONFIG>::zeroed();
        let p = m.as_mut_ptr();
        // SAFETY: every other field of the C struct is an integer, pointer,
        // GUID, union or enum with a zero value; the one that is not is
        // written before the block is read.
        unsafe {
            addr_of_mut!((*p).presetCfg.frameFieldMode)
                .write(NV_ENC_PARAMS_FRAME_FIELD_MODE::NV_ENC_PARAMS_FRAME_FIELD_MODE_FRAME);
            m.assume_init()
        }
    }

    pub fn pic_params() -> NV_ENC_PIC_PARAMS {
        let mut m = MaybeUninit::<NV_ENC_PIC_PARAMS>::zeroed();
        let p = m.as_mut_ptr();
        // SAFETY: as in `preset_config`.
        unsafe {
            addr_of_mut!((*p).pictureStruct).write(NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME);
            m.assume_init()
        }
    }

    pub fn lock_bitstream() -> NV_ENC_LOCK_BITSTREAM {
        let mut m = MaybeUninit::<NV_ENC_LOCK_BITSTREAM>::zeroed();
        let p = m.as_mut_ptr();
        // SAFETY: as in `preset_config`.
        unsafe {
            addr_of_mut!((*p).pictureStruct).write(NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME);
            m.assume_init()
        }
    }
}

#[cfg(test)]
mod tests {
    use nvidia_video_codec_sdk::sys::cuviddec::{
        CUVIDDECODECAPS, CUVIDDECODECREATEINFO, CUVIDPROCPARAMS,
    };
    use nvidia_video_codec_sdk::sys::nvEncodeAPI::*;
    use nvidia_video_codec_sdk::sys::nvcuvid::{CUVIDPARSERPARAMS, CUVIDSOURCEDATAPACKET};

    /// Every block the NVIDIA code zero-initialises, made here without a
    /// GPU. A block holding a field for which zero is no value makes the
    /// standard library abort this test binary (it did, on the H200, for
    /// `CUDA_MEMCPY2D`, before any of this ran on a GPU); such a block gets
    /// a builder in [`super::blocks`] instead.
    #[test]
    fn every_zeroed_block_is_a_value() {
        fn zeroed<T>() -> T {
            // SAFETY: what this test checks; see the doc comment.
            unsafe { std::mem::zeroed() }
        }
        let _: (CUVIDDECODECAPS, CUVIDPARSERPARAMS, CUVIDSOURCEDATAPACKET) =
            (zeroed(), zeroed(), zeroed());
        let _: (CUVIDDECODECREATEINFO, CUVIDPROCPARAMS) = (zeroed(), zeroed());
        let _: (
            NV_ENCODE_API_FUNCTION_LIST,
            NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS,
        ) = (zeroed(), zeroed());
        let _: (NV_ENC_CAPS_PARAM, NV_ENC_INITIALIZE_PARAMS) = (zeroed(), zeroed());
        let _: (
            NV_ENC_CREATE_BITSTREAM_BUFFER,
            NV_ENC_SEQUENCE_PARAM_PAYLOAD,
        ) = (zeroed(), zeroed());
        let _: (NV_ENC_REGISTER_RESOURCE, NV_ENC_MAP_INPUT_RESOURCE) = (zeroed(), zeroed());
    }

    #[test]
    fn blocks_with_enums_from_one_are_progressive_frames() {
        let pc = super::blocks::preset_config();
        assert_eq!(
            pc.presetCfg.frameFieldMode,
            NV_ENC_PARAMS_FRAME_FIELD_MODE::NV_ENC_PARAMS_FRAME_FIELD_MODE_FRAME
        );
        assert_eq!(pc.version, 0);
        let pic = super::blocks::pic_params();
        assert_eq!(
            pic.pictureStruct,
            NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME
        );
        assert_eq!((pic.inputWidth, pic.encodePicFlags), (0, 0));
        let lock = super::blocks::lock_bitstream();
        assert_eq!(
            lock.pictureStruct,
            NV_ENC_PIC_STRUCT::NV_ENC_PIC_STRUCT_FRAME
        );
        assert!(lock.outputBitstream.is_null());
    }

    #[test]
    fn consumer_boards_are_capped_and_others_are_not() {
        assert_eq!(super::session_limit("NVIDIA GeForce RTX 4090"), Some(8));
        assert_eq!(super::session_limit("NVIDIA L4"), None);
        assert_eq!(super::session_limit("NVIDIA RTX A6000"), None);
    }
}
