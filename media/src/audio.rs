//! The audio branch: decode → resample/down-mix → AAC-LC → CMAF track. Runs on
//! its own thread, fed the audio packets the demuxer reads. The resampled
//! sound is also split into the fingerprint branch (`fingerprint::BRANCH`),
//! so the track comes back with its audio fingerprint from the same decode.

use std::path::Path;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use ff::Rational;
use ffmpeg_next as ff;

use crate::cmaf::{Cuts, Track, TrackWriter};
use crate::error::{Location, MediaError, Result};
use crate::fingerprint::{self, AudioFingerprint, Tap};
use crate::plan::AudioPlan;
use crate::repair::Repairs;

/// Everything the audio thread needs from the demuxer.
pub struct AudioInput {
    pub file: std::path::PathBuf,
    pub stream: usize,
    pub parameters: ff::codec::Parameters,
    pub time_base: Rational,
    /// The video's first timestamp, in this stream's time base: audio is
    /// re-timed against it so both tracks start at zero together.
    pub origin: i64,
}

impl AudioInput {
    /// Where `ts` (in this stream's time base) is, for errors and logs.
    pub(crate) fn at(&self, ts: Option<i64>) -> Location {
        Location {
            file: self.file.clone(),
            stream: Some(self.stream),
            timestamp: ts.map(|t| t as f64 * f64::from(self.time_base)),
        }
    }

    pub(crate) fn err(&self, op: &'static str, ts: Option<i64>, source: ff::Error) -> MediaError {
        MediaError::ffmpeg_at(op, self.at(ts), source)
    }

    /// The one audio decode loop (the audio branch and the fingerprint-only
    /// decode both run it): decodes `packets` into a filter graph that
    /// `build` makes from the first decoded frame (its source is named
    /// `in`), each frame re-timed against `origin`. `drain(graph, false)`
    /// runs after every frame; at the end the source is flushed and
    /// `drain(graph, true)` runs once.
    ///
    /// A packet the decoder refuses (the AAC decoder says EINVAL or EPERM)
    /// is counted in `repairs` and skipped: a gap the resampler fills with
    /// silence, not a failed job. `Ok(false)` when nothing decoded (then
    /// `drain` never ran).
    pub(crate) fn decode_through(
        &self,
        packets: impl IntoIterator<Item = ff::Packet>,
        repairs: &Repairs,
        build: impl Fn(&ff::frame::Audio) -> std::result::Result<ff::filter::Graph, ff::Error>,
        mut drain: impl FnMut(&mut ff::filter::Graph, bool) -> Result<()>,
    ) -> Result<bool> {
        let mut decoder = ff::codec::context::Context::from_parameters(self.parameters.clone())
            .and_then(|c| c.decoder().audio())
            .map_err(|e| self.err("opening the audio decoder", None, e))?;
        let mut graph: Option<ff::filter::Graph> = None;
        let mut decoded = ff::frame::Audio::empty();
        let mut feed = |decoder: &mut ff::decoder::Audio,
                        graph: &mut Option<ff::filter::Graph>|
         -> Result<()> {
            while decoder.receive_frame(&mut decoded).is_ok() {
                if graph.is_none() {
                    *graph = Some(
                        build(&decoded)
                            .map_err(|e| self.err("building the audio filter graph", None, e))?,
                    );
                }
                let g = graph.as_mut().expect("built above");
                let ts = decoded.timestamp().map(|t| t - self.origin);
                decoded.set_pts(ts);
                g.get("in")
                    .expect("in")
                    .source()
                    .add(&decoded)
                    .map_err(|e| self.err("resampling audio", ts, e))?;
                drain(g, false)?;
            }
            Ok(())
        };
        for packet in packets {
            match decoder.send_packet(&packet) {
                Ok(()) => {}
                Err(e @ (ff::Error::InvalidData | ff::Error::Other { .. })) if !matches!(e, ff::Error::Other { errno } if errno == ff::ffi::ENOMEM) =>
                {
                    repairs.audio.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(location = %self.at(packet.pts()), error = %e, "skipping undecodable audio packet");
                    continue;
                }
                Err(e) => return Err(self.err("decoding audio", packet.pts(), e)),
            }
            feed(&mut decoder, &mut graph)?;
        }
        let _ = decoder.send_eof();
        feed(&mut decoder, &mut graph)?;
        let Some(g) = graph.as_mut() else {
            return Ok(false);
        };
        g.get("in")
            .expect("in")
            .source()
            .flush()
            .map_err(|e| self.err("flushing audio", None, e))?;
        drain(g, true)?;
        Ok(true)
    }
}

