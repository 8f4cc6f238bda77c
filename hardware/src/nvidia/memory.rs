//! Device memory for frames, with no FFmpeg types: per-GPU contexts with the
//! scaling kernels loaded, pooled NV12 buffers, 2-D copies, and downloads to
//! tight host planes. `media` wraps these in `AVFrame`s; the GPU bring-up
//! kit (`gpukit`) uses them bare.

use std::sync::{Arc, OnceLock};

use cudarc::driver::{result, sys, CudaContext, CudaStream};
use parking_lot::Mutex;

use crate::HardwareError;

type Result<T> = std::result::Result<T, HardwareError>;

/// Maps a CUDA driver error to [`HardwareError::Device`] for `op`.
pub fn cuda_err(op: &'static str) -> impl Fn(result::DriverError) -> HardwareError {
    move |e| HardwareError::Device {
        op,
        reason: format!("{e:?}"),
    }
}

/// Maps a kernel error to [`HardwareError::Device`] for `op`.
pub fn kernel_err(op: &'static str) -> impl Fn(kernels::KernelError) -> HardwareError {
    move |e| HardwareError::Device {
        op,
        reason: e.to_string(),
    }
}

/// One GPU: its primary context and the scaling kernels loaded into it.
pub struct Device {
    pub ctx: Arc<CudaContext>,
    kernels: OnceLock<std::result::Result<kernels::gpu::GpuKernels, String>>,
}

impl Device {
    /// The process-wide handle of GPU `ordinal`.
    pub fn get(ordinal: usize) -> Result<Arc<Device>> {
        static DEVICES: Mutex<Vec<(usize, Arc<Device>)>> = Mutex::new(Vec::new());
        let mut all = DEVICES.lock();
        if let Some((_, d)) = all.iter().find(|(o, _)| *o == ordinal) {
            return Ok(Arc::clone(d));
        }
        let ctx = kernels::gpu::context(ordinal).map_err(kernel_err("opening the CUDA context"))?;
        let d = Arc::new(Device {
            ctx,
            kernels: OnceLock::new(),
        });
        all.push((ordinal, Arc::clone(&d)));
        Ok(d)
    }

    pub fn kernels(&self) -> Result<&kernels::gpu::GpuKernels> {
        self.kernels
            .get_or_init(|| {
                kernels::gpu::GpuKernels::new(Arc::clone(&self.ctx)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| HardwareError::Device {
                op: "loading the scaling kernels",
                reason: reason.clone(),
            })
    }

    pub fn stream(&self) -> Result<Arc<CudaStream>> {
        self.ctx
            .new_stream()
            .map_err(cuda_err("creating a CUDA stream"))
    }
}

/// Rows are padded to this many bytes, NVENC's and the texture units' liking.
const PITCH_ALIGN: usize = 256;

/// One frame-sized device allocation (luma rows, then chroma rows).
#[derive(Debug)]
pub struct DeviceBuf {
    pub ptr: u64,
    pub pitch: usize,
    pub width: u32,
    pub height: u32,
}

impl DeviceBuf {
    pub fn chroma(&self) -> u64 {
        self.ptr + (self.pitch * self.height as usize) as u64
    }

    pub fn bytes(&self) -> usize {
        self.pitch * (self.height as usize + self.height.div_ceil(2) as usize)
    }

    pub fn nv12(&self) -> kernels::gpu::DeviceNv12 {
        kernels::gpu::DeviceNv12 {
            y: self.ptr,
            uv: self.chroma(),
            pitch: self.pitch,
            width: self.width,
            height: self.height,
        }
    }
}

/// Recycles 8-bit NV12 frame buffers of one size; frames go back on drop,
/// memory is freed when the pool and every frame from it are gone.
pub struct Pool {
    ctx: Arc<CudaContext>,
    width: u32,
    height: u32,
    free: Mutex<Vec<DeviceBuf>>,
}

impl Pool {
    pub fn new(ctx: Arc<CudaContext>, width: u32, height: u32) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            width,
            height,
            free: Mutex::new(Vec::new()),
        })
    }

    pub fn take(self: &Arc<Self>) -> Result<PooledBuf> {
        let buf = match self.free.lock().pop() {
            Some(b) => b,
            None => {
                let pitch = (self.width as usize).next_multiple_of(PITCH_ALIGN);
                let mut b = DeviceBuf {
                    ptr: 0,
                    pitch,
                    width: self.width,
                    height: self.height,
                };
                self.ctx
                    .bind_to_thread()
                    .map_err(cuda_err("binding the CUDA context"))?;
                // SAFETY: a plain allocation in the bound context.
                b.ptr = unsafe { result::malloc_sync(b.bytes()) }
                    .map_err(cuda_err("allocating a frame in device memory"))?;
                b
            }
        };
        Ok(PooledBuf {
            buf: Some(buf),
            pool: Arc::clone(self),
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            for b in self.free.get_mut().drain(..) {
                // SAFETY: allocated by this pool in this context; no frame
                // refers to a buffer on the free list.
                let _ = unsafe { result::free_sync(b.ptr) };
            }
        }
    }
}

pub struct PooledBuf {
    buf: Option<DeviceBuf>,
    pool: Arc<Pool>,
}

impl std::ops::Deref for PooledBuf {
    type Target = DeviceBuf;
    fn deref(&self) -> &DeviceBuf {
        self.buf.as_ref().expect("present until drop")
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.free.lock().push(b);
        }
    }
}

