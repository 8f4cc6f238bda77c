//! NVIDIA discovery. Every library is opened with `dlopen` first: `cudarc`
//! panics when `libcuda` is missing, and NVIDIA's codec libraries ship with the
//! driver, not the toolkit, so any of them may be absent on a given host.
//!
//! The entry-point tables (`cuvid`, `nvenc`) are resolved here once and shared
//! with `media`, as FFmpeg's nv-codec-headers loader does. [`memory`] (device
//! frame buffers) and [`decode`] (NVDEC with the fused ladder scale) hold no
//! FFmpeg types, so the GPU bring-up kit runs them without FFmpeg.

pub mod cuvid;
pub mod decode;
pub mod memory;
pub mod nvenc;
pub mod nvml;

use std::ffi::c_int;
use std::sync::OnceLock;

use cudarc::driver::{result, sys};
use serde::Serialize;

use crate::{CodecCaps, DecodeCaps, EncodeCaps, Gpu};

/// One NVIDIA library: what it is for and whether this host can load it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Library {
    pub name: &'static str,
    pub purpose: &'static str,
    /// The file name that loaded, or `None`.
    pub loaded: Option<String>,
    /// Why it is unusable (not found, missing entry point, too old).
    pub problem: Option<String>,
}

impl Library {
    pub fn ok(&self) -> bool {
        self.loaded.is_some() && self.problem.is_none()
    }
}

/// The first candidate `dlopen` accepts. Loading a library runs only its
/// initialisers, which NVIDIA's libraries keep side-effect free.
pub(crate) fn find(candidates: &[String]) -> Option<(String, libloading::Library)> {
    candidates.iter().find_map(|name| {
        // SAFETY: opening a shared library by name; see above.
        unsafe { libloading::Library::new(name) }
            .ok()
            .map(|l| (name.clone(), l))
    })
}

