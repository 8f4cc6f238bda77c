//! CMAF packaging of one track: libavformat's MP4 muxer writes a fragmented
//! file (`empty_moov`, one fragment per segment, flushed by us exactly on the
//! aligned IDRs), which is then split on its top-level boxes into `init.mp4`
//! (ftyp+moov) and one `N.m4s` per fragment (moof+mdat).
//!
//! Every track presents its first sample at time zero. The muxer re-bases a
//! track so its first *decode* time is zero; a track whose first sample is
//! decoded before it is shown (H.264 with B-frames: the reorder delay) or
//! whose first samples are not shown at all (AAC priming) gets one edit in
//! its `init.mp4` (`elst`, `media_time` = that offset, ISO/IEC 14496-12
//! 8.6.6, as CMAF allows) so players start it at zero instead of leaving a
//! hole before the first picture.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ff::Rational;
use ffmpeg_next as ff;

use crate::error::{Location, MediaError, Result};

/// One finished segment of a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub uri: String,
    pub duration_secs: f64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub dir: PathBuf,
    pub init_uri: String,
    pub segments: Vec<Segment>,
    /// RFC 6381 codec string, e.g. `avc1.640028`.
    pub codec: String,
}

/// Where a track's segments start, in seconds as exact fractions.
#[derive(Debug, Clone, PartialEq)]
pub enum Cuts {
    /// At each multiple of this duration.
    Every((i64, i64)),
    /// At these instants (after zero, ascending): the ladder's segment starts
    /// when its IDRs follow the source's key frames.
    At(std::sync::Arc<[(i64, i64)]>),
}

/// Writes one track's packets and cuts a segment at the first cuttable packet
/// (a keyframe) at or after each cut instant (less half a packet, so a
/// remuxed track whose timestamps jitter by a tick still cuts where every
/// encoded rung does).
pub struct TrackWriter {
    octx: ff::format::context::Output,
    dir: PathBuf,
    tmp: PathBuf,
    codec: String,
    packet_tb: Rational,
    stream_tb: Rational,
    cuts: Cuts,
    /// Duration assumed for packets that carry none (in `packet_tb`).
    default_duration: i64,
    next_cut: i64,
    starts: Vec<i64>,
    end: i64,
    /// The first packet's decode time: how far before zero decoding starts.
    first_dts: Option<i64>,
}

fn ff_err(op: &'static str, path: &Path, source: ff::Error) -> MediaError {
    MediaError::ffmpeg_at(
        op,
        Location {
            file: path.to_owned(),
            ..Location::default()
        },
        source,
    )
}

