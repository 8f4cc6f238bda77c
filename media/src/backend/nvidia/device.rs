//! The `AV_PIX_FMT_CUDA` `AVFrame`s that carry device frames across the
//! backend seam (the layout FFmpeg's own CUDA frames use: `data[0]`/`data[1]`
//! are the luma and chroma `CUdeviceptr`s, `linesize` the pitch, `buf[0]`
//! keeps them alive). The device memory itself is `hardware::nvidia::memory`.

use std::ffi::c_void;

use cudarc::driver::CudaStream;
use ff::format::Pixel;
use ffmpeg_next as ff;
pub use hardware::nvidia::memory::{copy_2d, cuda_err, Device, DeviceBuf, DeviceFrame, Mem};

use crate::error::{MediaError, Result};

unsafe extern "C" fn free_device_frame(opaque: *mut c_void, _data: *mut u8) {
    // SAFETY: `opaque` is the Box leaked in `wrap`, freed exactly once here
    // when the last AVBufferRef to it goes.
    drop(unsafe { Box::from_raw(opaque.cast::<DeviceFrame>()) });
}

/// An `AV_PIX_FMT_CUDA` frame whose planes are the top rung's. `buf[0]` owns
/// the whole `DeviceFrame`, so every rung stays alive while any reference
/// to the frame does.
pub fn wrap(frame: DeviceFrame) -> Result<ff::frame::Video> {
    let (w, h, y, uv, pitch) = {
        let s = frame.rungs.first().ok_or_else(|| MediaError::Device {
            op: "wrapping a device frame",
            reason: "no rung".into(),
        })?;
        (s.width, s.height, s.ptr, s.chroma(), s.pitch)
    };
    let opaque = Box::into_raw(Box::new(frame));
    // SAFETY: av_buffer_create takes ownership of `opaque` through the free
    // callback; on failure we take it back.
    let buf = unsafe {
        ff::ffi::av_buffer_create(
            std::ptr::null_mut(),
            0,
            Some(free_device_frame),
            opaque.cast(),
            0,
        )
    };
    if buf.is_null() {
        // SAFETY: not handed over.
        drop(unsafe { Box::from_raw(opaque) });
        return Err(MediaError::Device {
            op: "wrapping a device frame",
            reason: "out of memory".into(),
        });
    }
    let mut out = ff::frame::Video::empty();
    // SAFETY: field writes on a fresh AVFrame that now owns `buf`.
    unsafe {
        let f = out.as_mut_ptr();
        (*f).format = ff::ffi::AVPixelFormat::AV_PIX_FMT_CUDA as i32;
        (*f).width = w as i32;
        (*f).height = h as i32;
        (*f).data[0] = y as *mut u8;
        (*f).data[1] = uv as *mut u8;
        (*f).linesize[0] = pitch as i32;
        (*f).linesize[1] = pitch as i32;
        (*f).buf[0] = buf;
    }
    Ok(out)
}

/// The `DeviceFrame` behind a frame from [`wrap`], if it is one.
pub fn device_frame(frame: &ff::frame::Video) -> Option<&DeviceFrame> {
    if frame.format() != Pixel::CUDA {
        return None;
    }
    // SAFETY: a CUDA frame without a hardware frames context is one of
    // ours (FFmpeg's own always carry one): its buf[0] was made by `wrap`
    // around a DeviceFrame, alive as long as `frame`.
    unsafe {
        let f = frame.as_ptr();
        let b = (*f).buf[0];
        if b.is_null() || !(*f).hw_frames_ctx.is_null() || !(*b).data.is_null() {
            return None;
        }
        let opaque = ff::ffi::av_buffer_get_opaque(b);
        (!opaque.is_null()).then(|| &*opaque.cast::<DeviceFrame>())
    }
}

/// A new reference to the same device frame (no copy), for repeated frames.
pub fn share(frame: &ff::frame::Video) -> Result<ff::frame::Video> {
    // SAFETY: av_frame_clone refs every buffer; the result is owned by us.
    let p = unsafe { ff::ffi::av_frame_clone(frame.as_ptr()) };
    if p.is_null() {
        return Err(MediaError::Device {
            op: "referencing a device frame",
            reason: "out of memory".into(),
        });
    }
    // SAFETY: `p` is a valid, owned AVFrame.
    Ok(unsafe { ff::frame::Video::wrap(p) })
}

/// Downloads an NV12 device frame into a host YUV420P frame (what the CPU
/// encoder and the poster take).
pub fn download(stream: &CudaStream, buf: &DeviceBuf) -> Result<ff::frame::Video> {
    let (w, cw) = (buf.width as usize, (buf.width as usize).div_ceil(2));
    let (y, uv) = hardware::nvidia::memory::download_nv12(stream, buf)?;
    let mut out = ff::frame::Video::new(Pixel::YUV420P, buf.width, buf.height);
    let ls = out.stride(0);
    for (r, row) in y.chunks_exact(w).enumerate() {
        out.data_mut(0)[r * ls..r * ls + w].copy_from_slice(row);
    }
    let (lu, lv) = (out.stride(1), out.stride(2));
    for (r, row) in uv.chunks_exact(cw * 2).enumerate() {
        for (c, pair) in row.chunks_exact(2).enumerate() {
            out.data_mut(1)[r * lu + c] = pair[0];
            out.data_mut(2)[r * lv + c] = pair[1];
        }
    }
    Ok(out)
}
