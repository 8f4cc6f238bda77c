//! Launching the kernels on a CUDA device.
//!
//! The launch wrappers take raw device pointers with a pitch, because that is
//! what NVDEC hands out and NVENC takes (`CUdeviceptr` + pitch); the `*_host`
//! helpers upload a [`cpu`] frame, launch, and download the result (for tests
//! and one-off work, not for the frame loop).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use crate::abi::{self, MAX_RUNGS};
use crate::cpu::{self, chroma_size, Matrix, Normalisation, Nv12Frame, P010Frame, Range};
use crate::{probe, ptx, KernelError, Result};

/// An 8-bit NV12 frame in device memory: luma at `y`, interleaved CbCr at
/// `uv` (half resolution, odd sizes rounded up), both `pitch` bytes per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceNv12 {
    pub y: u64,
    pub uv: u64,
    pub pitch: usize,
    pub width: u32,
    pub height: u32,
}

/// A P010 frame in device memory (16-bit little-endian samples, 10
/// significant bits in the high bits); `pitch` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceP010 {
    pub y: u64,
    pub uv: u64,
    pub pitch: usize,
    pub width: u32,
    pub height: u32,
}

/// A packed RGB24 image in device memory, `pitch` bytes per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRgb {
    pub ptr: u64,
    pub pitch: usize,
    pub width: u32,
    pub height: u32,
}

/// A float32 CHW tensor in device memory, `3 * width * height` floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTensor {
    pub ptr: u64,
    pub width: u32,
    pub height: u32,
}

