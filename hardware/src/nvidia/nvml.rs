//! NVML, for what the CUDA driver API does not say: the driver version and
//! live engine utilisation (the `appliance_gpu_*` metrics).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

use serde::Serialize;

type Device = *mut c_void;
const NVML_SUCCESS: c_int = 0;

#[repr(C)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

pub struct Nvml {
    _lib: libloading::Library,
    driver_version: unsafe extern "C" fn(*mut c_char, c_uint) -> c_int,
    by_pci: unsafe extern "C" fn(*const c_char, *mut Device) -> c_int,
    utilization: unsafe extern "C" fn(Device, *mut Utilization) -> c_int,
    encoder: unsafe extern "C" fn(Device, *mut c_uint, *mut c_uint) -> c_int,
    decoder: unsafe extern "C" fn(Device, *mut c_uint, *mut c_uint) -> c_int,
}

// SAFETY: NVML is thread-safe after nvmlInit; the table is immutable.
unsafe impl Sync for Nvml {}
unsafe impl Send for Nvml {}

/// Percent busy over NVML's last sampling period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Utilisation {
    pub gpu: u32,
    pub memory: u32,
    pub encoder: u32,
    pub decoder: u32,
}

pub fn get() -> Result<&'static Nvml, &'static String> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(load).as_ref()
}

fn load() -> Result<Nvml, String> {
    let (name, lib) = super::find(&["libnvidia-ml.so.1".into(), "libnvidia-ml.so".into()])
        .ok_or_else(|| "libnvidia-ml.so.1 not found".to_owned())?;
    macro_rules! sym {
        ($s:literal) => {
            // SAFETY: the symbol's type is the one declared in nvml.h.
            *unsafe { lib.get(concat!($s, "\0").as_bytes()) }
                .map_err(|e| format!("{name} lacks {}: {e}", $s))?
        };
    }
    let init: unsafe extern "C" fn() -> c_int = sym!("nvmlInit_v2");
    // SAFETY: nvmlInit_v2 takes no arguments and may be called repeatedly.
    let r = unsafe { init() };
    if r != NVML_SUCCESS {
        return Err(format!("nvmlInit failed (nvmlReturn {r})"));
    }
    Ok(Nvml {
        driver_version: sym!("nvmlSystemGetDriverVersion"),
        by_pci: sym!("nvmlDeviceGetHandleByPciBusId_v2"),
        utilization: sym!("nvmlDeviceGetUtilizationRates"),
        encoder: sym!("nvmlDeviceGetEncoderUtilization"),
        decoder: sym!("nvmlDeviceGetDecoderUtilization"),
        _lib: lib,
    })
}

impl Nvml {
    pub fn driver_version(&self) -> Option<String> {
        let mut buf = [0 as c_char; 96];
        // SAFETY: the buffer and its length match.
        let r = unsafe { (self.driver_version)(buf.as_mut_ptr(), buf.len() as c_uint) };
        // SAFETY: NVML wrote a NUL-terminated string on success.
        (r == NVML_SUCCESS).then(|| {
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
    }

    pub(crate) fn handle_by_pci(&self, pci_bus_id: &str) -> Option<Device> {
        let id = CString::new(pci_bus_id).ok()?;
        let mut dev = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer.
        let r = unsafe { (self.by_pci)(id.as_ptr(), &mut dev) };
        (r == NVML_SUCCESS).then_some(dev)
    }

    /// Utilisation of the GPU at `pci_bus_id` (CUDA and NVML number devices
    /// differently, so the bus id is the join key).
    pub fn utilisation(&self, pci_bus_id: &str) -> Option<Utilisation> {
        let dev = self.handle_by_pci(pci_bus_id)?;
        let mut u = Utilization { gpu: 0, memory: 0 };
        let (mut enc, mut dec, mut period) = (0, 0, 0);
        // SAFETY: a handle from NVML and valid out-pointers.
        unsafe {
            if (self.utilization)(dev, &mut u) != NVML_SUCCESS {
                return None;
            }
            // Boards without an engine report NOT_SUPPORTED: that is 0 %.
            let _ = (self.encoder)(dev, &mut enc, &mut period);
            let _ = (self.decoder)(dev, &mut dec, &mut period);
        }
        Some(Utilisation {
            gpu: u.gpu,
            memory: u.memory,
            encoder: enc,
            decoder: dec,
        })
    }
}
