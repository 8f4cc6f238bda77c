//! CPU backend: libavcodec decoders, libavfilter normalisation, swscale and
//! libx264 — the reference every other backend is compared with.

use ff::format::Pixel;
use ff::software::scaling;
use ff::Rational;
use ffmpeg_next as ff;

use super::{
    DecodeBackend, DecodeInput, EncodeBackend, EncoderSettings, FrameDescription, ScaleBackend,
    Scaler, VideoDecoder, VideoEncoder,
};
use crate::error::{MediaError, Result};
use crate::plan::{LadderPlan, Rung};

pub struct Cpu;

pub static CPU: Cpu = Cpu;

fn ff_err(op: &'static str, source: ff::Error) -> MediaError {
    MediaError::ffmpeg(op, source)
}

impl DecodeBackend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn video_decoder(&self, input: DecodeInput<'_>) -> Result<Box<dyn VideoDecoder>> {
        let mut ctx = ff::codec::context::Context::from_parameters(input.parameters)
            .map_err(|e| ff_err("reading codec parameters", e))?;
        // Frame threads: the decoder keeps pace with N encoders on a few cores.
        ctx.set_threading(ff::threading::Config {
            kind: ff::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| ff_err("opening the video decoder", e))?;
        Ok(Box::new(CpuDecoder {
            decoder,
            time_base: input.time_base,
            filters: filter_chain(input.plan),
            graph: None,
            carry: Default::default(),
            eof_sent: false,
            damaged: 0,
        }))
    }
}

/// The normalising filters, in order: deinterlace, turn upright, constant rate.
fn filter_chain(plan: &LadderPlan) -> String {
    let mut f = Vec::new();
    if plan.deinterlace {
        f.push("bwdif=mode=send_frame:parity=auto:deint=all".to_owned());
    }
    match plan.rotation {
        90 => f.push("transpose=clock".into()),
        180 => f.push("hflip,vflip".into()),
        270 => f.push("transpose=cclock".into()),
        _ => {}
    }
    f.push(format!(
        "fps=fps={}/{}",
        plan.frame_rate.0, plan.frame_rate.1
    ));
    f.join(",")
}

struct Graph {
    graph: ff::filter::Graph,
    /// The input properties the graph was built for; a change rebuilds it.
    key: (u32, u32, Pixel),
}

struct CpuDecoder {
    decoder: ff::decoder::Video,
    time_base: Rational,
    filters: String,
    graph: Option<Graph>,
    /// Frames flushed out of a replaced graph, delivered before anything else.
    carry: std::collections::VecDeque<ff::frame::Video>,
    eof_sent: bool,
    /// Packets or frames dropped as undecodable.
    damaged: u64,
}

fn out_of_memory(e: &ff::Error) -> bool {
    matches!(e, ff::Error::Other { errno } if *errno == ff::ffi::ENOMEM)
}

/// More undecodable packets or frames than this and the input is not
/// damaged video but something else: the job fails.
const MAX_DAMAGED: u64 = 100_000;

impl CpuDecoder {
    fn build_graph(&self, frame: &ff::frame::Video) -> Result<Graph> {
        let mut graph = ff::filter::Graph::new();
        let args = crate::graph_src::buffer_args(frame, self.time_base);
        let err = |e| ff_err("building the normalising filter graph", e);
        graph
            .add(
                &ff::filter::find("buffer").expect("libavfilter has buffer"),
                "in",
                &args,
            )
            .map_err(err)?;
        graph
            .add(
                &ff::filter::find("buffersink").expect("libavfilter has buffersink"),
                "out",
                "",
            )
            .map_err(err)?;
        graph
            .output("in", 0)
            .and_then(|p| p.input("out", 0))
            .and_then(|p| p.parse(&self.filters))
            .map_err(err)?;
        graph.validate().map_err(err)?;
        Ok(Graph {
            graph,
            key: (frame.width(), frame.height(), frame.format()),
        })
    }