/// Number of CUDA devices, or an error when there is no driver at all.
pub fn device_count() -> Result<usize> {
    probe::require_cuda_driver()?;
    let n = CudaContext::device_count().map_err(KernelError::driver("device count"))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The primary context of device `ordinal`, after checking that the driver
/// library exists (cudarc would panic without it).
pub fn context(ordinal: usize) -> Result<Arc<CudaContext>> {
    probe::require_cuda_driver()?;
    CudaContext::new(ordinal).map_err(KernelError::driver("context creation"))
}

/// The kernels, loaded into one CUDA context.
#[derive(Debug)]
pub struct GpuKernels {
    ctx: Arc<CudaContext>,
    arch: String,
    resize_nv12: CudaFunction,
    resize_p010: CudaFunction,
    to_rgb: CudaFunction,
    to_tensor: CudaFunction,
    compose_sbs: CudaFunction,
}

const BLOCK: (u32, u32, u32) = (32, 8, 1);

impl GpuKernels {
    /// Loads the PTX for the device's compute capability (from the PTX cache,
    /// or compiled with NVRTC) into `ctx`.
    pub fn new(ctx: Arc<CudaContext>) -> Result<Self> {
        let (major, minor) = ctx
            .compute_capability()
            .map_err(KernelError::driver("compute capability query"))?;
        let arch = ptx::arch_for_device(major, minor)?;
        let src = ptx::load_or_compile(&arch)?;
        let module = ctx
            .load_module(Ptx::from_src(src))
            .map_err(KernelError::driver(
                "module load (a driver older than the NVRTC that compiled the PTX rejects it)",
            ))?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(KernelError::driver("kernel lookup"))
        };
        Ok(Self {
            resize_nv12: load("resize_nv12_1n")?,
            resize_p010: load("resize_p010_1n")?,
            to_rgb: load("nv12_to_rgb")?,
            to_tensor: load("nv12_to_tensor")?,
            compose_sbs: load("compose_nv12_sbs")?,
            ctx,
            arch,
        })
    }

    /// The architecture the loaded PTX was compiled for, e.g. `"sm_89"`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The context the kernels live in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Resizes `src` into every frame of `dsts` (at most
    /// [`MAX_RUNGS`]) in one launch, asynchronously on
    /// `stream`.
    ///
    /// # Safety
    /// Every pointer must address device memory of this context that holds
    /// `pitch * height` bytes of luma and `pitch * ceil(height / 2)` bytes of
    /// chroma, stays allocated until the work on `stream` completes, and is
    /// not written by other work meanwhile; destinations must not overlap
    /// each other or the source.
    pub unsafe fn resize_nv12_1n(
        &self,
        stream: &CudaStream,
        src: DeviceNv12,
        dsts: &[DeviceNv12],
    ) -> Result<()> {
        let src = frame(
            "NV12 source",
            src.y,
            src.uv,
            src.pitch,
            src.width,
            src.height,
            1,
        )?;
        // SAFETY: forwarded to the caller.
        unsafe { self.resize(stream, &self.resize_nv12, src, dsts) }
    }

    /// [`resize_nv12_1n`](Self::resize_nv12_1n) from a P010 source into
    /// 8-bit NV12 destinations (`value10 / 4`, rounded, clamped).
    ///
    /// # Safety
    /// As for [`resize_nv12_1n`](Self::resize_nv12_1n); the source's planes
    /// hold `pitch` bytes (`width` 16-bit samples or more) per row.
    pub unsafe fn resize_p010_1n(
        &self,
        stream: &CudaStream,
        src: DeviceP010,
        dsts: &[DeviceNv12],
    ) -> Result<()> {
        let src = frame(
            "P010 source",
            src.y,
            src.uv,
            src.pitch,
            src.width,
            src.height,
            2,
        )?;
        // SAFETY: forwarded to the caller.
        unsafe { self.resize(stream, &self.resize_p010, src, dsts) }
    }

    /// Converts `src` to packed RGB24 at `dst`'s size (resizing on the way
    /// when it differs from the source's).
    ///
    /// # Safety
    /// As for [`resize_nv12_1n`](Self::resize_nv12_1n); `dst` holds
    /// `pitch * height` bytes.
    pub unsafe fn nv12_to_rgb(
        &self,
        stream: &CudaStream,
        src: DeviceNv12,
        dst: DeviceRgb,
        matrix: Matrix,
        range: Range,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let src = frame(
            "NV12 source",
            src.y,
            src.uv,
            src.pitch,
            src.width,
            src.height,
            1,
        )?;
        cpu::check_size("RGB output", dst.width, dst.height)?;
        if dst.ptr == 0 || dst.pitch < 3 * dst.width as usize {
            return Err(KernelError::Invalid(format!(
                "RGB output {}x{} with pitch {} at {:#x}",
                dst.width, dst.height, dst.pitch, dst.ptr
            )));
        }
        let out = abi::RgbOut {
            ptr: dst.ptr,
            pitch: dst.pitch as u64,
            width: dst.width,
            height: dst.height,
        };
        let k = cpu::colour(matrix, range);
        let mut launch = stream.launch_builder(&self.to_rgb);
        launch.arg(&src).arg(&out).arg(&k);
        // SAFETY: the parameters match `nv12_to_rgb`'s (abi.rs, checked by the
        // PTX test); the memory they address is the caller's promise.
        unsafe { launch.launch(grid(dst.width, dst.height)) }
            .map_err(KernelError::driver("nv12_to_rgb launch"))?;
        Ok(())
    }

    /// Converts `src` to a normalised float32 RGB tensor (CHW) at `dst`'s
    /// size.
    ///
    /// # Safety
    /// As for [`resize_nv12_1n`](Self::resize_nv12_1n); `dst` holds
    /// `3 * width * height` floats.
    pub unsafe fn nv12_to_tensor(
        &self,
        stream: &CudaStream,
        src: DeviceNv12,
        dst: DeviceTensor,
        matrix: Matrix,
        range: Range,
        norm: &Normalisation,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let src = frame(
            "NV12 source",
            src.y,
            src.uv,
            src.pitch,
            src.width,
            src.height,
            1,
        )?;
        cpu::check_size("tensor", dst.width, dst.height)?;
        if dst.ptr == 0 || !dst.ptr.is_multiple_of(4) {
            return Err(KernelError::Invalid(format!(
                "tensor pointer {:#x} not 4-byte aligned",
                dst.ptr
            )));
        }
        let out = abi::TensorOut {
            ptr: dst.ptr,
            width: dst.width,
            height: dst.height,
        };
        let k = cpu::colour(matrix, range);
        let n = norm.abi();
        let mut launch = stream.launch_builder(&self.to_tensor);
        launch.arg(&src).arg(&out).arg(&k).arg(&n);
        // SAFETY: the parameters match `nv12_to_tensor`'s (abi.rs, checked by
        // the PTX test); the memory they address is the caller's promise.
        unsafe { launch.launch(grid(dst.width, dst.height)) }
            .map_err(KernelError::driver("nv12_to_tensor launch"))?;
        Ok(())
    }

    /// Uploads `src`, resizes it to every size in `sizes`, and downloads the
    /// results (synchronous).
    pub fn resize_nv12_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &Nv12Frame,
        sizes: &[(u32, u32)],
    ) -> Result<Vec<Nv12Frame>> {
        src.validate()?;
        let src = Planes::upload(stream, src.width, src.height, &src.y, &src.uv)?;
        let dsts = sizes
            .iter()
            .map(|&(w, h)| Planes::<u8>::zeroed(stream, w, h))
            .collect::<Result<Vec<_>>>()?;
        let descs: Vec<_> = dsts.iter().map(|d| d.nv12(stream)).collect();
        // SAFETY: every descriptor addresses a live allocation of this
        // context made above for exactly that frame; all work is on `stream`.
        unsafe { self.resize_nv12_1n(stream, src.nv12(stream), &descs) }?;
        dsts.iter().map(|d| d.download_nv12(stream)).collect()
    }

    /// [`resize_nv12_host`](Self::resize_nv12_host) from a P010 source.
    pub fn resize_p010_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &P010Frame,
        sizes: &[(u32, u32)],
    ) -> Result<Vec<Nv12Frame>> {
        src.validate()?;
        let src = Planes::upload(stream, src.width, src.height, &src.y, &src.uv)?;
        let dsts = sizes
            .iter()
            .map(|&(w, h)| Planes::<u8>::zeroed(stream, w, h))
            .collect::<Result<Vec<_>>>()?;
        let descs: Vec<_> = dsts.iter().map(|d| d.nv12(stream)).collect();
        let (y, uv) = (src.ptr(&src.y, stream), src.ptr(&src.uv, stream));
        let src = DeviceP010 {
            y,
            uv,
            pitch: src.pitch * 2,
            width: src.width,
            height: src.height,
        };
        // SAFETY: as in `resize_nv12_host`.
        unsafe { self.resize_p010_1n(stream, src, &descs) }?;
        dsts.iter().map(|d| d.download_nv12(stream)).collect()
    }

    /// Uploads `src`, converts it to RGB24 at `width` x `height`, downloads.
    pub fn nv12_to_rgb_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &Nv12Frame,
        width: u32,
        height: u32,
        matrix: Matrix,
        range: Range,
    ) -> Result<cpu::RgbImage> {
        src.validate()?;
        cpu::check_size("RGB output", width, height)?;
        let src = Planes::upload(stream, src.width, src.height, &src.y, &src.uv)?;
        let row = 3 * width as usize;
        let pitch = padded(row);
        let out = alloc::<u8>(stream, pitch * height as usize)?;
        let dst = DeviceRgb {
            ptr: device_ptr(&out, stream),
            pitch,
            width,
            height,
        };
        // SAFETY: as in `resize_nv12_host`.
        unsafe { self.nv12_to_rgb(stream, src.nv12(stream), dst, matrix, range) }?;
        let data = download(stream, &out)?;
        Ok(cpu::RgbImage {
            width,
            height,
            data: unpad(&data, row, height as usize, pitch),
        })
    }

    /// Uploads `src`, converts it to a normalised tensor at `width` x
    /// `height`, downloads.
    #[allow(clippy::too_many_arguments)]
    pub fn nv12_to_tensor_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &Nv12Frame,
        width: u32,
        height: u32,
        matrix: Matrix,
        range: Range,
        norm: &Normalisation,
    ) -> Result<cpu::Tensor> {
        src.validate()?;
        cpu::check_size("tensor", width, height)?;
        let src = Planes::upload(stream, src.width, src.height, &src.y, &src.uv)?;
        let out = alloc::<f32>(stream, 3 * width as usize * height as usize)?;
        let dst = DeviceTensor {
            ptr: device_ptr(&out, stream),
            width,
            height,
        };
        // SAFETY: as in `resize_nv12_host`.
        unsafe { self.nv12_to_tensor(stream, src.nv12(stream), dst, matrix, range, norm) }?;
        Ok(cpu::Tensor {
            width,
            height,
            data: download(stream, &out)?,
        })
    }

    /// Composes `a` and `b` side by side into `dst` (see
    /// [`cpu::compose_nv12_sbs`]: each fitted into its half, aspect kept,
    /// black around), asynchronously on `stream`. `dst`'s width must be a
    /// multiple of 4 and its height even.
    ///
    /// # Safety
    /// As [`resize_nv12_1n`](Self::resize_nv12_1n): every pointer addresses
    /// device memory of this context large enough for its frame, live until
    /// the work on `stream` completes; `dst` overlaps neither source.
    pub unsafe fn compose_nv12_sbs(
        &self,
        stream: &CudaStream,
        a: DeviceNv12,
        b: DeviceNv12,
        dst: DeviceNv12,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let rect = cpu::side_by_side_layout(
            [(a.width, a.height), (b.width, b.height)],
            dst.width,
            dst.height,
        )?;
        let fa = frame("NV12 source", a.y, a.uv, a.pitch, a.width, a.height, 1)?;
        let fb = frame("NV12 source", b.y, b.uv, b.pitch, b.width, b.height, 1)?;
        let fd = frame(
            "NV12 destination",
            dst.y,
            dst.uv,
            dst.pitch,
            dst.width,
            dst.height,
            1,
        )?;
        let layout = abi::SideBySide { rect };
        let mut launch = stream.launch_builder(&self.compose_sbs);
        launch.arg(&fa).arg(&fb).arg(&fd).arg(&layout);
        // SAFETY: the parameters match `compose_nv12_sbs` (abi.rs, checked by
        // the PTX test); the memory they address is the caller's promise.
        unsafe { launch.launch(grid(dst.width, dst.height)) }
            .map_err(KernelError::driver("compose_nv12_sbs launch"))?;
        Ok(())
    }

    /// Uploads `a` and `b`, composes them side by side at `width` x
    /// `height`, and downloads the result (synchronous).
    pub fn compose_nv12_sbs_host(
        &self,
        stream: &Arc<CudaStream>,
        a: &Nv12Frame,
        b: &Nv12Frame,
        width: u32,
        height: u32,
    ) -> Result<Nv12Frame> {
        a.validate()?;
        b.validate()?;
        let da = Planes::upload(stream, a.width, a.height, &a.y, &a.uv)?;
        let db = Planes::upload(stream, b.width, b.height, &b.y, &b.uv)?;
        let out = Planes::<u8>::zeroed(stream, width, height)?;
        // SAFETY: every descriptor addresses a live allocation of this
        // context made above for exactly that frame; all work is on `stream`.
        unsafe {
            self.compose_nv12_sbs(stream, da.nv12(stream), db.nv12(stream), out.nv12(stream))
        }?;
        out.download_nv12(stream)
    }

    fn check_stream(&self, stream: &CudaStream) -> Result<()> {
        if stream.context().cu_ctx() != self.ctx.cu_ctx() {
            return Err(KernelError::Invalid(
                "stream belongs to another CUDA context than the kernels".into(),
            ));
        }
        Ok(())
    }

    /// # Safety
    /// See [`resize_nv12_1n`](Self::resize_nv12_1n).
    unsafe fn resize(
        &self,
        stream: &CudaStream,
        func: &CudaFunction,
        src: abi::Frame,
        dsts: &[DeviceNv12],
    ) -> Result<()> {
        self.check_stream(stream)?;
        if dsts.is_empty() || dsts.len() > MAX_RUNGS {
            return Err(KernelError::Invalid(format!(
                "{} destinations; one launch writes 1..={MAX_RUNGS}",
                dsts.len()
            )));
        }
        let mut ladder = abi::Ladder {
            count: dsts.len() as u32,
            ..Default::default()
        };
        for (slot, d) in ladder.dst.iter_mut().zip(dsts) {
            *slot = frame("NV12 destination", d.y, d.uv, d.pitch, d.width, d.height, 1)?;
        }
        let w = dsts.iter().map(|d| d.width).max().unwrap_or(1);
        let h = dsts.iter().map(|d| d.height).max().unwrap_or(1);
        let mut launch = stream.launch_builder(func);
        launch.arg(&src).arg(&ladder);
        // SAFETY: the parameters match the resize kernels' (abi.rs, checked by
        // the PTX test); the memory they address is the caller's promise.
        unsafe { launch.launch(grid(w, h)) }.map_err(KernelError::driver("resize launch"))?;
        Ok(())
    }
}

