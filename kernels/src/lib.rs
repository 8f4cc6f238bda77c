//! The appliance's GPU pixel kernels and their CPU reference: a one-pass 1:N
//! NV12/P010 ladder resize, NV12 → RGB24 colour conversion, and NV12 → a
//! normalised float32 RGB tensor for visual features, and a side-by-side
//! composition of two NV12 frames (duets). With `hardware`, the
//! only crate that touches CUDA.
//!
//! - [`ptx`] compiles the CUDA C source (`src/kernels.cu`) with NVRTC at run
//!   time for the device's architecture, caching the PTX on disk.
//! - [`gpu`] loads it into a CUDA context and launches the kernels on raw
//!   device pointers with a pitch, as NVDEC and NVENC hand them out.
//! - [`cpu`] is the same maths on host frames: the oracle for the tests, and
//!   a CPU path.
//! - [`conformance`] runs every kernel against [`cpu`] and reports the
//!   differences (the GPU tests and the bring-up kit both use it).
//! - [`probe`] says whether NVRTC and the CUDA driver can be loaded; `cudarc`
//!   panics when a library is missing, so this crate probes before every first
//!   use and returns [`KernelError`] instead.
//!
//! # The filter
//! For output coordinate `x` (same for `y`), source centre
//! `s = (x + 0.5) * (src / dst) - 0.5`, radius `r = max(1, src / dst)`, taps
//! at integer `i` in `[ceil(s - r), floor(s + r)]` (clamped to the edge) with
//! weight `max(0, 1 - |i - s| / r)`; the 2-D weight is `wx * wy` and the result
//! `sum(w * v) / sum(w)`, rounded to nearest and clamped to 0..=255. That is
//! bilinear when upscaling and an antialiasing tent when downscaling. All in
//! float32, with the same operations in the same order on both sides; the GPU
//! code is compiled with `--fmad=false` and IEEE division so it rounds as the
//! CPU does.
//!
//! # Chroma siting
//! Luma and chroma are filtered separately; chroma on its own plane
//! (`ceil(w/2)` x `ceil(h/2)`), centre-aligned (MPEG-1/JPEG siting). H.264
//! sources are usually left-sited (MPEG-2): treating them as centred shifts
//! chroma by at most a quarter of a chroma sample horizontally, below what
//! 4:2:0 can show, and keeps the 1:N resize one uniform filter per plane.
//!
//! # Tolerances
//! - 8-bit outputs (resize, RGB): GPU within 1 code value of [`cpu`]
//!   (expected identical); golden files within 1 code value.
//! - Tensor: GPU within 1e-4 of [`cpu`]; golden file within 1e-5.
//!
//! # Running the GPU tests
//! `tests/gpu.rs` runs every kernel on device 0 and compares with [`cpu`];
//! on a host without an NVIDIA driver or device it prints
//! `skipped: no NVIDIA GPU` and passes. `tests/ptx.rs` needs only NVRTC
//! (scripts/setup installs it from PyPI; scripts/test puts it on
//! `LD_LIBRARY_PATH`), and fails under `CI` when NVRTC is missing. On a GPU
//! host: `LD_LIBRARY_PATH=<nvrtc lib dir> cargo test --release -p kernels
//! --test gpu -- --nocapture`.

mod abi;
pub mod conformance;
pub mod cpu;
mod error;
pub mod gpu;
pub mod probe;
pub mod ptx;

pub use abi::{Rect, MAX_RUNGS};
pub use error::{KernelError, Result};