    fn push_decoded(&mut self) -> Result<()> {
        loop {
            let mut frame = ff::frame::Video::empty();
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                // A damaged frame (frame threads report it here, not at
                // send) costs that frame, as ffmpeg and players do.
                Err(e @ (ff::Error::InvalidData | ff::Error::Other { .. }))
                    if self.damaged < MAX_DAMAGED && !out_of_memory(&e) =>
                {
                    self.damaged += 1;
                    tracing::warn!(error = %e, "dropping an undecodable video frame");
                    continue;
                }
                Err(e) => return Err(ff_err("decoding video", e)),
            }
            let key = (frame.width(), frame.height(), frame.format());
            if self.graph.as_ref().map(|g| g.key) != Some(key) {
                if let Some(old) = self.graph.as_mut() {
                    // Mid-stream size/format change: finish the old graph first.
                    let _ = old.graph.get("in").expect("in").source().flush();
                    self.pending_from_old_graph()?;
                }
                self.graph = Some(self.build_graph(&frame)?);
            }
            let ts = frame.timestamp();
            frame.set_pts(ts);
            let g = self.graph.as_mut().expect("built above");
            g.graph
                .get("in")
                .expect("in")
                .source()
                .add(&frame)
                .map_err(|e| ff_err("filtering video", e))?;
        }
    }

    /// Frames still inside a graph about to be replaced are kept in order.
    fn pending_from_old_graph(&mut self) -> Result<()> {
        let g = self.graph.as_mut().expect("caller checked");
        let mut sink = g.graph.get("out").expect("out");
        loop {
            let mut f = ff::frame::Video::empty();
            match sink.sink().frame(&mut f) {
                Ok(()) => self.carry.push_back(f),
                Err(_) => return Ok(()),
            }
        }
    }
}

impl VideoDecoder for CpuDecoder {
    fn damaged(&self) -> u64 {
        self.damaged
    }

    fn send_packet(&mut self, packet: &ff::Packet) -> Result<()> {
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            // A damaged packet costs a frame, not the job (players do the same).
            Err(ff::Error::InvalidData) if self.damaged < MAX_DAMAGED => {
                self.damaged += 1;
                tracing::warn!(pts = ?packet.pts(), "skipping undecodable video packet");
            }
            Err(e) => return Err(ff_err("decoding video", e)),
        }
        self.push_decoded()
    }

    fn send_eof(&mut self) -> Result<()> {
        if !self.eof_sent {
            self.eof_sent = true;
            let _ = self.decoder.send_eof();
            self.push_decoded()?;
            if let Some(g) = self.graph.as_mut() {
                g.graph
                    .get("in")
                    .expect("in")
                    .source()
                    .flush()
                    .map_err(|e| ff_err("flushing filters", e))?;
            }
        }
        Ok(())
    }

    fn receive_frame(&mut self) -> Result<Option<ff::frame::Video>> {
        if let Some(f) = self.carry.pop_front() {
            return Ok(Some(f));
        }
        let Some(g) = self.graph.as_mut() else {
            return Ok(None);
        };
        let mut frame = ff::frame::Video::empty();
        match g.graph.get("out").expect("out").sink().frame(&mut frame) {
            Ok(()) => Ok(Some(frame)),
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => Ok(None),
            Err(ff::Error::Eof) => Ok(None),
            Err(e) => Err(ff_err("filtering video", e)),
        }
    }
}

impl ScaleBackend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn scaler(&self, rung: &Rung) -> Result<Box<dyn Scaler>> {
        Ok(Box::new(SwScaler {
            width: rung.width,
            height: rung.height,
            ctx: None,
        }))
    }
}

struct SwScaler {
    width: u32,
    height: u32,
    /// Built for the first frame's size and format; rebuilt if they change.
    ctx: Option<(scaling::Context, (u32, u32, Pixel))>,
}

impl Scaler for SwScaler {
    fn scale(&mut self, src: &ff::frame::Video) -> Result<Option<ff::frame::Video>> {
        let key = (src.width(), src.height(), src.format());
        if key == (self.width, self.height, Pixel::YUV420P) {
            return Ok(None);
        }
        if self.ctx.as_ref().map(|c| c.1) != Some(key) {
            // Bicubic: the quality ffmpeg's CLI uses by default, so the
            // benchmark compares like with like.
            let ctx = scaling::Context::get(
                src.format(),
                src.width(),
                src.height(),
                Pixel::YUV420P,
                self.width,
                self.height,
                scaling::Flags::BICUBIC,
            )
            .map_err(|e| ff_err("creating the scaler", e))?;
            self.ctx = Some((ctx, key));
        }
        let (ctx, _) = self.ctx.as_mut().expect("built above");
        let mut out = ff::frame::Video::empty();
        ctx.run(src, &mut out).map_err(|e| ff_err("scaling", e))?;
        super::carry_over(src, &mut out);
        Ok(Some(out))
    }
}

impl EncodeBackend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn encoder(
        &self,
        rung: &Rung,
        plan: &LadderPlan,
        first: &FrameDescription,
        settings: &EncoderSettings,
    ) -> Result<Box<dyn VideoEncoder>> {
        Ok(Box::new(open_x264(rung, plan, first, settings)?))
    }
}