impl TrackWriter {
    pub fn create(
        dir: &Path,
        parameters: ff::codec::Parameters,
        packet_tb: Rational,
        cuts: Cuts,
        default_duration: i64,
        codec: String,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| MediaError::io("creating", dir, e))?;
        let tmp = dir.join("track.fmp4.tmp");
        let mut octx = ff::format::output_as(&tmp, "mp4")
            .map_err(|e| ff_err("creating the muxer", &tmp, e))?;
        {
            let mut st = octx
                .add_stream(None::<ff::Codec>)
                .map_err(|e| ff_err("adding a stream", &tmp, e))?;
            st.set_parameters(parameters);
            st.set_time_base(packet_tb);
            // SAFETY: codecpar belongs to the stream we just added. A zero tag
            // lets the muxer pick the MP4 sample entry (avc1/mp4a).
            unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
        }
        octx.write_header_with(muxer_options())
            .map_err(|e| ff_err("writing the MP4 header", &tmp, e))?;
        let stream_tb = octx.stream(0).expect("added above").time_base();
        Ok(Self {
            octx,
            dir: dir.to_owned(),
            tmp,
            codec,
            packet_tb,
            stream_tb,
            cuts,
            default_duration,
            next_cut: 0,
            starts: Vec::new(),
            end: i64::MIN,
            first_dts: None,
        })
    }

    /// Earliest packet timestamp (in `packet_tb`) that may start segment `k`.
    fn cut_point(&self, k: i64) -> i64 {
        let (n, d) = match &self.cuts {
            Cuts::Every((n, d)) => (k * n, *d),
            Cuts::At(at) => match at.get(k as usize - 1) {
                Some(&t) => t,
                None => return i64::MAX,
            },
        };
        // n/d seconds in packet_tb, rounded up, in exact integer maths,
        // less half a packet.
        let num = i128::from(n) * i128::from(self.packet_tb.denominator());
        let den = i128::from(d) * i128::from(self.packet_tb.numerator());
        ((num + den - 1) / den) as i64 - self.default_duration / 2
    }

    pub fn write(&mut self, mut packet: ff::Packet) -> Result<()> {
        let pts = packet.pts().unwrap_or(self.end.max(0));
        if self.first_dts.is_none() {
            self.first_dts = Some(packet.dts().unwrap_or(pts));
        }
        if self.starts.is_empty() {
            self.starts.push(pts);
            self.advance_cut(pts);
        } else if packet.is_key() && pts >= self.next_cut {
            self.flush_fragment()?;
            self.starts.push(pts);
            self.advance_cut(pts);
        }
        let dur = if packet.duration() > 0 {
            packet.duration()
        } else {
            self.default_duration
        };
        self.end = self.end.max(pts + dur);
        packet.set_stream(0);
        packet.rescale_ts(self.packet_tb, self.stream_tb);
        packet
            .write(&mut self.octx)
            .map_err(|e| ff_err("muxing", &self.tmp, e))?;
        Ok(())
    }

    fn advance_cut(&mut self, pts: i64) {
        let mut k = 1;
        while self.cut_point(k) <= pts {
            k += 1;
        }
        self.next_cut = self.cut_point(k);
    }

    fn flush_fragment(&mut self) -> Result<()> {
        // SAFETY: a NULL packet asks the muxer to close the current fragment (frag_custom).
        let r = unsafe { ff::ffi::av_write_frame(self.octx.as_mut_ptr(), std::ptr::null_mut()) };
        if r < 0 {
            return Err(ff_err("closing a fragment", &self.tmp, ff::Error::from(r)));
        }
        Ok(())
    }

    /// Closes the file and splits it into `init.mp4` and `N.m4s`.
    pub fn finish(mut self) -> Result<Track> {
        if self.starts.is_empty() {
            return Err(MediaError::Packaging {
                path: self.tmp.clone(),
                reason: "the track has no samples".into(),
            });
        }
        self.flush_fragment()?;
        self.octx
            .write_trailer()
            .map_err(|e| ff_err("finishing the MP4", &self.tmp, e))?;
        drop(self.octx);
        // The muxer moved the first decode time to zero; the edit puts the
        // sample presented at zero back at zero.
        let lead = self.first_dts.map_or(0, |d| (-d).max(0));
        let media_time = ff::Rescale::rescale(&lead, self.packet_tb, self.stream_tb);
        let media_time = u32::try_from(media_time).map_err(|_| MediaError::Packaging {
            path: self.tmp.clone(),
            reason: format!("a start offset of {lead} ticks does not fit an edit list"),
        })?;
        // Presentation starts at zero (or later, for a track that starts late).
        self.starts[0] = self.starts[0].max(0);
        let tb = f64::from(self.packet_tb);
        let durations: Vec<f64> = self
            .starts
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let next = self.starts.get(i + 1).copied().unwrap_or(self.end);
                round_micros((next - s) as f64 * tb)
            })
            .collect();
        let sizes = split(&self.tmp, &self.dir, durations.len(), media_time)?;
        std::fs::remove_file(&self.tmp).map_err(|e| MediaError::io("removing", &self.tmp, e))?;
        let segments = durations
            .into_iter()
            .zip(sizes)
            .enumerate()
            .map(|(i, (duration_secs, bytes))| Segment {
                uri: segment_name(i),
                duration_secs,
                bytes,
            })
            .collect();
        Ok(Track {
            dir: self.dir,
            init_uri: "init.mp4".into(),
            segments,
            codec: self.codec,
        })
    }
}

