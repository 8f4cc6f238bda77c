//! MP4's length-prefixed H.264/HEVC to Annex B, which NVDEC's parser takes
//! (what FFmpeg's `*_mp4toannexb` filters do; Debian's FFmpeg bindings here
//! do not expose the BSF API). Parameter sets from `avcC`/`hvcC` go in front
//! of every key frame, so a stream can start at any IDR.

use crate::error::{MediaError, Result};

const START: [u8; 4] = [0, 0, 0, 1];

pub struct AnnexB {
    /// NAL length field size; `None` when the input is Annex B already.
    length_size: Option<usize>,
    parameter_sets: Vec<u8>,
}

fn bad(reason: &str) -> MediaError {
    MediaError::Device {
        op: "reading the codec configuration for NVDEC",
        reason: reason.into(),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("codec configuration record is truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn nal(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let n = self.u16()?;
        out.extend_from_slice(&START);
        out.extend_from_slice(self.take(n)?);
        Ok(())
    }
}

impl AnnexB {
    /// `hevc` selects the `hvcC` layout, else `avcC`.
    pub fn new(extradata: &[u8], hevc: bool) -> Result<Self> {
        if extradata.first() != Some(&1) {
            return Ok(Self {
                length_size: None,
                parameter_sets: Vec::new(),
            });
        }
        let mut r = Reader(extradata);
        let mut sets = Vec::new();
        let length_size = if hevc {
            r.take(21)?;
            let ls = usize::from(r.u8()? & 3) + 1;
            for _ in 0..r.u8()? {
                r.u8()?; // array completeness + NAL type
                for _ in 0..r.u16()? {
                    r.nal(&mut sets)?;
                }
            }
            ls
        } else {
            r.take(4)?;
            let ls = usize::from(r.u8()? & 3) + 1;
            for _ in 0..(r.u8()? & 0x1f) {
                r.nal(&mut sets)?;
            }
            for _ in 0..r.u8()? {
                r.nal(&mut sets)?;
            }
            ls
        };
        Ok(Self {
            length_size: Some(length_size),
            parameter_sets: sets,
        })
    }

    pub fn convert(&self, packet: &[u8], key: bool) -> Result<Vec<u8>> {
        let Some(ls) = self.length_size else {
            return Ok(packet.to_vec());
        };
        let mut out = Vec::with_capacity(packet.len() + self.parameter_sets.len() + 16);
        if key {
            out.extend_from_slice(&self.parameter_sets);
        }
        let mut rest = packet;
        while !rest.is_empty() {
            if rest.len() < ls {
                return Err(bad("a NAL length runs past the packet"));
            }
            let n = rest[..ls]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            rest = &rest[ls..];
            if rest.len() < n {
                return Err(bad("a NAL unit runs past the packet"));
            }
            out.extend_from_slice(&START);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffmpeg_next as ff;

    /// NAL unit types in an Annex B buffer.
    fn nal_types(b: &[u8], hevc: bool) -> Vec<u8> {
        let mut t = Vec::new();
        let mut i = 0;
        while i + 4 < b.len() {
            if b[i..i + 4] == START {
                t.push(if hevc {
                    (b[i + 4] >> 1) & 0x3f
                } else {
                    b[i + 4] & 0x1f
                });
                i += 4;
            } else {
                i += 1;
            }
        }
        t
    }

    fn first_key_packet(clip: &str) -> (Vec<u8>, Vec<u8>, bool) {
        crate::init();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/media")
            .join(clip);
        let mut ictx = ff::format::input(&path).expect("sample clip");
        let s = ictx.streams().best(ff::media::Type::Video).expect("video");
        let (index, params) = (s.index(), s.parameters());
        let hevc = params.id() == ff::codec::Id::HEVC;
        // SAFETY: reading the extradata the demuxer owns.
        let extra = unsafe {
            let p = params.as_ptr();
            std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec()
        };
        for (stream, packet) in ictx.packets() {
            if stream.index() == index && packet.is_key() {
                return (extra, packet.data().expect("data").to_vec(), hevc);
            }
        }
        panic!("no key frame in {clip}");
    }

    #[test]
    fn h264_from_mp4_gets_start_codes_and_parameter_sets() {
        let (extra, packet, hevc) = first_key_packet("bbb_320x240_h264_aac_10s.mp4");
        assert!(!hevc);
        let a = AnnexB::new(&extra, false).unwrap();
        let out = a.convert(&packet, true).unwrap();
        let types = nal_types(&out, false);
        assert_eq!(&types[..2], &[7, 8], "SPS then PPS first: {types:?}");
        assert!(types.contains(&5), "an IDR slice: {types:?}");
        // Without the key flag only the packet's own NAL units remain.
        let plain = a.convert(&packet, false).unwrap();
        assert_eq!(plain.len() + a.parameter_sets.len(), out.len());
    }

    #[test]
    fn hevc_from_mp4_gets_vps_sps_pps() {
        let (extra, packet, hevc) = first_key_packet("hevc_1080p50_1s.mp4");
        assert!(hevc);
        let out = AnnexB::new(&extra, true)
            .unwrap()
            .convert(&packet, true)
            .unwrap();
        let types = nal_types(&out, true);
        assert_eq!(&types[..3], &[32, 33, 34], "VPS, SPS, PPS: {types:?}");
        assert!(
            types[3..].iter().any(|t| (16..=21).contains(t)),
            "an IRAP slice: {types:?}"
        );
    }

    #[test]
    fn annex_b_input_passes_through_and_damage_is_an_error() {
        let a = AnnexB::new(&[0, 0, 0, 1, 0x67], false).unwrap();
        assert_eq!(
            a.convert(&[0, 0, 1, 0x65, 9], true).unwrap(),
            vec![0, 0, 1, 0x65, 9]
        );
        let (extra, packet, _) = first_key_packet("bbb_320x240_h264_aac_10s.mp4");
        let a = AnnexB::new(&extra, false).unwrap();
        assert!(a.convert(&packet[..packet.len() - 1], false).is_err());
        assert!(AnnexB::new(&extra[..6], false).is_err());
    }
}
