//! One CMAF track muxed to memory, a fragment at a time: libavformat's MP4
//! muxer (`empty_moov`, `frag_custom`) writes through a custom `AVIOContext`
//! into a buffer. What the header writes is the init segment; what one
//! fragment flush writes (moof + mdat) is one media segment. Nothing grows
//! on disk however long a channel runs.

use std::ffi::{c_int, c_void, CString};

use ff::Rational;
use ffmpeg_next as ff;

use crate::error::{MediaError, Result};

const IO_BUFFER: usize = 1 << 16;

/// A finished media segment of one track.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub bytes: Vec<u8>,
    /// First and end timestamp, in the track's packet time base.
    pub start: i64,
    pub end: i64,
}

pub struct FragmentMuxer {
    octx: ff::format::context::Output,
    /// Where the custom I/O writes. Boxed: libavformat holds a pointer to
    /// the `Vec` itself, which must not move when the muxer does.
    #[allow(clippy::box_collection)]
    sink: Box<Vec<u8>>,
    packet_tb: Rational,
    stream_tb: Rational,
    init: Vec<u8>,
    start: Option<i64>,
    end: i64,
}

// SAFETY: the format context and its I/O are only touched through &mut self.
unsafe impl Send for FragmentMuxer {}

unsafe extern "C" fn write_sink(opaque: *mut c_void, buf: *mut u8, size: c_int) -> c_int {
    if size <= 0 {
        return 0;
    }
    // SAFETY: `opaque` is the muxer's boxed Vec, alive while the context is;
    // libavformat hands a buffer of `size` bytes.
    unsafe {
        let sink = &mut *opaque.cast::<Vec<u8>>();
        sink.extend_from_slice(std::slice::from_raw_parts(buf, size as usize));
    }
    size
}

fn ff_err(op: &'static str, code: c_int) -> MediaError {
    MediaError::ffmpeg(op, ff::Error::from(code))
}

impl FragmentMuxer {
    /// A muxer for one stream with `parameters` (SPS/PPS or the AAC config
    /// as extradata) whose packets come in `packet_tb`.
    pub fn new(parameters: &ff::codec::Parameters, packet_tb: Rational) -> Result<Self> {
        let mut sink = Box::new(Vec::new());
        let format = CString::new("mp4").expect("no NUL");
        let mut ptr = std::ptr::null_mut();
        // SAFETY: allocation of an output context by format name.
        let r = unsafe {
            ff::ffi::avformat_alloc_output_context2(
                &mut ptr,
                std::ptr::null_mut(),
                format.as_ptr(),
                std::ptr::null(),
            )
        };
        if r < 0 || ptr.is_null() {
            return Err(ff_err("creating the MP4 muxer", r));
        }
        // SAFETY: a fresh output context we own from here on (dropped by
        // Output, after Drop below detached the custom I/O).
        let octx = unsafe { ff::format::context::Output::wrap(ptr) };
        // SAFETY: the buffer is handed to the AVIOContext, which owns it (freed
        // in Drop); the sink outlives the context.
        unsafe {
            let buf = ff::ffi::av_malloc(IO_BUFFER).cast::<u8>();
            if buf.is_null() {
                return Err(ff_err(
                    "allocating muxer I/O",
                    ff::ffi::AVERROR(ff::ffi::ENOMEM),
                ));
            }
            let io = ff::ffi::avio_alloc_context(
                buf,
                IO_BUFFER as c_int,
                1,
                (&mut *sink as *mut Vec<u8>).cast(),
                None,
                Some(write_sink),
                None,
            );
            if io.is_null() {
                ff::ffi::av_free(buf.cast());
                return Err(ff_err(
                    "allocating muxer I/O",
                    ff::ffi::AVERROR(ff::ffi::ENOMEM),
                ));
            }
            (*ptr).pb = io;
            (*ptr).flags |= ff::ffi::AVFMT_FLAG_CUSTOM_IO;
        }
        let mut muxer = Self {
            octx,
            sink,
            packet_tb,
            stream_tb: packet_tb,
            init: Vec::new(),
            start: None,
            end: i64::MIN,
        };
        {
            let mut st = muxer
                .octx
                .add_stream(None::<ff::Codec>)
                .map_err(|e| MediaError::ffmpeg("adding a stream", e))?;
            st.set_parameters(parameters.clone());
            st.set_time_base(packet_tb);
            // SAFETY: codecpar belongs to the stream just added; a zero tag lets
            // the muxer pick the sample entry (avc1/hvc1/mp4a).
            unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
        }
        muxer
            .octx
            .write_header_with(crate::cmaf::muxer_options())
            .map_err(|e| MediaError::ffmpeg("writing the MP4 header", e))?;
        muxer.flush_io();
        muxer.init = std::mem::take(&mut *muxer.sink);
        muxer.stream_tb = muxer.octx.stream(0).expect("added above").time_base();
        Ok(muxer)
    }