/// What rides on a decoded device frame: the frame scaled to every rung
/// (largest first) by the decoder's fused kernel.
pub struct DeviceFrame {
    pub rungs: Vec<PooledBuf>,
    /// CUDA device ordinal.
    pub gpu: usize,
}

/// Copies a 2-D region between device or host memory on `stream`.
///
/// # Safety
/// Both regions must be valid for `rows` rows of `width_bytes` at their
/// pitches until the copy completes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn copy_2d(
    stream: &CudaStream,
    src: Mem,
    src_pitch: usize,
    dst: Mem,
    dst_pitch: usize,
    width_bytes: usize,
    rows: usize,
) -> Result<()> {
    let c = copy_2d_params(src, src_pitch, dst, dst_pitch, width_bytes, rows);
    // SAFETY: per the contract.
    unsafe { sys::cuMemcpy2DAsync_v2(&c, stream.cu_stream()) }
        .result()
        .map_err(cuda_err("copying a frame"))
}

/// The parameter block of [`copy_2d`], every field named: `CUmemorytype`
/// starts at 1, so an all-zero block is not a value Rust may hold (the
/// standard library aborts on `mem::zeroed` of it).
fn copy_2d_params(
    src: Mem,
    src_pitch: usize,
    dst: Mem,
    dst_pitch: usize,
    width_bytes: usize,
    rows: usize,
) -> sys::CUDA_MEMCPY2D {
    use sys::CUmemorytype::{CU_MEMORYTYPE_DEVICE, CU_MEMORYTYPE_HOST};
    let (src_type, src_device, src_host) = match src {
        Mem::Device(p) => (CU_MEMORYTYPE_DEVICE, p, std::ptr::null()),
        Mem::Host(p) => (CU_MEMORYTYPE_HOST, 0, p.cast_const().cast()),
    };
    let (dst_type, dst_device, dst_host) = match dst {
        Mem::Device(p) => (CU_MEMORYTYPE_DEVICE, p, std::ptr::null_mut()),
        Mem::Host(p) => (CU_MEMORYTYPE_HOST, 0, p.cast()),
    };
    sys::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: src_type,
        srcHost: src_host,
        srcDevice: src_device,
        srcArray: std::ptr::null_mut(),
        srcPitch: src_pitch,
        dstXInBytes: 0,
        dstY: 0,
        dstMemoryType: dst_type,
        dstHost: dst_host,
        dstDevice: dst_device,
        dstArray: std::ptr::null_mut(),
        dstPitch: dst_pitch,
        WidthInBytes: width_bytes,
        Height: rows,
    }
}

#[derive(Clone, Copy)]
pub enum Mem {
    Device(u64),
    Host(*mut u8),
}

/// Downloads an NV12 device frame into tight host planes: `width * height`
/// luma bytes and `2 * ceil(width/2) * ceil(height/2)` interleaved chroma
/// bytes (the layout of `kernels::cpu::Nv12Frame`).
pub fn download_nv12(stream: &CudaStream, buf: &DeviceBuf) -> Result<(Vec<u8>, Vec<u8>)> {
    let (w, h) = (buf.width as usize, buf.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut y = vec![0u8; w * h];
    let mut uv = vec![0u8; cw * 2 * ch];
    // SAFETY: host buffers sized for the copied regions; the device buffer
    // holds h luma and ch chroma rows at its pitch; synchronised below.
    unsafe {
        copy_2d(
            stream,
            Mem::Device(buf.ptr),
            buf.pitch,
            Mem::Host(y.as_mut_ptr()),
            w,
            w,
            h,
        )?;
        copy_2d(
            stream,
            Mem::Device(buf.chroma()),
            buf.pitch,
            Mem::Host(uv.as_mut_ptr()),
            cw * 2,
            cw * 2,
            ch,
        )?;
    }
    stream
        .synchronize()
        .map_err(cuda_err("waiting for a download"))?;
    Ok((y, uv))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built without a GPU: the block once came from `mem::zeroed`, which
    /// aborts the process on the H200 before any copy.
    #[test]
    fn copy_params_name_each_side() {
        let mut host = [0u8; 16];
        let c = copy_2d_params(
            Mem::Device(0x1000),
            2048,
            Mem::Host(host.as_mut_ptr()),
            1920,
            1920,
            1080,
        );
        assert_eq!(c.srcMemoryType, sys::CUmemorytype::CU_MEMORYTYPE_DEVICE);
        assert_eq!((c.srcDevice, c.srcHost), (0x1000, std::ptr::null()));
        assert_eq!(c.dstMemoryType, sys::CUmemorytype::CU_MEMORYTYPE_HOST);
        assert_eq!((c.dstDevice, c.dstHost), (0, host.as_mut_ptr().cast()));
        assert_eq!(
            (c.srcPitch, c.dstPitch, c.WidthInBytes, c.Height),
            (2048, 1920, 1920, 1080)
        );
        let up = copy_2d_params(
            Mem::Host(host.as_mut_ptr()),
            8,
            Mem::Device(0x2000),
            256,
            8,
            2,
        );
        assert_eq!(up.srcMemoryType, sys::CUmemorytype::CU_MEMORYTYPE_HOST);
        assert_eq!(up.dstMemoryType, sys::CUmemorytype::CU_MEMORYTYPE_DEVICE);
        assert_eq!(up.dstDevice, 0x2000);
    }
}
