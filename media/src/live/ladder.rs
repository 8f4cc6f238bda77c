//! The live ladder: a camera's frames → the same decode/scale/encode
//! backends uploads use → one fMP4 fragment per rung every GOP → segments
//! published together in the channel's [`LiveDir`].
//!
//! A *run* is one connection's worth of input: it starts with the source's
//! description ([`Input::Start`]) and ends at a gap (the camera dropped) or
//! a stop. Each run has fresh decoders, encoders and init segments and opens
//! with a discontinuity; segment numbers carry on across runs.
//!
//! Timing: the decoder's normalising filter makes the frame rate constant;
//! frame `n` gets pts `n`, an IDR every `gop` frames on every rung at the
//! same `n` (x264 with `tune=zerolatency`: no B-frames, no look-ahead, so a
//! packet leaves with its frame) and a fragment is cut on each IDR. Audio
//! packets are held until the video segment they belong to is cut.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ff::Rational;
use ffmpeg_next as ff;

use super::audio::{AudioSource, LiveAudio};
use super::fmp4::{Fragment, FragmentMuxer};
use super::master::LiveVariant;
use super::window::LiveDir;
use super::LiveStats;
use crate::backend::{
    DecodeInput, EncoderSettings, FrameDescription, Scaler, Stages, VideoDecoder, VideoEncoder,
};
use crate::error::{MediaError, Result};
use crate::plan::LadderPlan;
use crate::playlist::AUDIO_DIR;

/// What the source is, at the start of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInput {
    /// `h264` or `hevc`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// From the SDP or the SPS; 30 fps when the camera does not say.
    pub frame_rate: Option<(u32, u32)>,
}

/// One message from the ingest side.
#[derive(Debug)]
pub enum Input {
    Start {
        video: VideoInput,
        audio: Option<AudioSource>,
        /// Wall clock at the run's first frame: the program date-time anchor.
        at: SystemTime,
    },
    /// An access unit in Annex B with its time since the run started.
    Video {
        data: Vec<u8>,
        since_start: Duration,
        key: bool,
    },
    /// A camera audio frame at `pts` in its own clock, counted from the run's
    /// start (the ingest side aligns the two clocks at their first frames).
    Audio { data: Vec<u8>, pts: i64 },
    /// The source went away: close the run (its last segment may be short).
    Gap,
}

#[derive(Debug, Clone)]
pub struct LadderConfig {
    /// Rung heights (720, 480, 360 ...); empty = every standard rung that fits.
    pub rungs: Vec<u32>,
    pub preset: String,
    /// Where each stage runs (a reservation the caller holds): NVDEC takes
    /// the camera's Annex B as it comes and scales every rung in one launch,
    /// as for uploads. A GPU stage that fails to open runs the run on the
    /// CPU instead.
    pub placement: hardware::Placement,
}

impl Default for LadderConfig {
    fn default() -> Self {
        Self {
            rungs: vec![720, 480, 360],
            preset: "veryfast".into(),
            placement: hardware::Placement::CPU,
        }
    }
}

struct Rung {
    name: String,
    scaler: Box<dyn Scaler>,
    encoder: Box<dyn VideoEncoder>,
    muxer: FragmentMuxer,
    time_base: Rational,
    done: VecDeque<Fragment>,
}

struct AudioTrack {
    audio: LiveAudio,
    muxer: FragmentMuxer,
    held: VecDeque<ff::Packet>,
}

struct Run {
    plan: LadderPlan,
    /// Wall clock of the ingest run's start, and this ladder run's first
    /// frame's time after it (non-zero when reopened after an error).
    at: SystemTime,
    offset: Option<Duration>,
    decoder: Box<dyn VideoDecoder>,
    /// The backends of this run (the placement's, or the CPU after a GPU
    /// stage failed to open).
    stages: Stages,
    settings: EncoderSettings,
    /// Built at the first decoded frame (the encoders copy its colours).
    rungs: Vec<Rung>,
    audio_source: Option<AudioSource>,
    audio: Option<AudioTrack>,
    frames: i64,
}

pub struct Ladder {
    cfg: LadderConfig,
    dir: LiveDir,
    run: Option<Run>,
    /// The source of a run dropped after an error: reopened at the next key
    /// frame.
    reopen: Option<(VideoInput, Option<AudioSource>, SystemTime)>,
    stats: Arc<LiveStats>,
}