    /// `ftyp` + `moov`: the track's `EXT-X-MAP`.
    pub fn init_segment(&self) -> &[u8] {
        &self.init
    }

    /// Whether samples are waiting for the next [`cut`](Self::cut).
    pub fn has_samples(&self) -> bool {
        self.start.is_some()
    }

    pub fn write(&mut self, mut packet: ff::Packet, default_duration: i64) -> Result<()> {
        let pts = packet.pts().unwrap_or(self.end.max(0));
        self.start.get_or_insert(pts);
        let dur = if packet.duration() > 0 {
            packet.duration()
        } else {
            default_duration
        };
        self.end = self.end.max(pts + dur);
        packet.set_stream(0);
        packet.rescale_ts(self.packet_tb, self.stream_tb);
        packet
            .write(&mut self.octx)
            .map(|_| ())
            .map_err(|e| MediaError::ffmpeg("muxing", e))
    }

    /// Closes the current fragment and returns it, or `None` if it is empty.
    pub fn cut(&mut self) -> Result<Option<Fragment>> {
        let Some(start) = self.start.take() else {
            return Ok(None);
        };
        // SAFETY: a NULL packet asks the muxer to close the current fragment
        // (frag_custom).
        let r = unsafe { ff::ffi::av_write_frame(self.octx.as_mut_ptr(), std::ptr::null_mut()) };
        if r < 0 {
            return Err(ff_err("closing a fragment", r));
        }
        self.flush_io();
        Ok(Some(Fragment {
            bytes: std::mem::take(&mut *self.sink),
            start,
            end: self.end,
        }))
    }

    fn flush_io(&mut self) {
        // SAFETY: pb is our custom context, alive until Drop.
        unsafe { ff::ffi::avio_flush((*self.octx.as_mut_ptr()).pb) };
    }
}

impl Drop for FragmentMuxer {
    fn drop(&mut self) {
        // SAFETY: detach and free our custom I/O before `Output` drops: its
        // destructor would avio_close() it, which treats `opaque` as a
        // URLContext.
        unsafe {
            let ctx = self.octx.as_mut_ptr();
            let mut io = (*ctx).pb;
            (*ctx).pb = std::ptr::null_mut();
            if !io.is_null() {
                ff::ffi::av_freep((&mut (*io).buffer as *mut *mut u8).cast());
                ff::ffi::avio_context_free(&mut io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real H.264 stream through the muxer: an init segment with `moov`,
    /// then one `moof` fragment per cut, each starting on a key frame.
    #[test]
    fn fragments_start_with_moof_and_the_init_has_moov() {
        crate::init();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/media/bbb_320x240_h264_aac_10s.mp4");
        if !src.exists() {
            panic!("{} is missing", src.display());
        }
        let mut ictx = ff::format::input(&src).unwrap();
        let st = ictx.streams().best(ff::media::Type::Video).unwrap();
        let (index, params, tb) = (st.index(), st.parameters(), st.time_base());
        let mut mux = FragmentMuxer::new(&params, tb).unwrap();
        assert!(has_box(mux.init_segment(), b"moov"));
        let mut fragments = Vec::new();
        for (s, p) in ictx.packets() {
            if s.index() != index {
                continue;
            }
            if p.is_key() && mux.has_samples() {
                fragments.push(mux.cut().unwrap().unwrap());
            }
            mux.write(p, 1).unwrap();
        }
        fragments.push(mux.cut().unwrap().unwrap());
        assert!(fragments.len() >= 2, "{} fragments", fragments.len());
        for f in &fragments {
            assert_eq!(&f.bytes[4..8], b"moof");
            assert!(f.end > f.start);
        }
        assert!(mux.cut().unwrap().is_none());
    }

    fn has_box(data: &[u8], name: &[u8; 4]) -> bool {
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            if &data[at + 4..at + 8] == name {
                return true;
            }
            if size < 8 {
                return false;
            }
            at += size;
        }
        false
    }
}
