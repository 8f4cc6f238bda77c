//! The edit stage's output: the intermediate MP4 (libx264 at high quality,
//! and AAC) the composition graph's pictures and sound are encoded into,
//! which the ladder then transcodes like any upload.

use std::path::Path;

use ff::format::Pixel;
use ff::Rational;
use ffmpeg_next as ff;

use super::compose::{Canvas, SAMPLE_RATE};
use super::render::located;
use crate::error::{MediaError, Result};

/// The intermediate's picture quality: visually lossless for the ladder's
/// purposes (the ladder encodes every rung again from it).
const INTERMEDIATE_CRF: &str = "16";
const AUDIO_BITRATE: usize = 256_000;

/// The intermediate file: libx264 + AAC in MP4.
pub(super) struct Sink {
    octx: ff::format::context::Output,
    venc: ff::encoder::Video,
    aenc: ff::encoder::Audio,
    vtb: Rational,
    atb: Rational,
    vstream_tb: Rational,
    astream_tb: Rational,
    pub(super) audio_frame_size: u32,
    pub(super) frames: u64,
    pub(super) samples: u64,
}

impl Sink {
    pub(super) fn open(out: &Path, canvas: &Canvas) -> Result<Self> {
        let at = |op: &'static str| {
            let out = out.to_owned();
            move |e| MediaError::ffmpeg_at(op, located(&out, None, None), e)
        };
        let mut octx =
            ff::format::output_as(out, "mp4").map_err(at("creating the composed MP4"))?;
        let (n, d) = canvas.frame_rate;
        let vtb = Rational::new(d, n);
        let x264 = ff::encoder::find_by_name("libx264").ok_or_else(|| MediaError::Worker {
            stage: "compose".into(),
            reason: "libavcodec was built without libx264".into(),
        })?;
        let mut v = ff::codec::context::Context::new_with_codec(x264)
            .encoder()
            .video()
            .map_err(at("creating the H.264 encoder"))?;
        v.set_width(canvas.width);
        v.set_height(canvas.height);
        v.set_format(Pixel::YUV420P);
        v.set_time_base(vtb);
        v.set_frame_rate(Some(Rational::new(n, d)));
        v.set_aspect_ratio(Rational::new(1, 1));
        v.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let mut opts = ff::Dictionary::new();
        opts.set("preset", "veryfast");
        opts.set("crf", INTERMEDIATE_CRF);
        let venc = v.open_with(opts).map_err(at("opening libx264"))?;

        let aac = ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| MediaError::Worker {
            stage: "compose".into(),
            reason: "libavcodec has no AAC encoder".into(),
        })?;
        let mut a = ff::codec::context::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(at("creating the AAC encoder"))?;
        let atb = Rational::new(1, SAMPLE_RATE as i32);
        a.set_rate(SAMPLE_RATE as i32);
        a.set_channel_layout(ff::ChannelLayout::STEREO);
        a.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
        a.set_bit_rate(AUDIO_BITRATE);
        a.set_time_base(atb);
        a.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let aenc = a.open_as(aac).map_err(at("opening the AAC encoder"))?;
        let audio_frame_size = aenc.frame_size().max(1);

        for (params, tb) in [
            (ff::codec::Parameters::from(&venc), vtb),
            (ff::codec::Parameters::from(&aenc), atb),
        ] {
            let mut st = octx
                .add_stream(None::<ff::Codec>)
                .map_err(at("adding a stream"))?;
            st.set_parameters(params);
            st.set_time_base(tb);
            // SAFETY: codecpar belongs to the stream just added; a zero tag
            // lets the muxer pick the sample entry (avc1, mp4a).
            unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
        }
        octx.write_header()
            .map_err(at("writing the composed MP4's header"))?;
        let vstream_tb = octx.stream(0).expect("added").time_base();
        let astream_tb = octx.stream(1).expect("added").time_base();
        Ok(Self {
            octx,
            venc,
            aenc,
            vtb,
            atb,
            vstream_tb,
            astream_tb,
            audio_frame_size,
            frames: 0,
            samples: 0,
        })
    }

    pub(super) fn video(
        &mut self,
        frame: Option<&ff::frame::Video>,
    ) -> std::result::Result<(), ff::Error> {
        match frame {
            Some(f) => {
                self.frames += 1;
                self.venc.send_frame(f)?;
            }
            None => self.venc.send_eof()?,
        }
        let mut p = ff::Packet::empty();
        while self.venc.receive_packet(&mut p).is_ok() {
            p.set_stream(0);
            // One frame each (constant rate): the muxer's last sample
            // lasts a frame too, so the file is as long as its pictures.
            if p.duration() <= 0 {
                p.set_duration(1);
            }
            p.rescale_ts(self.vtb, self.vstream_tb);
            p.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }

    pub(super) fn audio(
        &mut self,
        frame: Option<&ff::frame::Audio>,
    ) -> std::result::Result<(), ff::Error> {
        match frame {
            Some(f) => {
                self.samples += f.samples() as u64;
                self.aenc.send_frame(f)?;
            }
            None => self.aenc.send_eof()?,
        }
        let mut p = ff::Packet::empty();
        while self.aenc.receive_packet(&mut p).is_ok() {
            p.set_stream(1);
            p.rescale_ts(self.atb, self.astream_tb);
            p.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> std::result::Result<(), ff::Error> {
        self.video(None)?;
        self.audio(None)?;
        self.octx.write_trailer()
    }
}

/// Encodes every picture the graph has ready; true once it has ended.
pub(super) fn drain_video(graph: &mut ff::filter::Graph, sink: &mut Sink) -> Result<bool> {
    loop {
        let mut f = ff::frame::Video::empty();
        match graph.get("vout").expect("vout").sink().frame(&mut f) {
            Ok(()) => {
                // Key frames are the encoder's choice, not the sources'.
                f.set_kind(ff::picture::Type::None);
                let pts = f.pts();
                sink.video(Some(&f)).map_err(|e| {
                    MediaError::ffmpeg_at(
                        "encoding the composed picture",
                        located(
                            Path::new("composition"),
                            Some(0),
                            pts.map(|t| t as f64 * f64::from(sink.vtb)),
                        ),
                        e,
                    )
                })?;
            }
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(false),
            Err(ff::Error::Eof) => return Ok(true),
            Err(e) => return Err(MediaError::ffmpeg("composing video", e)),
        }
    }
}

pub(super) fn drain_audio(graph: &mut ff::filter::Graph, sink: &mut Sink) -> Result<bool> {
    loop {
        let mut f = ff::frame::Audio::empty();
        match graph.get("aout").expect("aout").sink().frame(&mut f) {
            Ok(()) => {
                let pts = f.pts();
                sink.audio(Some(&f)).map_err(|e| {
                    MediaError::ffmpeg_at(
                        "encoding the composed sound",
                        located(
                            Path::new("composition"),
                            Some(1),
                            pts.map(|t| t as f64 * f64::from(sink.atb)),
                        ),
                        e,
                    )
                })?;
            }
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(false),
            Err(ff::Error::Eof) => return Ok(true),
            Err(e) => return Err(MediaError::ffmpeg("composing audio", e)),
        }
    }
}