/// Checks a 4:2:0 frame descriptor and turns it into the kernels' layout.
fn frame(
    what: &str,
    y: u64,
    uv: u64,
    pitch: usize,
    width: u32,
    height: u32,
    bytes_per_sample: usize,
) -> Result<abi::Frame> {
    cpu::check_size(what, width, height)?;
    let (cw, _) = chroma_size(width, height);
    let row = bytes_per_sample * (width as usize).max(2 * cw as usize);
    let aligned = |p: u64| p != 0 && p.is_multiple_of(bytes_per_sample as u64);
    if pitch < row || !pitch.is_multiple_of(bytes_per_sample) || !aligned(y) || !aligned(uv) {
        return Err(KernelError::Invalid(format!(
            "{what} {width}x{height}: pitch {pitch} (needs >= {row}), planes at {y:#x} and {uv:#x}"
        )));
    }
    Ok(abi::Frame {
        y,
        uv,
        pitch: pitch as u64,
        width,
        height,
    })
}

/// One thread per output pixel of the largest output.
fn grid(width: u32, height: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (width.div_ceil(BLOCK.0), height.div_ceil(BLOCK.1), 1),
        block_dim: BLOCK,
        shared_mem_bytes: 0,
    }
}

/// Row pitch of the host helpers' allocations: 256-byte aligned like NVDEC's
/// surfaces, so the tests exercise pitch != width.
fn padded(row_bytes: usize) -> usize {
    row_bytes.next_multiple_of(256)
}

