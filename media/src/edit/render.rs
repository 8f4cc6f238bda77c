//! Runs a composition graph: decodes every input, feeds the graph in
//! output-time order (the input whose demuxer is furthest behind on the
//! composition's timeline reads next, so frames waiting in the graph stay
//! a few packets' worth whatever the inputs' lengths), and encodes what
//! comes out as the intermediate MP4 (H.264 at high quality + AAC) the
//! ladder then transcodes like any upload.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ff::format::Pixel;
use ff::Rational;
use ffmpeg_next as ff;

use super::compose::{Canvas, SAMPLE_RATE};
use crate::error::{Location, MediaError, RejectCode, Result};
use crate::probe::SourceInfo;

/// How far past a trimmed input's end the demuxer reads (reordered
/// pictures and the sound's packets interleaved after the last picture)
/// before that input is closed.
const READ_PAST_END_SECS: f64 = 1.0;
/// More undecodable packets than this and the input is not damaged video
/// but something else.
const MAX_DAMAGED: u64 = 10_000;
/// The intermediate's picture quality: visually lossless for the ladder's
/// purposes (the ladder encodes every rung again from it).
const INTERMEDIATE_CRF: &str = "16";
const AUDIO_BITRATE: usize = 256_000;

/// One input as the graph sees it.
pub(super) struct Feed<'a> {
    pub source: &'a SourceInfo,
    /// Where the input's used span starts (seconds from its first picture):
    /// the demuxer seeks near it.
    pub start: f64,
    /// The demuxer stops once past this (seconds), when the span is cut.
    pub end: Option<f64>,
    /// Where the span starts on the composition's timeline, and how fast
    /// it plays there: only the reading order depends on them.
    pub offset: f64,
    pub speed: f64,
}

struct Input {
    file: PathBuf,
    ictx: ff::format::context::Input,
    video: usize,
    vtb: Rational,
    vdec: ff::decoder::Video,
    /// The first picture's timestamp, in each stream's time base.
    vorigin: i64,
    audio: Option<(usize, Rational, ff::decoder::Audio, i64)>,
    vq: VecDeque<ff::frame::Video>,
    aq: VecDeque<ff::frame::Audio>,
    start: f64,
    end: Option<f64>,
    offset: f64,
    speed: f64,
    /// How far the demuxer has read, on the composition's timeline.
    clock: f64,
    eof: bool,
    closed: bool,
    damaged: u64,
}

fn located(file: &Path, stream: Option<usize>, secs: Option<f64>) -> Location {
    Location {
        file: file.to_owned(),
        stream,
        timestamp: secs,
    }
}

impl Input {
    fn open(feed: &Feed<'_>) -> Result<Self> {
        let file = feed.source.path.clone();
        let at =
            |e| MediaError::ffmpeg_at("opening an input to compose", located(&file, None, None), e);
        let mut ictx = ff::format::input(&file).map_err(at)?;
        let video = feed.source.video.index;
        let (vtb, vparams) = {
            let s = ictx.stream(video).expect("probed");
            (s.time_base(), s.parameters())
        };
        let vdec = ff::codec::context::Context::from_parameters(vparams)
            .and_then(|c| c.decoder().video())
            .map_err(|e| {
                MediaError::ffmpeg_at(
                    "opening the video decoder",
                    located(&file, Some(video), None),
                    e,
                )
            })?;
        let vorigin = feed.source.video.start_pts;
        let audio = match &feed.source.audio {
            Some(a) => {
                let s = ictx.stream(a.index).expect("probed");
                let (tb, params) = (s.time_base(), s.parameters());
                let origin = ff::Rescale::rescale(&vorigin, vtb, tb);
                let dec = ff::codec::context::Context::from_parameters(params)
                    .and_then(|c| c.decoder().audio())
                    .map_err(|e| {
                        MediaError::ffmpeg_at(
                            "opening the audio decoder",
                            located(&file, Some(a.index), None),
                            e,
                        )
                    })?;
                Some((a.index, tb, dec, origin))
            }
            None => None,
        };
        if feed.start > 0.0 {
            // To the key frame at or before the span (the graph's trim cuts
            // exactly); a failed seek reads from the top instead.
            let origin = vorigin as f64 * f64::from(vtb);
            let target = ((feed.start + origin) * 1e6) as i64;
            if let Err(e) = ictx.seek(target, ..target) {
                tracing::debug!(file = %file.display(), error = %e, "seek failed; reading from the start");
            }
        }
        Ok(Self {
            file,
            ictx,
            video,
            vtb,
            vdec,
            vorigin,
            audio,
            vq: VecDeque::new(),
            aq: VecDeque::new(),
            start: feed.start,
            end: feed.end,
            offset: feed.offset,
            speed: feed.speed,
            clock: feed.offset,
            eof: false,
            closed: false,
            damaged: 0,
        })
    }

