//! A live channel's audio: AAC from the camera is passed through untouched;
//! anything else a camera sends (G.711 A-law/µ-law, G.722, L16, ...) is
//! decoded, resampled to 48 kHz and encoded to AAC-LC, because fMP4/CMAF and
//! HLS players carry AAC, not telephony codecs.

use ff::Rational;
use ffmpeg_next as ff;

use crate::error::{MediaError, Result};

/// What the camera's audio stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// Raw AAC access units with this AudioSpecificConfig.
    Aac { config: Vec<u8>, sample_rate: u32 },
    /// An RTP audio encoding libavcodec decodes (`pcma`, `pcmu`, `g722`, `l16`).
    Other {
        encoding: String,
        sample_rate: u32,
        channels: u16,
    },
}

impl AudioSource {
    /// The FFmpeg decoder for a camera encoding, if the box handles it.
    fn decoder_id(encoding: &str) -> Option<ff::codec::Id> {
        Some(match encoding {
            "pcma" => ff::codec::Id::PCM_ALAW,
            "pcmu" => ff::codec::Id::PCM_MULAW,
            "g722" => ff::codec::Id::ADPCM_G722,
            "l16" => ff::codec::Id::PCM_S16BE,
            _ => return None,
        })
    }

    pub fn supported(&self) -> bool {
        match self {
            Self::Aac { .. } => true,
            Self::Other { encoding, .. } => Self::decoder_id(encoding).is_some(),
        }
    }
}

/// Output sample rate of transcoded audio.
const RATE: i32 = 48_000;
const AAC_FRAME: i64 = 1024;

/// AAC packets for the muxer, from whatever the camera sends.
pub struct LiveAudio {
    inner: Inner,
    /// Time base of the packets [`push`](Self::push) returns.
    pub time_base: Rational,
    pub parameters: ff::codec::Parameters,
}

enum Inner {
    Pass,
    Transcode(Box<Transcoder>),
}

struct Transcoder {
    decoder: ff::decoder::Audio,
    in_tb: Rational,
    graph: Option<ff::filter::Graph>,
    encoder: ff::encoder::Audio,
}

// SAFETY: libavcodec/libavfilter contexts are used by one thread at a time
// (the channel's ladder thread), through &mut self.
unsafe impl Send for LiveAudio {}

fn ff_err(op: &'static str) -> impl Fn(ff::Error) -> MediaError {
    move |e| MediaError::ffmpeg(op, e)
}