pub fn run(
    input: AudioInput,
    plan: &AudioPlan,
    dir: &Path,
    cuts: Cuts,
    packets: Receiver<ff::Packet>,
    repairs: &Repairs,
) -> Result<(Track, Option<AudioFingerprint>)> {
    let err = |op, ts, source| input.err(op, ts, source);

    let encoder_codec =
        ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| MediaError::Worker {
            stage: "audio".into(),
            reason: "libavcodec has no AAC encoder".into(),
        })?;
    let layout = ff::ChannelLayout::default(i32::from(plan.channels));
    let mut enc = ff::codec::context::Context::new_with_codec(encoder_codec)
        .encoder()
        .audio()
        .map_err(|e| err("creating the AAC encoder", None, e))?;
    enc.set_rate(plan.sample_rate as i32);
    enc.set_channel_layout(layout);
    enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
    enc.set_bit_rate(plan.bitrate as usize);
    enc.set_time_base(Rational::new(1, plan.sample_rate as i32));
    enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    let mut enc = enc
        .open_as(encoder_codec)
        .map_err(|e| err("opening the AAC encoder", None, e))?;
    let frame_size = enc.frame_size().max(1);
    // The first sample is the source's sound at the video's first picture;
    // the encoder's priming comes before it (negative timestamps), and the
    // track's edit list (see `cmaf`) skips it, so sound and picture both
    // start at zero.
    let first_pts = 0;
    let enc_tb = Rational::new(1, plan.sample_rate as i32);

    let mut writer = TrackWriter::create(
        dir,
        ff::codec::Parameters::from(&enc),
        enc_tb,
        cuts,
        i64::from(frame_size),
        "mp4a.40.2".into(),
    )?;

    let mut filtered = ff::frame::Audio::empty();
    let mut printed = ff::frame::Audio::empty();
    let mut tap = Tap::new();
    let mut packet_out = ff::Packet::empty();

    // Moves every frame the graph has ready through the encoder into the track.
    let mut drain_graph = |graph: &mut ff::filter::Graph,
                           enc: &mut ff::encoder::Audio,
                           writer: &mut TrackWriter,
                           flush: bool|
     -> Result<()> {
        loop {
            match graph.get("out").expect("out").sink().frame(&mut filtered) {
                Ok(()) => {
                    enc.send_frame(&filtered)
                        .map_err(|e| err("encoding AAC", filtered.pts(), e))?;
                }
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(err("resampling audio", None, e)),
            }
            drain_encoder(enc, writer, &mut packet_out)?;
        }
        fingerprint::drain_sink(graph, "fp", &mut printed, &mut tap)
            .map_err(|e| err("fingerprinting audio", None, e))?;
        if flush {
            enc.send_eof().map_err(|e| err("draining AAC", None, e))?;
            drain_encoder(enc, writer, &mut packet_out)?;
        }
        Ok(())
    };

    let decoded_any = input.decode_through(
        packets,
        repairs,
        |first| build_graph(first, input.time_base, plan, frame_size, first_pts),
        |g, flush| drain_graph(g, &mut enc, &mut writer, flush),
    )?;
    if !decoded_any {
        return Err(MediaError::Worker {
            stage: "audio".into(),
            reason: "the audio stream decoded to nothing".into(),
        });
    }
    Ok((writer.finish()?, tap.finish()))
}

fn drain_encoder(
    enc: &mut ff::encoder::Audio,
    writer: &mut TrackWriter,
    packet: &mut ff::Packet,
) -> Result<()> {
    while enc.receive_packet(packet).is_ok() {
        writer.write(std::mem::replace(packet, ff::Packet::empty()))?;
    }
    Ok(())
}

/// abuffer → aresample (async: stretch/pad to keep sync; first_pts: start
/// where the video starts) → split: planar float at the plan's rate and
/// layout → AAC-sized frames (sink `out`), and the fingerprint branch
/// (sink `fp`).
fn build_graph(
    first: &ff::frame::Audio,
    time_base: Rational,
    plan: &AudioPlan,
    frame_size: u32,
    first_pts: i64,
) -> std::result::Result<ff::filter::Graph, ff::Error> {
    let mut g = ff::filter::Graph::new();
    let args = crate::graph_src::abuffer_args(first, time_base);
    g.add(&ff::filter::find("abuffer").expect("abuffer"), "in", &args)?;
    g.add(
        &ff::filter::find("abuffersink").expect("abuffersink"),
        "out",
        "",
    )?;
    g.add(
        &ff::filter::find("abuffersink").expect("abuffersink"),
        "fp",
        "",
    )?;
    let out_layout = if plan.channels == 1 { "mono" } else { "stereo" };
    let spec = format!(
        "[in]aresample={}:async=1:first_pts={first_pts},asplit=2[aac][print];\
         [aac]aformat=sample_fmts=fltp:channel_layouts={out_layout}[out];\
         [print]{}[fp]",
        plan.sample_rate,
        fingerprint::BRANCH
    );
    g.output("in", 0)?
        .input("out", 0)?
        .input("fp", 0)?
        .parse(&spec)?;
    g.validate()?;
    g.get("out").expect("out").sink().set_frame_size(frame_size);
    Ok(g)
}