    /// Reads one packet and queues what it decodes to; at the end of the
    /// file (or past a cut span's end) drains the decoders.
    fn read_one(&mut self) -> Result<()> {
        let mut packet = ff::Packet::empty();
        match packet.read(&mut self.ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => return self.finish(),
            Err(e) => {
                // A truncated tail ends the input at what decoded, as the
                // ladder does.
                tracing::warn!(file = %self.file.display(), error = %e, "input ends early");
                return self.finish();
            }
        }
        let index = packet.stream();
        let (tb, origin) = if index == self.video {
            (self.vtb, self.vorigin)
        } else if let Some((a, tb, _, origin)) = &self.audio {
            if index != *a {
                return Ok(());
            }
            (*tb, *origin)
        } else {
            return Ok(());
        };
        if let Some(t) = packet.pts().or(packet.dts()) {
            let secs = (t - origin) as f64 * f64::from(tb);
            self.clock = self
                .clock
                .max(self.offset + (secs - self.start) / self.speed);
            if self.end.is_some_and(|end| secs > end + READ_PAST_END_SECS) {
                return self.finish();
            }
        }
        let sent = if index == self.video {
            self.vdec.send_packet(&packet)
        } else {
            let (_, _, dec, _) = self.audio.as_mut().expect("matched above");
            dec.send_packet(&packet)
        };
        match sent {
            Ok(()) => {}
            Err(e @ (ff::Error::InvalidData | ff::Error::Other { .. }))
                if self.damaged < MAX_DAMAGED
                    && !matches!(e, ff::Error::Other { errno } if errno == ff::ffi::ENOMEM) =>
            {
                self.damaged += 1;
                tracing::warn!(file = %self.file.display(), stream = index, error = %e, "skipping an undecodable packet");
            }
            Err(e) => {
                let secs = packet.pts().map(|t| t as f64 * f64::from(tb));
                return Err(MediaError::ffmpeg_at(
                    "decoding an input to compose",
                    located(&self.file, Some(index), secs),
                    e,
                ));
            }
        }
        self.receive();
        Ok(())
    }

    fn receive(&mut self) {
        loop {
            let mut f = ff::frame::Video::empty();
            if self.vdec.receive_frame(&mut f).is_err() {
                break;
            }
            let ts = f.timestamp().map(|t| t - self.vorigin);
            f.set_pts(ts);
            self.vq.push_back(f);
        }
        if let Some((_, _, dec, origin)) = self.audio.as_mut() {
            loop {
                let mut f = ff::frame::Audio::empty();
                if dec.receive_frame(&mut f).is_err() {
                    break;
                }
                let ts = f.timestamp().map(|t| t - *origin);
                f.set_pts(ts);
                self.aq.push_back(f);
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        if !self.eof {
            self.eof = true;
            let _ = self.vdec.send_eof();
            if let Some((_, _, dec, _)) = self.audio.as_mut() {
                let _ = dec.send_eof();
            }
            self.receive();
        }
        Ok(())
    }

    /// Reads until both streams have a frame (their formats build the
    /// graph's sources) or the input ends.
    fn prime(&mut self) -> Result<()> {
        while !self.eof && (self.vq.is_empty() || (self.audio.is_some() && self.aq.is_empty())) {
            self.read_one()?;
        }
        if self.vq.is_empty() {
            return Err(MediaError::rejected(
                &self.file,
                RejectCode::CorruptMedia,
                "no picture of it decodes in the span to compose",
            ));
        }
        Ok(())
    }

    fn has_audio(&self) -> bool {
        !self.aq.is_empty()
    }
}

/// What was composed.
pub(super) struct Rendered {
    pub frames: u64,
    pub duration_secs: f64,
}

/// Opens `feeds`, lets `describe` write the graph from whether each input
/// turned out to have sound, and renders it into `out` at `canvas`.
pub(super) fn render(
    feeds: &[Feed<'_>],
    canvas: &Canvas,
    describe: &dyn Fn(&[bool]) -> String,
    out: &Path,
    cancel: Option<&AtomicBool>,
) -> Result<Rendered> {
    crate::init();
    let mut inputs = feeds.iter().map(Input::open).collect::<Result<Vec<_>>>()?;
    for i in &mut inputs {
        i.prime()?;
    }
    let sound: Vec<bool> = inputs.iter().map(Input::has_audio).collect();
    let spec = describe(&sound);
    tracing::debug!(graph = %spec, "composing");
    let mut graph = build_graph(&inputs, &spec, out)?;
    let mut sink = Sink::open(out, canvas)?;
    graph
        .get("aout")
        .expect("aout")
        .sink()
        .set_frame_size(sink.audio_frame_size);

    let at_out = |op: &'static str| {
        let out = out.to_owned();
        move |e| MediaError::ffmpeg_at(op, located(&out, None, None), e)
    };
    let (mut video_done, mut audio_done) = (false, false);
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            let _ = std::fs::remove_file(out);
            return Err(MediaError::Cancelled);
        }
        for (i, input) in inputs.iter_mut().enumerate() {
            push(&mut graph, i, input, out)?;
        }
        let before = sink.frames + sink.samples;
        video_done |= drain_video(&mut graph, &mut sink)?;
        audio_done |= drain_audio(&mut graph, &mut sink)?;
        if video_done && audio_done {
            break;
        }
        let next = inputs
            .iter_mut()
            .filter(|i| !i.eof)
            .min_by(|a, b| a.clock.total_cmp(&b.clock));
        match next {
            Some(input) => input.read_one()?,
            // Everything read and closed: the graph has nothing more to
            // give once a drain brings nothing.
            None if sink.frames + sink.samples == before => break,
            None => {}
        }
    }
    sink.finish()
        .map_err(at_out("finishing the composed MP4"))?;
    if sink.frames == 0 {
        return Err(MediaError::Packaging {
            path: out.to_owned(),
            reason: "the composition produced no picture".into(),
        });
    }
    Ok(Rendered {
        frames: sink.frames,
        duration_secs: sink.frames as f64 * f64::from(canvas.frame_rate.1)
            / f64::from(canvas.frame_rate.0),
    })
}