/// The MP4 muxer's settings for CMAF: one fragment per flush, an empty
/// `moov`, `tfdt`-based fragments, no trailer.
pub(crate) fn muxer_options() -> ff::Dictionary<'static> {
    let mut opts = ff::Dictionary::new();
    // The muxer re-bases every track so its first decode time is zero and,
    // with empty_moov, writes no edit list: `split` adds the one a track
    // needs (the live ladder has no B-frames and needs none).
    opts.set(
        "movflags",
        "+frag_custom+empty_moov+default_base_moof+skip_trailer",
    );
    opts.set("use_editlist", "0");
    // No encoder/version strings or wall-clock times: identical input, identical bytes.
    opts.set("fflags", "+bitexact");
    opts
}

pub fn segment_name(i: usize) -> String {
    format!("{i}.m4s")
}

fn round_micros(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Splits a fragmented MP4 into init + `expected` media segments; returns
/// each segment's size. A non-zero `media_time` (in the track's timescale)
/// becomes the track's edit list.
fn split(file: &Path, dir: &Path, expected: usize, media_time: u32) -> Result<Vec<u64>> {
    let bad = |reason: String| MediaError::Packaging {
        path: file.to_owned(),
        reason,
    };
    let read_err = |e| MediaError::io("reading", file, e);
    let mut r = BufReader::with_capacity(
        1 << 20,
        File::open(file).map_err(|e| MediaError::io("opening", file, e))?,
    );
    let init_path = dir.join("init.mp4");
    let mut init = Some(create(&init_path)?);
    // The open segment, its size, and whether its last box was a prefix
    // (styp/sidx/prft) that belongs to the moof that follows.
    let mut current: Option<(BufWriter<File>, u64, bool)> = None;
    let mut sizes = Vec::with_capacity(expected);
    let mut copy_buf = vec![0u8; 1 << 16];
    while let Some((kind, header, size)) = read_box_header(&mut r).map_err(read_err)? {
        if kind == *b"moov" && media_time > 0 {
            let sink = init
                .as_mut()
                .ok_or_else(|| bad("`moov` box after the first fragment".into()))?;
            if header.len() != 8 {
                return Err(bad("a 64-bit `moov` box".into()));
            }
            let mut moov = header.clone();
            moov.resize(size as usize, 0);
            r.read_exact(&mut moov[header.len()..]).map_err(read_err)?;
            let moov = with_edit(&moov, media_time)
                .ok_or_else(|| bad("the `moov` box has no `trak` with a `tkhd` to edit".into()))?;
            sink.write_all(&moov)
                .map_err(|e| MediaError::io("writing", &init_path, e))?;
            continue;
        }
        let sink = match &kind {
            b"ftyp" | b"moov" => init.as_mut().ok_or_else(|| {
                bad(format!(
                    "`{}` box after the first fragment",
                    String::from_utf8_lossy(&kind)
                ))
            })?,
            b"styp" | b"sidx" | b"prft" | b"moof" | b"mdat" | b"emsg" => {
                if let Some(mut w) = init.take() {
                    w.flush()
                        .map_err(|e| MediaError::io("writing", &init_path, e))?;
                }
                let prefix = matches!(&kind, b"styp" | b"sidx" | b"prft");
                let continues_prefix = current.as_ref().is_some_and(|c| c.2);
                if (prefix || kind == *b"moof") && !continues_prefix {
                    if let Some((mut w, n, _)) = current.take() {
                        w.flush().map_err(|e| MediaError::io("writing", dir, e))?;
                        sizes.push(n);
                    }
                    current = Some((create(&dir.join(segment_name(sizes.len())))?, 0, false));
                }
                let (w, n, open_prefix) = current
                    .as_mut()
                    .ok_or_else(|| bad("media data before any moof".into()))?;
                *n += size;
                *open_prefix = prefix;
                w
            }
            b"mfra" | b"free" | b"skip" => {
                skip(&mut r, size - header.len() as u64).map_err(read_err)?;
                continue;
            }
            other => {
                return Err(bad(format!(
                    "unexpected top-level box `{}`",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        sink.write_all(&header)
            .map_err(|e| MediaError::io("writing", dir, e))?;
        copy_exact(&mut r, sink, size - header.len() as u64, &mut copy_buf).map_err(read_err)?;
    }
    if let Some((mut w, n, _)) = current.take() {
        w.flush().map_err(|e| MediaError::io("writing", dir, e))?;
        sizes.push(n);
    }
    if sizes.len() != expected {
        return Err(bad(format!(
            "expected {expected} fragments, the muxer wrote {}",
            sizes.len()
        )));
    }
    Ok(sizes)
}

/// `moov` (one track, 32-bit box sizes as the muxer writes them) with an
/// `edts`/`elst` inserted after the track's `tkhd`: one edit, the whole
/// track (duration 0: not known up front in a fragmented file) from
/// `media_time`, at normal rate.
fn with_edit(moov: &[u8], media_time: u32) -> Option<Vec<u8>> {
    let child = |buf: &[u8], from: usize, kind: &[u8; 4]| -> Option<(usize, usize)> {
        let mut at = from;
        while at + 8 <= buf.len() {
            let size = u32::from_be_bytes(buf[at..at + 4].try_into().ok()?) as usize;
            if size < 8 || at + size > buf.len() {
                return None;
            }
            if &buf[at + 4..at + 8] == kind {
                return Some((at, size));
            }
            at += size;
        }
        None
    };
    let (trak, trak_size) = child(moov, 8, b"trak")?;
    let (tkhd, tkhd_size) = child(&moov[..trak + trak_size], trak + 8, b"tkhd")?;
    let mut edts = Vec::with_capacity(36);
    edts.extend_from_slice(&36u32.to_be_bytes());
    edts.extend_from_slice(b"edts");
    edts.extend_from_slice(&28u32.to_be_bytes());
    edts.extend_from_slice(b"elst");
    edts.extend_from_slice(&0u32.to_be_bytes()); // version 0, no flags
    edts.extend_from_slice(&1u32.to_be_bytes()); // one entry
    edts.extend_from_slice(&0u32.to_be_bytes()); // segment_duration
    edts.extend_from_slice(&media_time.to_be_bytes());
    edts.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // media_rate 1.0
    let at = tkhd + tkhd_size;
    let mut out = Vec::with_capacity(moov.len() + edts.len());
    out.extend_from_slice(&moov[..at]);
    out.extend_from_slice(&edts);
    out.extend_from_slice(&moov[at..]);
    let grow = |out: &mut Vec<u8>, pos: usize| {
        let size = u32::from_be_bytes(out[pos..pos + 4].try_into().expect("4 bytes")) + 36;
        out[pos..pos + 4].copy_from_slice(&size.to_be_bytes());
    };
    grow(&mut out, 0);
    grow(&mut out, trak);
    Some(out)
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| MediaError::io("creating", path, e))
}

/// Reads an ISO-BMFF box header: (type, raw header bytes, total box size).
/// A box's type, its raw header bytes, and its total size.
type BoxHeader = ([u8; 4], Vec<u8>, u64);

fn read_box_header(r: &mut impl Read) -> std::io::Result<Option<BoxHeader>> {
    let mut h = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut h[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let kind = [h[4], h[5], h[6], h[7]];
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let mut header = h.to_vec();
    let size = match size32 {
        1 => {
            let mut ext = [0u8; 8];
            r.read_exact(&mut ext)?;
            header.extend_from_slice(&ext);
            u64::from_be_bytes(ext)
        }
        0 => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "box extends to end of file",
            ))
        }
        n => u64::from(n),
    };
    if size < header.len() as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "box smaller than its header",
        ));
    }
    Ok(Some((kind, header, size)))
}