fn open_x264(
    rung: &Rung,
    plan: &LadderPlan,
    first: &FrameDescription,
    settings: &EncoderSettings,
) -> Result<X264> {
    let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| MediaError::Worker {
        stage: "encode".into(),
        reason: "libavcodec was built without libx264".into(),
    })?;
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| ff_err("creating the H.264 encoder", e))?;
    let (num, den) = plan.frame_rate;
    let time_base = Rational::new(den, num);
    enc.set_width(rung.width);
    enc.set_height(rung.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(Rational::new(num, den)));
    enc.set_aspect_ratio(Rational::new(1, 1));
    enc.set_colorspace(first.color_space);
    enc.set_color_range(ff::color::Range::MPEG);
    // SAFETY: plain field writes on an unopened codec context.
    unsafe {
        let p = enc.as_mut_ptr();
        (*p).color_primaries = first.color_primaries.into();
        (*p).color_trc = first.color_trc.into();
    }
    enc.set_flags(ff::codec::Flags::GLOBAL_HEADER | ff::codec::Flags::CLOSED_GOP);
    let enc = enc
        .open_with(x264_options(rung, plan, settings))
        .map_err(|e| ff_err("opening libx264", e))?;
    Ok(X264 { enc, time_base })
}

/// The libx264 settings of a rung. Public so the benchmark hands the `ffmpeg`
/// CLI exactly the same ones.
pub fn x264_options(
    rung: &Rung,
    plan: &LadderPlan,
    settings: &EncoderSettings,
) -> ff::Dictionary<'static> {
    let mut o = ff::Dictionary::new();
    for (k, v) in x264_option_pairs(rung, plan, settings) {
        o.set(k, &v);
    }
    o
}

pub fn x264_option_pairs(
    rung: &Rung,
    plan: &LadderPlan,
    settings: &EncoderSettings,
) -> Vec<(&'static str, String)> {
    // The largest rung this box encodes gets the cores (a remuxed top rung
    // is not encoded).
    let top = plan
        .encoded_rungs()
        .first()
        .is_some_and(|r| r.name == rung.name);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // IDRs come only where the plan marks them: x264 must never need one of
    // its own in between, even when they follow a source's uneven key frames.
    let g = plan.max_gop_frames();
    let mut pairs = vec![
        ("preset", settings.preset.clone()),
        ("profile", "high".into()),
        ("b", rung.bitrate.to_string()),
        ("maxrate", rung.max_bitrate.to_string()),
        ("bufsize", rung.buffer_size.to_string()),
        ("g", g.to_string()),
        ("keyint_min", g.to_string()),
        ("sc_threshold", "0".into()),
        // Forced I frames (our GOP marks) become IDRs, so closed GOPs line up.
        ("forced-idr", "1".into()),
        // Frame threads make VBV rate control depend on thread timing, so two
        // runs would differ. Parallelism comes from the rungs instead: each
        // lower rung encodes on one thread, and the top rung (over half the
        // pixels) is cut into slices across the cores; both are deterministic,
        // so playlists stay byte-stable.
        ("threads", if top { cores.to_string() } else { "1".into() }),
        (
            "x264-params",
            format!("open-gop=0:sliced-threads={}", u8::from(top)),
        ),
    ];
    if let Some(tune) = &settings.tune {
        pairs.push(("tune", tune.clone()));
    }
    pairs
}

struct X264 {
    enc: ff::encoder::Video,
    time_base: Rational,
}

impl VideoEncoder for X264 {
    fn send_frame(&mut self, frame: Option<&ff::frame::Video>) -> Result<()> {
        match frame {
            Some(f) => self
                .enc
                .send_frame(f)
                .map_err(|e| ff_err("encoding H.264", e)),
            None => self.enc.send_eof().map_err(|e| ff_err("draining H.264", e)),
        }
    }

    fn receive_packet(&mut self) -> Result<Option<ff::Packet>> {
        let mut p = ff::Packet::empty();
        match self.enc.receive_packet(&mut p) {
            Ok(()) => Ok(Some(p)),
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => Ok(None),
            Err(ff::Error::Eof) => Ok(None),
            Err(e) => Err(ff_err("encoding H.264", e)),
        }
    }

    fn parameters(&self) -> ff::codec::Parameters {
        ff::codec::Parameters::from(&*self.enc)
    }

    fn time_base(&self) -> Rational {
        self.time_base
    }
}