/// Moves input `i`'s decoded frames into its sources; closes them at its end.
fn push(graph: &mut ff::filter::Graph, i: usize, input: &mut Input, out: &Path) -> Result<()> {
    if input.closed {
        input.vq.clear();
        input.aq.clear();
        return Ok(());
    }
    let fail = |op: &'static str, file: &Path, stream: usize| {
        let file = file.to_owned();
        move |e| MediaError::ffmpeg_at(op, located(&file, Some(stream), None), e)
    };
    let vname = format!("v{i}");
    while let Some(f) = input.vq.pop_front() {
        match graph.get(&vname).expect("source").source().add(&f) {
            // The graph needs no more of it (a duet's longer half, a clip
            // past its end).
            Ok(()) | Err(ff::Error::Eof) => {}
            Err(e) => return Err(fail("composing video", &input.file, input.video)(e)),
        }
    }
    let aname = format!("a{i}");
    let has_source = graph.get(&aname).is_some();
    while let Some(f) = input.aq.pop_front() {
        if !has_source {
            continue;
        }
        match graph.get(&aname).expect("source").source().add(&f) {
            Ok(()) | Err(ff::Error::Eof) => {}
            Err(e) => {
                let stream = input.audio.as_ref().map_or(0, |a| a.0);
                return Err(fail("composing audio", &input.file, stream)(e));
            }
        }
    }
    if input.eof {
        input.closed = true;
        for name in [vname, aname] {
            if let Some(mut ctx) = graph.get(&name) {
                match ctx.source().flush() {
                    Ok(()) | Err(ff::Error::Eof) => {}
                    Err(e) => {
                        return Err(MediaError::ffmpeg_at(
                            "closing a composition input",
                            located(out, None, None),
                            e,
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

fn build_graph(inputs: &[Input], spec: &str, out: &Path) -> Result<ff::filter::Graph> {
    let err = |e| {
        MediaError::ffmpeg_at(
            "building the composition graph",
            located(out, None, None),
            e,
        )
    };
    let mut g = ff::filter::Graph::new();
    let mut names = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let v = input.vq.front().expect("primed");
        let sar = v.aspect_ratio();
        let sar = if sar.numerator() > 0 {
            sar
        } else {
            Rational::new(1, 1)
        };
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
            v.width(),
            v.height(),
            ff::ffi::AVPixelFormat::from(v.format()) as i32,
            input.vtb.numerator(),
            input.vtb.denominator(),
            sar.numerator(),
            sar.denominator()
        );
        g.add(
            &ff::filter::find("buffer").expect("buffer"),
            &format!("v{i}"),
            &args,
        )
        .map_err(err)?;
        names.push(format!("v{i}"));
        if let (Some(a), Some((_, tb, _, _))) = (input.aq.front(), input.audio.as_ref()) {
            let layout = if a.channel_layout().is_empty() {
                ff::ChannelLayout::default(i32::from(a.channels().max(1)))
            } else {
                a.channel_layout()
            };
            let args = format!(
                "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
                tb.numerator(),
                tb.denominator(),
                a.rate(),
                a.format().name(),
                layout.bits()
            );
            g.add(
                &ff::filter::find("abuffer").expect("abuffer"),
                &format!("a{i}"),
                &args,
            )
            .map_err(err)?;
            names.push(format!("a{i}"));
        }
    }
    g.add(
        &ff::filter::find("buffersink").expect("buffersink"),
        "vout",
        "",
    )
    .map_err(err)?;
    g.add(
        &ff::filter::find("abuffersink").expect("abuffersink"),
        "aout",
        "",
    )
    .map_err(err)?;
    parse(&mut g, &names, &["vout", "aout"], spec).map_err(err)?;
    g.validate().map_err(err)?;
    Ok(g)
}

/// A list of open pads, in order: each filter's pad 0 under its own name
/// as the label. The caller frees it.
fn open_pads(
    g: &mut ff::filter::Graph,
    names: &[&str],
) -> std::result::Result<*mut ff::ffi::AVFilterInOut, ff::Error> {
    // Every name is looked up first, so a missing one leaks nothing.
    let mut pads = Vec::with_capacity(names.len());
    for &name in names {
        let mut ctx = g.get(name).ok_or(ff::Error::InvalidData)?;
        let label = std::ffi::CString::new(name).map_err(|_| ff::Error::InvalidData)?;
        // SAFETY: the context belongs to `g`, which outlives the parse.
        pads.push((label, unsafe { ctx.as_mut_ptr() }));
    }
    let mut head: *mut ff::ffi::AVFilterInOut = std::ptr::null_mut();
    let mut tail: *mut ff::ffi::AVFilterInOut = std::ptr::null_mut();
    for (label, ctx) in pads {
        // SAFETY: a fresh AVFilterInOut, filled and linked before use.
        unsafe {
            let io = ff::ffi::avfilter_inout_alloc();
            if io.is_null() {
                ff::ffi::avfilter_inout_free(&mut head);
                return Err(ff::Error::Other {
                    errno: ff::ffi::ENOMEM,
                });
            }
            (*io).name = ff::ffi::av_strdup(label.as_ptr());
            (*io).filter_ctx = ctx;
            (*io).pad_idx = 0;
            (*io).next = std::ptr::null_mut();
            if tail.is_null() {
                head = io;
            } else {
                (*tail).next = io;
            }
            tail = io;
        }
    }
    Ok(head)
}

/// Links `spec` between the graph's `sources` and `sinks`, each named by
/// its label in `spec`. (`ffmpeg_next`'s `Parser` keeps at most two of
/// each: it appends every further one to the first's `next`.)
fn parse(
    g: &mut ff::filter::Graph,
    sources: &[String],
    sinks: &[&str],
    spec: &str,
) -> std::result::Result<(), ff::Error> {
    use std::ffi::CString;
    let spec = CString::new(spec).map_err(|_| ff::Error::InvalidData)?;
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    let mut outputs = open_pads(g, &sources)?;
    let mut inputs = match open_pads(g, sinks) {
        Ok(l) => l,
        Err(e) => {
            // SAFETY: the list built above, freed once.
            unsafe { ff::ffi::avfilter_inout_free(&mut outputs) };
            return Err(e);
        }
    };
    // SAFETY: the graph is valid; the lists are ours to pass and free.
    let result = unsafe {
        let r = ff::ffi::avfilter_graph_parse_ptr(
            g.as_mut_ptr(),
            spec.as_ptr(),
            &mut inputs,
            &mut outputs,
            std::ptr::null_mut(),
        );
        ff::ffi::avfilter_inout_free(&mut inputs);
        ff::ffi::avfilter_inout_free(&mut outputs);
        r
    };
    if result < 0 {
        Err(ff::Error::from(result))
    } else {
        Ok(())
    }
}

/// The intermediate file: libx264 + AAC in MP4.
struct Sink {
    octx: ff::format::context::Output,
    venc: ff::encoder::Video,
    aenc: ff::encoder::Audio,
    vtb: Rational,
    atb: Rational,
    vstream_tb: Rational,
    astream_tb: Rational,
    audio_frame_size: u32,
    frames: u64,
    samples: u64,
}

impl Sink {
    fn open(out: &Path, canvas: &Canvas) -> Result<Self> {
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

    fn video(&mut self, frame: Option<&ff::frame::Video>) -> std::result::Result<(), ff::Error> {
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

    fn audio(&mut self, frame: Option<&ff::frame::Audio>) -> std::result::Result<(), ff::Error> {
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

    fn finish(&mut self) -> std::result::Result<(), ff::Error> {
        self.video(None)?;
        self.audio(None)?;
        self.octx.write_trailer()
    }
}

/// Encodes every picture the graph has ready; true once it has ended.
fn drain_video(graph: &mut ff::filter::Graph, sink: &mut Sink) -> Result<bool> {
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

fn drain_audio(graph: &mut ff::filter::Graph, sink: &mut Sink) -> Result<bool> {
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