fn video_parameters(v: &VideoInput) -> Result<ff::codec::Parameters> {
    let id = match v.codec.as_str() {
        "h264" => ff::ffi::AVCodecID::AV_CODEC_ID_H264,
        "hevc" => ff::ffi::AVCodecID::AV_CODEC_ID_HEVC,
        other => {
            return Err(MediaError::InvalidRequest(format!(
                "live video {other}: the box takes H.264 and H.265 cameras"
            )))
        }
    };
    let mut p = ff::codec::Parameters::new();
    // SAFETY: plain field writes on parameters we own.
    unsafe {
        let raw = p.as_mut_ptr();
        (*raw).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
        (*raw).codec_id = id;
        (*raw).width = v.width as i32;
        (*raw).height = v.height as i32;
    }
    Ok(p)
}

impl Ladder {
    pub fn new(cfg: LadderConfig, dir: LiveDir, stats: Arc<LiveStats>) -> Self {
        Self {
            cfg,
            dir,
            run: None,
            reopen: None,
            stats,
        }
    }

    pub fn dir(&self) -> &LiveDir {
        &self.dir
    }

    pub fn push(&mut self, input: Input) -> Result<()> {
        match input {
            Input::Start { video, audio, at } => {
                self.close_run()?;
                self.reopen = Some((video.clone(), audio.clone(), at));
                self.run = Some(self.open_run(&video, audio, at)?);
                Ok(())
            }
            Input::Video {
                data,
                since_start,
                key,
            } => {
                if self.run.is_none() && key {
                    if let Some((video, audio, at)) = self.reopen.clone() {
                        self.run = Some(self.open_run(&video, audio, at)?);
                    }
                }
                self.video(&data, since_start)
            }
            Input::Audio { data, pts } => self.audio(&data, pts),
            Input::Gap => {
                self.reopen = None;
                self.close_run()
            }
        }
    }

    /// Drops the current run after an error, keeping what was published;
    /// the next key frame of the same source opens a new run.
    pub fn reset(&mut self) {
        self.run = None;
    }

    /// Closes the run and ends every playlist (`EXT-X-ENDLIST`).
    pub fn stop(&mut self) -> Result<()> {
        self.close_run()?;
        if self.dir.next_seq() > 0 {
            self.dir.end()?;
        }
        Ok(())
    }

    /// Publishes what is encoded but leaves the playlists open: the channel
    /// goes on after a restart of the box (a discontinuity, no ENDLIST).
    pub fn suspend(&mut self) -> Result<()> {
        self.close_run()
    }

