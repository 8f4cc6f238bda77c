//! Runs a composition graph: decodes every input, feeds the graph in
//! output-time order (the input whose demuxer is furthest behind on the
//! composition's timeline reads next, so frames waiting in the graph stay
//! a few packets' worth whatever the inputs' lengths), and encodes what
//! comes out as the intermediate MP4 (H.264 at high quality + AAC) the
//! ladder then transcodes like any upload.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ff::Rational;
use ffmpeg_next as ff;

use super::compose::Canvas;
use super::sink::{drain_audio, drain_video, Sink};
use crate::error::{Location, MediaError, RejectCode, Result};
use crate::probe::SourceInfo;

/// How far past a trimmed input's end the demuxer reads (reordered
/// pictures and the sound's packets interleaved after the last picture)
/// before that input is closed.
const READ_PAST_END_SECS: f64 = 1.0;
/// More undecodable packets than this and the input is not damaged video
/// but something else.
const MAX_DAMAGED: u64 = 10_000;
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

pub(super) fn located(file: &Path, stream: Option<usize>, secs: Option<f64>) -> Location {
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
        let args = crate::graph_src::buffer_args(v, input.vtb);
        g.add(
            &ff::filter::find("buffer").expect("buffer"),
            &format!("v{i}"),
            &args,
        )
        .map_err(err)?;
        names.push(format!("v{i}"));
        if let (Some(a), Some((_, tb, _, _))) = (input.aq.front(), input.audio.as_ref()) {
            let args = crate::graph_src::abuffer_args(a, *tb);
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
