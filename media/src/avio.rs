//! A libavformat input over a chain of byte sources: a CMAF track is an
//! `init.mp4` followed by its `.m4s` segments, and read back to back they
//! are one fragmented MP4. A custom `AVIOContext` reads the chain in place
//! (files on disk, or bytes the caller holds) so nothing is concatenated
//! into a temporary file first, and a hundred-segment track costs no copy.

use std::ffi::{c_int, c_void, CString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use ffmpeg_next as ff;

use crate::error::{Location, MediaError, Result};

const IO_BUFFER: usize = 1 << 16;
/// `whence` flags of libavformat's seek callback (avio.h).
const AVSEEK_SIZE: c_int = 0x10000;
const AVSEEK_FORCE: c_int = 0x20000;

/// One piece of the chain.
pub(crate) enum Part<'a> {
    File(PathBuf),
    Bytes(&'a [u8]),
}

/// The chain as one seekable byte stream.
struct Chain<'a> {
    parts: Vec<Part<'a>>,
    /// Start offset of each part; the last entry is the total length.
    starts: Vec<u64>,
    pos: u64,
    /// The file part currently open and its index.
    open: Option<(usize, File)>,
    /// The first I/O failure, reported instead of libavformat's bare EIO.
    failure: Option<MediaError>,
}

impl<'a> Chain<'a> {
    fn new(parts: Vec<Part<'a>>) -> Result<Self> {
        let mut starts = vec![0u64];
        for part in &parts {
            let len = match part {
                Part::File(path) => std::fs::metadata(path)
                    .map_err(|e| MediaError::io("reading", path, e))?
                    .len(),
                Part::Bytes(b) => b.len() as u64,
            };
            starts.push(starts.last().copied().unwrap_or(0) + len);
        }
        Ok(Self {
            parts,
            starts,
            pos: 0,
            open: None,
            failure: None,
        })
    }

    fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Reads from the current position, never across a part boundary.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len() || buf.is_empty() {
            return Ok(0);
        }
        // The last part starting at or before `pos` that is not empty.
        let i = self.starts.partition_point(|&s| s <= self.pos) - 1;
        let offset = self.pos - self.starts[i];
        let left = (self.starts[i + 1] - self.pos) as usize;
        let want = buf.len().min(left);
        let n = match &self.parts[i] {
            Part::Bytes(b) => {
                let from = offset as usize;
                buf[..want].copy_from_slice(&b[from..from + want]);
                want
            }
            Part::File(path) => {
                if self.open.as_ref().map(|(j, _)| *j) != Some(i) {
                    self.open = Some((i, File::open(path)?));
                }
                let (_, file) = self.open.as_mut().expect("opened above");
                file.seek(SeekFrom::Start(offset))?;
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than when the read began", path.display()),
                    ));
                }
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }

    fn path_at(&self, pos: u64) -> PathBuf {
        let i = self
            .starts
            .partition_point(|&s| s <= pos)
            .saturating_sub(1)
            .min(self.parts.len().saturating_sub(1));
        match self.parts.get(i) {
            Some(Part::File(p)) => p.clone(),
            Some(Part::Bytes(_)) | None => PathBuf::from("<memory>"),
        }
    }
}

unsafe extern "C" fn read_chain(opaque: *mut c_void, buf: *mut u8, size: c_int) -> c_int {
    // SAFETY: `opaque` is the input's boxed chain, alive while the context
    // is; libavformat hands a writable buffer of `size` bytes.
    let (chain, out) = unsafe {
        (
            &mut *opaque.cast::<Chain<'_>>(),
            std::slice::from_raw_parts_mut(buf, size.max(0) as usize),
        )
    };
    match chain.read(out) {
        Ok(0) => ff::ffi::AVERROR_EOF,
        Ok(n) => n as c_int,
        Err(e) => {
            let path = chain.path_at(chain.pos);
            chain
                .failure
                .get_or_insert_with(|| MediaError::io("reading", &path, e));
            ff::ffi::AVERROR(ff::ffi::EIO)
        }
    }
}