    fn open_run(
        &self,
        video: &VideoInput,
        audio: Option<AudioSource>,
        at: SystemTime,
    ) -> Result<Run> {
        // A camera that states no rate, or a nonsensical one, runs at 30.
        let (num, den) = video
            .frame_rate
            .filter(|&(n, d)| d > 0 && (1.0..=120.0).contains(&(f64::from(n) / f64::from(d))))
            .map(|(n, d)| {
                let g = gcd(n, d);
                (n / g, d / g)
            })
            .unwrap_or((30, 1));
        let plan = LadderPlan::live(
            video.width,
            video.height,
            (num as i32, den as i32),
            &self.cfg.rungs,
            None,
        )?;
        let input = || -> Result<DecodeInput<'_>> {
            Ok(DecodeInput {
                parameters: video_parameters(video)?,
                time_base: Rational::new(1, 90_000),
                plan: &plan,
            })
        };
        let cpu = Stages::for_placement(hardware::Placement::CPU)?;
        let placed = if self.cfg.placement == hardware::Placement::CPU {
            Ok(cpu)
        } else {
            Stages::for_placement(self.cfg.placement)
        };
        let (stages, decoder) = match placed
            .and_then(|s| Ok((s, s.decode.video_decoder(input()?)?)))
        {
            Ok(opened) => opened,
            Err(e) if self.cfg.placement != hardware::Placement::CPU => {
                tracing::warn!(error = %e, placement = %self.cfg.placement, "live: a GPU stage did not open; this run is on the CPU");
                self.stats.set_error(format!(
                    "GPU stages ({}) did not open, the CPU runs this run: {e}",
                    self.cfg.placement
                ));
                (cpu, cpu.decode.video_decoder(input()?)?)
            }
            Err(e) => return Err(e),
        };
        Ok(Run {
            plan,
            at,
            offset: None,
            decoder,
            stages,
            settings: EncoderSettings {
                preset: self.cfg.preset.clone(),
                tune: Some("zerolatency".into()),
            },
            rungs: Vec::new(),
            audio_source: audio.filter(AudioSource::supported),
            audio: None,
            frames: 0,
        })
    }

    fn video(&mut self, data: &[u8], since_start: Duration) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(()); // nothing before a Start (the ingest skips to a key frame)
        };
        let offset = *run.offset.get_or_insert(since_start);
        let mut packet = ff::Packet::copy(data);
        let pts = (since_start.saturating_sub(offset).as_secs_f64() * 90_000.0).round() as i64;
        packet.set_pts(Some(pts));
        packet.set_dts(Some(pts));
        run.decoder.send_packet(&packet)?;
        self.drain_decoder()
    }

    fn audio(&mut self, data: &[u8], pts: i64) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let rate = match &run.audio_source {
            Some(AudioSource::Aac { sample_rate, .. } | AudioSource::Other { sample_rate, .. }) => {
                f64::from(*sample_rate)
            }
            None => return Ok(()),
        };
        let pts = pts - (run.offset.unwrap_or_default().as_secs_f64() * rate).round() as i64;
        if pts < 0 {
            return Ok(()); // before this run's first frame
        }
        if let Some(a) = run.audio.as_mut() {
            for p in a.audio.push(data, pts)? {
                a.held.push_back(p);
            }
        }
        Ok(())
    }

    fn drain_decoder(&mut self) -> Result<()> {
        loop {
            let Some(run) = self.run.as_mut() else {
                return Ok(());
            };
            let Some(frame) = run.decoder.receive_frame()? else {
                return Ok(());
            };
            if run.rungs.is_empty() {
                self.start_tracks(&frame)?;
            }
            self.encode(Some(frame))?;
            self.publish()?;
        }
    }

    /// Encoders, muxers and init segments, at the run's first frame.
    fn start_tracks(&mut self, first: &ff::frame::Video) -> Result<()> {
        let run = self.run.as_mut().expect("called with a run");
        let desc = FrameDescription {
            color_space: first.color_space(),
            color_primaries: first.color_primaries(),
            color_trc: first.color_transfer_characteristic(),
        };
        for rung in &run.plan.rungs {
            let encoder = run
                .stages
                .encode
                .encoder(rung, &run.plan, &desc, &run.settings)?;
            let muxer = FragmentMuxer::new(&encoder.parameters(), encoder.time_base())?;
            run.rungs.push(Rung {
                name: rung.name.clone(),
                scaler: run.stages.scale.scaler(rung)?,
                time_base: encoder.time_base(),
                encoder,
                muxer,
                done: VecDeque::new(),
            });
        }
        if let Some(source) = &run.audio_source {
            let audio = LiveAudio::new(source)?;
            let muxer = FragmentMuxer::new(&audio.parameters, audio.time_base)?;
            run.audio = Some(AudioTrack {
                audio,
                muxer,
                held: VecDeque::new(),
            });
        }
        let mut inits: Vec<(&str, &[u8])> = run
            .rungs
            .iter()
            .map(|r| (r.name.as_str(), r.muxer.init_segment()))
            .collect();
        if let Some(a) = &run.audio {
            inits.push((AUDIO_DIR, a.muxer.init_segment()));
        }
        self.dir.start_run(&inits)?;
        let fps = f64::from(run.plan.frame_rate.0) / f64::from(run.plan.frame_rate.1);
        let variants: Vec<LiveVariant> = run
            .plan
            .rungs
            .iter()
            .zip(&run.rungs)
            .map(|(plan, r)| LiveVariant {
                name: plan.name.clone(),
                width: plan.width,
                height: plan.height,
                max_bitrate: plan.max_bitrate,
                codec: codec_string(&r.encoder.parameters()),
                frame_rate: fps,
                average_bitrate: None,
            })
            .collect();
        super::master::write(self.dir.dir(), &variants, run.audio.is_some())
    }

    /// Encodes one frame on every rung (`None` drains them), cutting each
    /// rung's fragment on its IDRs.
    fn encode(&mut self, frame: Option<ff::frame::Video>) -> Result<()> {
        let run = self.run.as_mut().expect("called with a run");
        let gop = i64::from(run.plan.gop_frames);
        let n = run.frames;
        let frame = frame.map(|mut f| {
            f.set_pts(Some(n));
            f.set_kind(if n % gop == 0 {
                ff::picture::Type::I
            } else {
                ff::picture::Type::None
            });
            f
        });
        if frame.is_some() {
            run.frames += 1;
        }
        for r in &mut run.rungs {
            match &frame {
                Some(f) => match r.scaler.scale(f)? {
                    Some(scaled) => r.encoder.send_frame(Some(&scaled))?,
                    None => r.encoder.send_frame(Some(f))?,
                },
                None => r.encoder.send_frame(None)?,
            }
            while let Some(p) = r.encoder.receive_packet()? {
                if p.is_key() && r.muxer.has_samples() {
                    if let Some(f) = r.muxer.cut()? {
                        r.done.push_back(f);
                    }
                }
                r.muxer.write(p, 1)?;
            }
            if frame.is_none() {
                if let Some(f) = r.muxer.cut()? {
                    r.done.push_back(f);
                }
            }
        }
        Ok(())
    }

    /// Commits every segment that all rungs have finished, with the audio
    /// that falls before its end.
    fn publish(&mut self) -> Result<()> {
        let run = self.run.as_mut().expect("called with a run");
        while !run.rungs.is_empty() && run.rungs.iter().all(|r| !r.done.is_empty()) {
            let fragments: Vec<Fragment> = run
                .rungs
                .iter_mut()
                .map(|r| r.done.pop_front().expect("checked"))
                .collect();
            let tb = run.rungs[0].time_base;
            let (start, end) = (fragments[0].start, fragments[0].end);
            let secs = |t: i64, tb: Rational| t as f64 * f64::from(tb);
            let mut segments: Vec<(&str, &[u8], f64)> = run
                .rungs
                .iter()
                .zip(&fragments)
                .map(|(r, f)| {
                    (
                        r.name.as_str(),
                        f.bytes.as_slice(),
                        secs(f.end - f.start, r.time_base),
                    )
                })
                .collect();
            let audio_fragment = match run.audio.as_mut() {
                Some(a) => {
                    let atb = a.audio.time_base;
                    let until = (secs(end, tb) / f64::from(atb)).round() as i64;
                    while a.held.front().is_some_and(|p| p.pts().unwrap_or(0) < until) {
                        let p = a.held.pop_front().expect("checked");
                        a.muxer.write(p, a.audio.packet_duration())?;
                    }
                    a.muxer.cut()?.map(|f| {
                        let d = secs(f.end - f.start, atb);
                        (f, d)
                    })
                }
                None => None,
            };
            if let Some((f, d)) = &audio_fragment {
                segments.push((AUDIO_DIR, f.bytes.as_slice(), *d));
            }
            let begins = run.at
                + run.offset.unwrap_or_default()
                + Duration::from_secs_f64(secs(start, tb).max(0.0));
            self.dir.commit(&segments, begins)?;
            let ends = begins + Duration::from_secs_f64(secs(end - start, tb));
            let latency = SystemTime::now()
                .duration_since(ends)
                .unwrap_or(Duration::ZERO);
            self.stats.segments.fetch_add(1, Ordering::Relaxed);
            self.stats
                .latency_ms
                .store(latency.as_millis() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn close_run(&mut self) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        if !run.rungs.is_empty() {
            run.decoder.send_eof()?;
            self.drain_decoder()?;
            self.encode(None)?;
            self.publish()?;
        }
        self.run = None;
        Ok(())
    }
}

/// RFC 6381 codec string of an encoder's parameters (H.264 from its SPS).
fn codec_string(p: &ff::codec::Parameters) -> String {
    // SAFETY: extradata/extradata_size describe one buffer owned by `p`.
    let extradata = unsafe {
        let raw = p.as_ptr();
        if (*raw).extradata.is_null() || (*raw).extradata_size <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts((*raw).extradata, (*raw).extradata_size as usize)
        }
    };
    crate::cmaf::avc_codec_string(extradata).unwrap_or_else(|| "avc1.640028".into())
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}
