//! NVDEC decode: libavformat packets → Annex B (from the container's
//! avcC/hvcC) → `hardware`'s NVDEC session, which decodes and scales every
//! displayed surface into all rungs in one launch → each frame wrapped as an
//! `AVFrame` → constant frame rate.

use std::collections::VecDeque;

use ff::Rational;
use ffmpeg_next as ff;
use hardware::nvidia::decode::NvdecSession;

use super::annexb::AnnexB;
use super::device;
use crate::backend::{DecodeInput, VideoDecoder};
use crate::error::{MediaError, Result};

fn extradata(params: &ff::codec::Parameters) -> &[u8] {
    // SAFETY: extradata/extradata_size describe one buffer owned by `params`.
    unsafe {
        let p = params.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return &[];
        }
        std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize)
    }
}

pub struct NvdecDecoder {
    session: NvdecSession,
    annexb: AnnexB,
    cfr: Cfr,
    ready: VecDeque<ff::frame::Video>,
}

impl NvdecDecoder {
    pub fn new(gpu: usize, input: DecodeInput<'_>) -> Result<Self> {
        let codec_name = input.parameters.id().name();
        if input.plan.rotation != 0 {
            return Err(MediaError::Device {
                op: "NVDEC decode",
                reason: "rotated sources are turned upright on the CPU".into(),
            });
        }
        let rungs: Vec<(u32, u32)> = input
            .plan
            .rungs
            .iter()
            .map(|r| (r.width, r.height))
            .collect();
        let session = NvdecSession::new(gpu, codec_name, &rungs, input.plan.deinterlace)?;
        let fps = input.plan.frame_rate;
        Ok(Self {
            session,
            annexb: AnnexB::new(extradata(&input.parameters), codec_name == "hevc")?,
            cfr: Cfr::new(input.time_base, Rational::new(fps.0, fps.1)),
            ready: VecDeque::new(),
        })
    }

    fn drain(&mut self) -> Result<()> {
        while let Some(d) = self.session.pop() {
            let frame = device::wrap(d.frame)?;
            self.cfr.push(frame, d.timestamp, &mut self.ready)?;
        }
        Ok(())
    }
}

impl VideoDecoder for NvdecDecoder {
    fn send_packet(&mut self, packet: &ff::Packet) -> Result<()> {
        let Some(data) = packet.data() else {
            return Ok(());
        };
        let data = self.annexb.convert(data, packet.is_key())?;
        self.session.parse(&data, packet.pts())?;
        self.drain()
    }

    fn send_eof(&mut self) -> Result<()> {
        self.session.finish()?;
        self.drain()?;
        self.cfr.finish(&mut self.ready);
        Ok(())
    }

    fn receive_frame(&mut self) -> Result<Option<ff::frame::Video>> {
        Ok(self.ready.pop_front())
    }
}

/// Turns display-order frames with timestamps into a constant-rate sequence
/// as FFmpeg's `fps` filter does (rounding to the nearest output slot): a
/// frame that lands on an occupied slot is dropped, a gap repeats the
/// previous frame.
struct Cfr {
    time_base: Rational,
    rate: Rational,
    first: Option<i64>,
    next: i64,
    pending: Option<ff::frame::Video>,
}

impl Cfr {
    fn new(time_base: Rational, rate: Rational) -> Self {
        Self {
            time_base,
            rate,
            first: None,
            next: 0,
            pending: None,
        }
    }

    fn slot(&self, ts: i64) -> i64 {
        let first = self.first.unwrap_or(ts);
        // (ts - first) * time_base * rate, rounded to nearest.
        let num = i128::from(ts - first)
            * i128::from(self.time_base.numerator())
            * i128::from(self.rate.numerator());
        let den = i128::from(self.time_base.denominator()) * i128::from(self.rate.denominator());
        ((num * 2 + den) / (2 * den)) as i64
    }

    fn push(
        &mut self,
        frame: ff::frame::Video,
        ts: i64,
        out: &mut VecDeque<ff::frame::Video>,
    ) -> Result<()> {
        self.first.get_or_insert(ts);
        let slot = self.slot(ts);
        if let Some(prev) = self.pending.take() {
            if slot <= self.next {
                // Same slot as the pending frame: the newer one wins.
                self.pending = Some(frame);
                drop(prev);
                return Ok(());
            }
            while self.next + 1 < slot {
                out.push_back(device::share(&prev)?);
                self.next += 1;
            }
            out.push_back(prev);
            self.next += 1;
        } else {
            self.next = slot.max(0);
        }
        self.pending = Some(frame);
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<ff::frame::Video>) {
        if let Some(f) = self.pending.take() {
            out.push_back(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfr_slots_round_to_the_nearest_output_frame() {
        // 90 kHz timestamps at 25 fps output.
        let c = Cfr {
            first: Some(1000),
            ..Cfr::new(Rational::new(1, 90_000), Rational::new(25, 1))
        };
        assert_eq!(c.slot(1000), 0);
        assert_eq!(c.slot(1000 + 3600), 1);
        assert_eq!(c.slot(1000 + 1799), 0);
        assert_eq!(c.slot(1000 + 1800), 1);
        assert_eq!(c.slot(1000 + 36_000), 10);
    }
}