unsafe extern "C" fn seek_chain(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as in `read_chain`.
    let chain = unsafe { &mut *opaque.cast::<Chain<'_>>() };
    let len = chain.len() as i64;
    if whence & AVSEEK_SIZE != 0 {
        return len;
    }
    let to = match whence & !AVSEEK_FORCE {
        libc_seek::SET => offset,
        libc_seek::CUR => chain.pos as i64 + offset,
        libc_seek::END => len + offset,
        _ => return i64::from(ff::ffi::AVERROR(ff::ffi::EINVAL)),
    };
    if to < 0 {
        return i64::from(ff::ffi::AVERROR(ff::ffi::EINVAL));
    }
    chain.pos = to as u64;
    to
}

/// `SEEK_SET`/`SEEK_CUR`/`SEEK_END`, the values libavformat passes through.
mod libc_seek {
    pub const SET: i32 = 0;
    pub const CUR: i32 = 1;
    pub const END: i32 = 2;
}

/// An open demuxer over a chain. Derefs to `ff::format::context::Input`.
pub(crate) struct ChainInput<'a> {
    input: Option<ff::format::context::Input>,
    io: *mut ff::ffi::AVIOContext,
    chain: *mut Chain<'a>,
    /// What error messages name: the track's init segment.
    pub name: PathBuf,
    _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: the context, its I/O and the chain are only touched through
// `&mut self` (or `&self` for reads of stream metadata).
unsafe impl Send for ChainInput<'_> {}

impl<'a> ChainInput<'a> {
    /// Opens `parts` read back to back as one MP4. `name` is what errors
    /// report as the file.
    pub fn open(parts: Vec<Part<'a>>, name: &Path) -> Result<Self> {
        crate::init();
        let at = || Location {
            file: name.to_owned(),
            ..Default::default()
        };
        let chain = Box::into_raw(Box::new(Chain::new(parts)?));
        let mut me = Self {
            input: None,
            io: std::ptr::null_mut(),
            chain,
            name: name.to_owned(),
            _borrow: PhantomData,
        };
        // SAFETY: plain allocations; each is owned by `me` (freed in Drop)
        // or freed here on failure. avformat_open_input frees the format
        // context itself when it fails, and never our custom I/O.
        unsafe {
            let buf = ff::ffi::av_malloc(IO_BUFFER).cast::<u8>();
            if buf.is_null() {
                return Err(MediaError::ffmpeg_at(
                    "allocating demuxer I/O",
                    at(),
                    ff::Error::from(ff::ffi::AVERROR(ff::ffi::ENOMEM)),
                ));
            }
            me.io = ff::ffi::avio_alloc_context(
                buf,
                IO_BUFFER as c_int,
                0,
                chain.cast(),
                Some(read_chain),
                None,
                Some(seek_chain),
            );
            if me.io.is_null() {
                ff::ffi::av_free(buf.cast());
                return Err(MediaError::ffmpeg_at(
                    "allocating demuxer I/O",
                    at(),
                    ff::Error::from(ff::ffi::AVERROR(ff::ffi::ENOMEM)),
                ));
            }
            let mut ctx = ff::ffi::avformat_alloc_context();
            if ctx.is_null() {
                return Err(MediaError::ffmpeg_at(
                    "allocating the demuxer",
                    at(),
                    ff::Error::from(ff::ffi::AVERROR(ff::ffi::ENOMEM)),
                ));
            }
            (*ctx).pb = me.io;
            (*ctx).flags |= ff::ffi::AVFMT_FLAG_CUSTOM_IO;
            // Our own output: no probing, the MP4 demuxer it is.
            let mp4 = CString::new("mp4").expect("no NUL");
            let format = ff::ffi::av_find_input_format(mp4.as_ptr());
            let r = ff::ffi::avformat_open_input(
                &mut ctx,
                std::ptr::null(),
                format,
                std::ptr::null_mut(),
            );
            if r < 0 {
                return Err(me.failure_or(MediaError::ffmpeg_at(
                    "opening the track",
                    at(),
                    ff::Error::from(r),
                )));
            }
            me.input = Some(ff::format::context::Input::wrap(ctx));
            let r = ff::ffi::avformat_find_stream_info(ctx, std::ptr::null_mut());
            if r < 0 {
                return Err(me.failure_or(MediaError::ffmpeg_at(
                    "reading the track's streams",
                    at(),
                    ff::Error::from(r),
                )));
            }
        }
        Ok(me)
    }

    /// The I/O failure behind a libav* error, if there was one: it names
    /// the file that could not be read.
    pub fn failure_or(&mut self, e: MediaError) -> MediaError {
        // SAFETY: the chain lives until Drop.
        unsafe { (*self.chain).failure.take() }.unwrap_or(e)
    }

    /// Reads the next packet; `None` at the end of the chain.
    pub fn read_packet(&mut self) -> Result<Option<ff::Packet>> {
        let mut packet = ff::Packet::empty();
        match packet.read(self) {
            Ok(()) => Ok(Some(packet)),
            Err(ff::Error::Eof) => Ok(None),
            Err(e) => {
                let at = Location {
                    file: self.name.clone(),
                    ..Default::default()
                };
                Err(self.failure_or(MediaError::ffmpeg_at("reading the track", at, e)))
            }
        }
    }

    /// The first stream of `kind`, its index and time base.
    pub fn stream_of(&self, kind: ff::media::Type) -> Option<(usize, ff::Rational)> {
        self.streams()
            .find(|s| s.parameters().medium() == kind)
            .map(|s| (s.index(), s.time_base()))
    }
}

impl std::ops::Deref for ChainInput<'_> {
    type Target = ff::format::context::Input;

    fn deref(&self) -> &Self::Target {
        self.input.as_ref().expect("open until Drop")
    }
}

impl std::ops::DerefMut for ChainInput<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.input.as_mut().expect("open until Drop")
    }
}

impl Drop for ChainInput<'_> {
    fn drop(&mut self) {
        // The demuxer first: with AVFMT_FLAG_CUSTOM_IO it leaves our I/O
        // alone, which is then freed with its (possibly reallocated)
        // buffer, and the chain last, once nothing can call back into it.
        drop(self.input.take());
        // SAFETY: `io` and `chain` were allocated in `open` and are freed
        // once, here.
        unsafe {
            if !self.io.is_null() {
                ff::ffi::av_freep((&mut (*self.io).buffer as *mut *mut u8).cast());
                ff::ffi::avio_context_free(&mut self.io);
            }
            drop(Box::from_raw(self.chain));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_reads_and_seeks_across_parts() {
        let dir = std::env::temp_dir().join(format!("avio-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("middle");
        std::fs::write(&file, b"defgh").unwrap();
        let mut c = Chain::new(vec![
            Part::Bytes(b"abc"),
            Part::File(file.clone()),
            Part::Bytes(b""),
            Part::Bytes(b"ij"),
        ])
        .unwrap();
        assert_eq!(c.len(), 10);
        let mut all = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 4);
            all.extend_from_slice(&buf[..n]);
        }
        assert_eq!(all, b"abcdefghij");
        c.pos = 4;
        let n = c.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"efgh");
        c.pos = 8;
        assert_eq!(c.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"ij");
        assert_eq!(c.path_at(5), file);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