fn device_ptr<T>(slice: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    // The returned guard records a read event when dropped; every use here is
    // followed by work on the same stream and a synchronisation.
    let (ptr, _guard) = slice.device_ptr(stream);
    ptr
}

fn alloc<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    len: usize,
) -> Result<CudaSlice<T>> {
    stream
        .alloc_zeros::<T>(len)
        .map_err(KernelError::driver("allocation"))
}

fn download<T: DeviceRepr>(stream: &Arc<CudaStream>, slice: &CudaSlice<T>) -> Result<Vec<T>> {
    let data = stream
        .clone_dtoh(slice)
        .map_err(KernelError::driver("download"))?;
    stream
        .synchronize()
        .map_err(KernelError::driver("stream synchronisation"))?;
    Ok(data)
}

fn pad<T: Copy + Default>(data: &[T], row: usize, rows: usize, pitch: usize) -> Vec<T> {
    let mut out = vec![T::default(); pitch * rows];
    for (dst, src) in out.chunks_exact_mut(pitch).zip(data.chunks_exact(row)) {
        dst[..row].copy_from_slice(src);
    }
    out
}

fn unpad<T: Copy>(data: &[T], row: usize, rows: usize, pitch: usize) -> Vec<T> {
    data.chunks_exact(pitch)
        .take(rows)
        .flat_map(|r| r[..row].iter().copied())
        .collect()
}