impl LiveAudio {
    pub fn new(source: &AudioSource) -> Result<Self> {
        match source {
            AudioSource::Aac {
                config,
                sample_rate,
            } => {
                // The muxer's parameters straight from the config: the
                // channel configuration is bits 9..12 of the
                // AudioSpecificConfig (ISO 14496-3 §1.6.2.1).
                let channels = config
                    .get(1)
                    .map_or(2, |b| i32::from((b >> 3) & 0x0f))
                    .clamp(1, 8);
                let mut parameters = ff::codec::Parameters::new();
                // SAFETY: plain field writes on parameters we own; extradata is
                // allocated with libav's allocator (freed with them) and padded.
                unsafe {
                    let p = parameters.as_mut_ptr();
                    (*p).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                    (*p).codec_id = ff::ffi::AVCodecID::AV_CODEC_ID_AAC;
                    (*p).sample_rate = *sample_rate as i32;
                    (*p).frame_size = AAC_FRAME as i32;
                    ff::ffi::av_channel_layout_default(&mut (*p).ch_layout, channels);
                    let pad = ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                    let buf = ff::ffi::av_mallocz(config.len() + pad).cast::<u8>();
                    if buf.is_null() {
                        return Err(MediaError::ffmpeg(
                            "allocating extradata",
                            ff::Error::from(ff::ffi::AVERROR(ff::ffi::ENOMEM)),
                        ));
                    }
                    std::ptr::copy_nonoverlapping(config.as_ptr(), buf, config.len());
                    (*p).extradata = buf;
                    (*p).extradata_size = config.len() as i32;
                }
                Ok(Self {
                    inner: Inner::Pass,
                    time_base: Rational::new(1, *sample_rate as i32),
                    parameters,
                })
            }
            AudioSource::Other {
                encoding,
                sample_rate,
                channels,
            } => {
                let id = AudioSource::decoder_id(encoding).ok_or_else(|| {
                    MediaError::InvalidRequest(format!(
                        "camera audio {encoding} is not one the box transcodes"
                    ))
                })?;
                let codec = ff::decoder::find(id).ok_or_else(|| {
                    MediaError::InvalidRequest(format!("libavcodec cannot decode {encoding}"))
                })?;
                let mut ctx = ff::codec::context::Context::new_with_codec(codec);
                // SAFETY: plain field writes on an unopened context.
                unsafe {
                    let p = ctx.as_mut_ptr();
                    (*p).sample_rate = *sample_rate as i32;
                    ff::ffi::av_channel_layout_default(
                        &mut (*p).ch_layout,
                        i32::from((*channels).max(1)),
                    );
                }
                let decoder = ctx
                    .decoder()
                    .audio()
                    .map_err(ff_err("opening the camera audio decoder"))?;
                let aac = ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| {
                    MediaError::InvalidRequest("libavcodec has no AAC encoder".into())
                })?;
                let mut enc = ff::codec::context::Context::new_with_codec(aac)
                    .encoder()
                    .audio()
                    .map_err(ff_err("creating the AAC encoder"))?;
                enc.set_rate(RATE);
                enc.set_channel_layout(ff::ChannelLayout::MONO);
                enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
                enc.set_bit_rate(64_000);
                enc.set_time_base(Rational::new(1, RATE));
                enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
                let encoder = enc
                    .open_as(aac)
                    .map_err(ff_err("opening the AAC encoder"))?;
                let parameters = ff::codec::Parameters::from(&encoder);
                Ok(Self {
                    inner: Inner::Transcode(Box::new(Transcoder {
                        decoder,
                        in_tb: Rational::new(1, *sample_rate as i32),
                        graph: None,
                        encoder,
                    })),
                    time_base: Rational::new(1, RATE),
                    parameters,
                })
            }
        }
    }

    /// Duration of one output packet, in [`time_base`](Self::time_base).
    pub fn packet_duration(&self) -> i64 {
        AAC_FRAME
    }

    /// One camera audio frame at `pts` (in its clock rate, from the run's
    /// start) → the AAC packets now ready.
    pub fn push(&mut self, data: &[u8], pts: i64) -> Result<Vec<ff::Packet>> {
        match &mut self.inner {
            Inner::Pass => {
                let mut p = ff::Packet::copy(data);
                p.set_pts(Some(pts));
                p.set_dts(Some(pts));
                p.set_duration(AAC_FRAME);
                Ok(vec![p])
            }
            Inner::Transcode(t) => t.push(data, pts),
        }
    }
}

impl Transcoder {
    fn graph(&self, frame: &ff::frame::Audio) -> Result<ff::filter::Graph> {
        let mut g = ff::filter::Graph::new();
        let err = ff_err("building the audio resampler");
        let args = crate::graph_src::abuffer_args(frame, self.in_tb);
        g.add(
            &ff::filter::find("abuffer").expect("libavfilter has abuffer"),
            "in",
            &args,
        )
        .map_err(&err)?;
        g.add(
            &ff::filter::find("abuffersink").expect("libavfilter has abuffersink"),
            "out",
            "",
        )
        .map_err(&err)?;
        g.output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| {
                p.parse(&format!(
                    "aresample={RATE}:async=1,aformat=sample_fmts=fltp:channel_layouts=mono,\
                     asetnsamples=n={AAC_FRAME}:p=0"
                ))
            })
            .map_err(&err)?;
        g.validate().map_err(&err)?;
        Ok(g)
    }

    fn push(&mut self, data: &[u8], pts: i64) -> Result<Vec<ff::Packet>> {
        let mut packet = ff::Packet::copy(data);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(pts));
        // A damaged camera frame is skipped, as a player would.
        if self.decoder.send_packet(&packet).is_err() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut decoded = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            if self.graph.is_none() {
                self.graph = Some(self.graph(&decoded)?);
            }
            let g = self.graph.as_mut().expect("built above");
            let ts = decoded.timestamp();
            decoded.set_pts(ts);
            g.get("in")
                .expect("in")
                .source()
                .add(&decoded)
                .map_err(ff_err("resampling audio"))?;
            let mut filtered = ff::frame::Audio::empty();
            while g
                .get("out")
                .expect("out")
                .sink()
                .frame(&mut filtered)
                .is_ok()
            {
                self.encoder
                    .send_frame(&filtered)
                    .map_err(ff_err("encoding AAC"))?;
                let mut p = ff::Packet::empty();
                while self.encoder.receive_packet(&mut p).is_ok() {
                    out.push(std::mem::replace(&mut p, ff::Packet::empty()));
                }
            }
        }
        Ok(out)
    }
}