fn probe(name: &'static str, purpose: &'static str, candidates: &[String]) -> Library {
    let loaded = find(candidates).map(|(n, _)| n);
    Library {
        name,
        purpose,
        problem: loaded.is_none().then(|| match candidates {
            [one] => format!("{one} not found"),
            _ => format!(
                "not found (tried {} names: {} … {})",
                candidates.len(),
                candidates[0],
                candidates[candidates.len() - 1]
            ),
        }),
        loaded,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Probes the five libraries the GPU path uses. Cheap; never panics.
pub fn libraries() -> Vec<Library> {
    let mut libs = vec![
        probe(
            "libcuda",
            "CUDA driver: every GPU stage",
            &kernels::probe::lib_name_candidates("cuda"),
        ),
        probe(
            "libnvrtc",
            "run-time compilation of the scaling kernels",
            &kernels::probe::lib_name_candidates("nvrtc"),
        ),
        probe(
            "libnvcuvid",
            "NVDEC decode",
            &names(&["libnvcuvid.so.1", "libnvcuvid.so"]),
        ),
        probe(
            "libnvidia-encode",
            "NVENC encode",
            &names(&["libnvidia-encode.so.1", "libnvidia-encode.so"]),
        ),
        probe(
            "libnvidia-ml",
            "NVML: driver version, engine utilisation",
            &names(&["libnvidia-ml.so.1", "libnvidia-ml.so"]),
        ),
    ];
    if let Some(l) = libs.iter_mut().find(|l| l.name == "libnvcuvid" && l.ok()) {
        if let Err(e) = cuvid::get() {
            l.problem = Some(e.clone());
        }
    }
    if let Some(l) = libs
        .iter_mut()
        .find(|l| l.name == "libnvidia-encode" && l.ok())
    {
        if let Err(e) = nvenc::get() {
            l.problem = Some(e.clone());
        }
    }
    libs
}

/// Whether `libcuda` can be loaded; the gate before any `cudarc` call.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| find(&kernels::probe::lib_name_candidates("cuda")).is_some())
}

/// What discovery found, with a note for each thing that did not work.
pub struct Found {
    pub gpus: Vec<Gpu>,
    pub driver_version: Option<String>,
    pub notes: Vec<String>,
}

pub fn discover() -> Found {
    let mut found = Found {
        gpus: Vec::new(),
        driver_version: None,
        notes: Vec::new(),
    };
    if !driver_present() {
        found
            .notes
            .push("no NVIDIA driver (libcuda) on this host".into());
        return found;
    }
    // cudarc's loader panics on a missing symbol; a driver too old for the
    // bindings must not take the process down with it.
    match std::panic::catch_unwind(devices) {
        Ok(Ok(gpus)) => found.gpus = gpus,
        Ok(Err(e)) => found.notes.push(format!("CUDA: {e}")),
        Err(_) => found
            .notes
            .push("CUDA driver is missing entry points this build needs (driver too old?)".into()),
    }
    match nvml::get() {
        Ok(nvml) => {
            found.driver_version = nvml.driver_version();
            for g in &mut found.gpus {
                if let Some(pci) = &g.pci_bus_id {
                    g.nvml = nvml.handle_by_pci(pci).is_some();
                }
            }
        }
        Err(e) => found.notes.push(format!("NVML: {e}")),
    }
    found
}

pub(crate) fn driver_error(what: &str, e: result::DriverError) -> String {
    format!("{what}: {e:?}")
}

fn devices() -> Result<Vec<Gpu>, String> {
    result::init().map_err(|e| driver_error("cuInit", e))?;
    let count = result::device::get_count().map_err(|e| driver_error("device count", e))?;
    (0..count).map(device).collect()
}

fn device(ordinal: c_int) -> Result<Gpu, String> {
    let dev = result::device::get(ordinal).map_err(|e| driver_error("cuDeviceGet", e))?;
    let name = result::device::get_name(dev).map_err(|e| driver_error("device name", e))?;
    let attr = |a| {
        // SAFETY: `dev` is a valid device handle from cuDeviceGet.
        unsafe { result::device::get_attribute(dev, a) }.unwrap_or(0) as u32
    };
    let cc = (
        attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
        attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
    );
    // SAFETY: as above.
    let memory_bytes =
        unsafe { result::device::total_mem(dev) }.map_err(|e| driver_error("memory size", e))?;
    let pci_bus_id = pci_bus_id(dev);
    let mut gpu = Gpu {
        index: ordinal as usize,
        name,
        compute_capability: cc,
        memory_bytes: memory_bytes as u64,
        pci_bus_id,
        nvml: false,
        nvdec: None,
        nvdec_problem: None,
        nvenc: None,
        nvenc_problem: None,
    };
    // The codec caps need a context; the primary one is shared with every
    // other user of this device in the process, so nothing is created twice.
    // SAFETY: retain/release are paired; the context is made current only on
    // this thread and only for the queries below.
    unsafe {
        let ctx = result::primary_ctx::retain(dev).map_err(|e| driver_error("context", e))?;
        result::ctx::set_current(ctx).map_err(|e| driver_error("context", e))?;
        match cuvid::get() {
            Ok(c) => match c.decode_caps() {
                Ok(caps) if !caps.codecs.is_empty() => gpu.nvdec = Some(caps),
                Ok(_) => gpu.nvdec_problem = Some("NVDEC reports no supported codec".into()),
                Err(e) => gpu.nvdec_problem = Some(e),
            },
            Err(e) => gpu.nvdec_problem = Some(e.clone()),
        }
        match nvenc::get() {
            Ok(n) => match n.encode_caps(ctx.cast(), &gpu.name) {
                Ok(caps) => gpu.nvenc = Some(caps),
                Err(e) => gpu.nvenc_problem = Some(e),
            },
            Err(e) => gpu.nvenc_problem = Some(e.clone()),
        }
        let _ = result::ctx::set_current(std::ptr::null_mut());
        let _ = result::primary_ctx::release(dev);
    }
    Ok(gpu)
}

fn pci_bus_id(dev: sys::CUdevice) -> Option<String> {
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: the buffer is writable for its full length, which is passed.
    let r = unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as c_int, dev) };
    (r == sys::CUresult::CUDA_SUCCESS).then(|| {
        // SAFETY: the driver wrote a NUL-terminated string into `buf`.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    })
}

/// The codecs NVDEC is asked about: those the NVDEC path parses (MP4/TS
/// H.264 and HEVC through the Annex B filter); other inputs decode on the CPU.
pub(crate) const DECODE_CODECS: &[(&str, u8)] = &[("h264", 8), ("hevc", 8), ("hevc", 10)];

impl DecodeCaps {
    pub fn supports(&self, codec: &str, bit_depth: u8, width: u32, height: u32) -> bool {
        self.codecs
            .iter()
            .any(|c| c.fits(codec, bit_depth, width, height))
    }
}

impl EncodeCaps {
    pub fn supports(&self, codec: &str, width: u32, height: u32) -> bool {
        self.codecs.iter().any(|c| c.fits(codec, 8, width, height))
    }
}

impl CodecCaps {
    fn fits(&self, codec: &str, bit_depth: u8, width: u32, height: u32) -> bool {
        self.codec == codec
            && self.bit_depth >= bit_depth
            && width <= self.max_width
            && height <= self.max_height
    }
}