/// A 4:2:0 frame's two planes in device memory, `pitch` samples per row.
struct Planes<T> {
    y: CudaSlice<T>,
    uv: CudaSlice<T>,
    pitch: usize,
    width: u32,
    height: u32,
}

impl<T: DeviceRepr + ValidAsZeroBits + Copy + Default> Planes<T> {
    fn pitch_for(width: u32) -> usize {
        let (cw, _) = chroma_size(width, 1);
        let row = (width as usize).max(2 * cw as usize);
        padded(row * size_of::<T>()) / size_of::<T>()
    }

    fn zeroed(stream: &Arc<CudaStream>, width: u32, height: u32) -> Result<Self> {
        cpu::check_size("destination", width, height)?;
        let pitch = Self::pitch_for(width);
        let (_, ch) = chroma_size(width, height);
        Ok(Self {
            y: alloc(stream, pitch * height as usize)?,
            uv: alloc(stream, pitch * ch as usize)?,
            pitch,
            width,
            height,
        })
    }

    fn upload(
        stream: &Arc<CudaStream>,
        width: u32,
        height: u32,
        y: &[T],
        uv: &[T],
    ) -> Result<Self> {
        let pitch = Self::pitch_for(width);
        let (cw, ch) = chroma_size(width, height);
        let up = |data: &[T], row: usize, rows: usize| {
            stream
                .clone_htod(&pad(data, row, rows, pitch))
                .map_err(KernelError::driver("upload"))
        };
        Ok(Self {
            y: up(y, width as usize, height as usize)?,
            uv: up(uv, 2 * cw as usize, ch as usize)?,
            pitch,
            width,
            height,
        })
    }

    fn ptr(&self, plane: &CudaSlice<T>, stream: &CudaStream) -> u64 {
        device_ptr(plane, stream)
    }
}

impl Planes<u8> {
    fn nv12(&self, stream: &CudaStream) -> DeviceNv12 {
        DeviceNv12 {
            y: device_ptr(&self.y, stream),
            uv: device_ptr(&self.uv, stream),
            pitch: self.pitch,
            width: self.width,
            height: self.height,
        }
    }

    fn download_nv12(&self, stream: &Arc<CudaStream>) -> Result<Nv12Frame> {
        let (cw, ch) = chroma_size(self.width, self.height);
        let y = download(stream, &self.y)?;
        let uv = download(stream, &self.uv)?;
        Nv12Frame::new(
            self.width,
            self.height,
            unpad(&y, self.width as usize, self.height as usize, self.pitch),
            unpad(&uv, 2 * cw as usize, ch as usize, self.pitch),
        )
    }
}
