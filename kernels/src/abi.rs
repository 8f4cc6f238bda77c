//! Kernel parameter structs, laid out exactly as the structs of the same
//! names in `kernels.cu` (which `static_assert`s the same sizes). The PTX test
//! checks these sizes against the parameters NVRTC actually emitted.

use std::mem::size_of;

use cudarc::driver::DeviceRepr;

/// Most destinations one ladder launch writes (`MAX_RUNGS` in `kernels.cu`).
pub const MAX_RUNGS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    pub y: u64,
    pub uv: u64,
    pub pitch: u64,
    pub width: u32,
    pub height: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ladder {
    pub dst: [Frame; MAX_RUNGS],
    pub count: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Colour {
    pub y_off: f32,
    pub y_scale: f32,
    pub c_scale: f32,
    pub r_cr: f32,
    pub g_cb: f32,
    pub g_cr: f32,
    pub b_cb: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RgbOut {
    pub ptr: u64,
    pub pitch: u64,
    pub width: u32,
    pub height: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TensorOut {
    pub ptr: u64,
    pub width: u32,
    pub height: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Norm {
    pub mean: [f32; 3],
    pub stddev: [f32; 3],
}

/// A luma rectangle of a composed frame (origin and size even).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where the two sources of a side-by-side composition land.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SideBySide {
    pub rect: [Rect; 2],
}

const _: () = assert!(size_of::<Frame>() == 32);
const _: () = assert!(size_of::<SideBySide>() == 32);
const _: () = assert!(size_of::<Ladder>() == 264);
const _: () = assert!(size_of::<Colour>() == 28);
const _: () = assert!(size_of::<RgbOut>() == 24);
const _: () = assert!(size_of::<TensorOut>() == 16);
const _: () = assert!(size_of::<Norm>() == 24);

// SAFETY: plain `#[repr(C)]` data (integers and floats, no pointers the Rust
// side owns), passed by value as kernel parameters of identical layout.
unsafe impl DeviceRepr for Frame {}
// SAFETY: as above.
unsafe impl DeviceRepr for Ladder {}
// SAFETY: as above.
unsafe impl DeviceRepr for Colour {}
// SAFETY: as above.
unsafe impl DeviceRepr for RgbOut {}
// SAFETY: as above.
unsafe impl DeviceRepr for TensorOut {}
// SAFETY: as above.
unsafe impl DeviceRepr for Norm {}
// SAFETY: as above.
unsafe impl DeviceRepr for SideBySide {}

/// A kernel's name and the byte size of each of its parameters, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSignature {
    pub name: &'static str,
    pub param_bytes: &'static [usize],
}

/// Every kernel in `kernels.cu`, with the parameter sizes the launch wrappers
/// in [`crate::gpu`] pass.
pub const KERNELS: [KernelSignature; 5] = [
    KernelSignature {
        name: "resize_nv12_1n",
        param_bytes: &[size_of::<Frame>(), size_of::<Ladder>()],
    },
    KernelSignature {
        name: "resize_p010_1n",
        param_bytes: &[size_of::<Frame>(), size_of::<Ladder>()],
    },
    KernelSignature {
        name: "nv12_to_rgb",
        param_bytes: &[size_of::<Frame>(), size_of::<RgbOut>(), size_of::<Colour>()],
    },
    KernelSignature {
        name: "nv12_to_tensor",
        param_bytes: &[
            size_of::<Frame>(),
            size_of::<TensorOut>(),
            size_of::<Colour>(),
            size_of::<Norm>(),
        ],
    },
    KernelSignature {
        name: "compose_nv12_sbs",
        param_bytes: &[
            size_of::<Frame>(),
            size_of::<Frame>(),
            size_of::<Frame>(),
            size_of::<SideBySide>(),
        ],
    },
];