fn copy_exact(
    r: &mut impl Read,
    w: &mut impl Write,
    mut n: u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    while n > 0 {
        let chunk = buf.len().min(n as usize);
        r.read_exact(&mut buf[..chunk])?;
        w.write_all(&buf[..chunk])?;
        n -= chunk as u64;
    }
    Ok(())
}

fn skip(r: &mut impl Read, n: u64) -> std::io::Result<()> {
    std::io::copy(&mut r.take(n), &mut std::io::sink()).map(|_| ())
}

/// RFC 6381 `avc1.PPCCLL` from H.264 extradata (avcC or Annex B).
pub fn avc_codec_string(extradata: &[u8]) -> Option<String> {
    let sps = if extradata.first() == Some(&1) && extradata.len() >= 4 {
        &extradata[1..4]
    } else {
        // Annex B: find the SPS NAL (type 7) after a start code.
        let pos = extradata
            .windows(4)
            .position(|w| w[0..3] == [0, 0, 1] && w[3] & 0x1f == 7)?;
        extradata.get(pos + 4..pos + 7)?
    };
    Some(format!("avc1.{:02x}{:02x}{:02x}", sps[0], sps[1], sps[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_strings_come_from_the_sps() {
        // avcC: version 1, High (100), constraints 0, level 4.0 (40).
        assert_eq!(
            avc_codec_string(&[1, 100, 0, 40, 0xff]).as_deref(),
            Some("avc1.640028")
        );
        // Annex B with a 4-byte start code, SPS NAL header 0x67.
        assert_eq!(
            avc_codec_string(&[0, 0, 0, 1, 0x67, 100, 0, 31, 0xac]).as_deref(),
            Some("avc1.64001f")
        );
        assert_eq!(avc_codec_string(&[0, 0, 1, 0x68, 1, 2, 3]), None);
    }

    #[test]
    fn an_edit_goes_after_tkhd_and_every_enclosing_size_grows() {
        let bx = |kind: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        };
        let tkhd = bx(b"tkhd", &[0; 84]);
        let mdia = bx(b"mdia", &[]);
        let trak = bx(b"trak", &[tkhd.clone(), mdia.clone()].concat());
        let mvhd = bx(b"mvhd", &[0; 100]);
        let moov = bx(b"moov", &[mvhd.clone(), trak.clone()].concat());
        let edited = with_edit(&moov, 1024).unwrap();
        assert_eq!(edited.len(), moov.len() + 36);
        assert_eq!(
            u32::from_be_bytes(edited[..4].try_into().unwrap()) as usize,
            edited.len()
        );
        let trak_at = 8 + mvhd.len();
        assert_eq!(&edited[trak_at + 4..trak_at + 8], b"trak");
        assert_eq!(
            u32::from_be_bytes(edited[trak_at..trak_at + 4].try_into().unwrap()) as usize,
            trak.len() + 36
        );
        let edts_at = trak_at + 8 + tkhd.len();
        assert_eq!(&edited[edts_at + 4..edts_at + 8], b"edts");
        assert_eq!(&edited[edts_at + 12..edts_at + 16], b"elst");
        // entry: duration 0, media_time 1024, rate 1.0
        assert_eq!(
            &edited[edts_at + 24..edts_at + 36],
            &[0, 0, 0, 0, 0, 0, 4, 0, 0, 1, 0, 0]
        );
        assert_eq!(&edited[edts_at + 36..], &mdia[..]);
        assert!(
            with_edit(&bx(b"moov", &mvhd), 1).is_none(),
            "no trak, no edit"
        );
    }

    #[test]
    fn box_headers_parse_including_64_bit_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 16, b'f', b't', b'y', b'p'];
        let (k, h, s) = read_box_header(&mut data).unwrap().unwrap();
        assert_eq!((&k, h.len(), s), (b"ftyp", 8, 16));
        let mut big: &[u8] = &[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 1, 0, 0, 0, 0];
        let (k, h, s) = read_box_header(&mut big).unwrap().unwrap();
        assert_eq!((&k, h.len(), s), (b"mdat", 16, 1 << 32));
        let mut short: &[u8] = &[0, 0, 0, 4, b'b', b'a', b'd', b'!'];
        assert!(read_box_header(&mut short).is_err());
        let mut empty: &[u8] = &[];
        assert!(read_box_header(&mut empty).unwrap().is_none());
    }
}
