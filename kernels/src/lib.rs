//! CUDA C kernels (one-pass 1:N NV12/P010 ladder resize, colour conversion,
//! frame → normalised RGB tensor), compiled at run time with NVRTC through
//! `cudarc`, each with a Rust CPU reference implementation of the same maths.
//! With `hardware`, the only crate that touches CUDA.
//!
//! Its work arrives with the GPU path issue; until then this crate
//! deliberately holds no code.
