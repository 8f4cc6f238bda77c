//! The job: probe → plan → one decode feeding N scale+encode branches and the
//! audio branch in parallel → package → poster. Output is staged next to the
//! destination and moved into place only when complete, so a reader never sees
//! half a ladder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use ffmpeg_next as ff;
use serde::Serialize;

use hardware::{BackendRequest, Inventory, Placement, Workload};

use crate::audio::{self, AudioInput};
use crate::backend::{DecodeInput, EncoderSettings, FrameDescription, Stages};
use crate::cmaf::{avc_codec_string, Track, TrackWriter};
use crate::error::{Location, MediaError, RejectCode, Result};
use crate::plan::{LadderPlan, Rung};
use crate::playlist::{self, Bandwidth, Variant};
use crate::probe::{probe, Limits, SourceInfo};
use crate::repair::Repairs;
use crate::thumbnail::{PosterPicker, POSTER};

/// Frames in flight per rung: enough to absorb jitter between encoders,
/// small enough that 4K ladders do not balloon memory.
const FRAME_QUEUE: usize = 8;

#[derive(Debug, Clone)]
pub struct TranscodeOptions {
    pub backend: BackendRequest,
    /// Rung heights to produce (subset of the standard ladder; empty = all).
    pub rungs: Vec<u32>,
    pub limits: Limits,
    pub encoder: EncoderSettings,
    /// Set from another thread to stop the job: it ends with
    /// `MediaError::Cancelled` and leaves nothing behind.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            backend: BackendRequest::Auto,
            rungs: Vec::new(),
            limits: Limits::default(),
            encoder: EncoderSettings::default(),
            cancel: None,
        }
    }
}

/// Progress of a job, in the order it happens. Rung percentages only rise.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    Started {
        rungs: Vec<String>,
        expected_frames: u64,
        placement: String,
    },
    Rung {
        rung: String,
        percent: u8,
    },
    Packaging,
    Completed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenditionSummary {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub segments: usize,
    pub playlist: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct LadderOutput {
    pub dir: PathBuf,
    pub master: PathBuf,
    pub poster: PathBuf,
    pub source: SourceInfo,
    pub plan: LadderPlan,
    pub placement: Placement,
    pub frames: u64,
    pub renditions: Vec<RenditionSummary>,
    pub audio: Option<PathBuf>,
    /// What was wrong with the input and worked around (dropped damaged
    /// packets, a truncated tail); empty for a clean input.
    pub repairs: Vec<String>,
}

/// Transcodes `input` into an HLS ladder in `out_dir`. `out_dir` must be
/// absent, empty, or hold an earlier ladder (which is replaced).
pub fn transcode(
    input: &Path,
    out_dir: &Path,
    opts: &TranscodeOptions,
    inventory: &Inventory,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> Result<LadderOutput> {
    crate::init();
    let source = probe(input, &opts.limits)?;
    let plan = LadderPlan::new(&source, &opts.rungs)?;
    check_destination(out_dir)?;
    let reservation = inventory.reserve(opts.backend, &workload(&source, &plan))?;
    let mut placement = reservation.placement;
    let staging = staging_dir(out_dir);
    let fresh_staging = || -> Result<()> {
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| MediaError::io("clearing", &staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| MediaError::io("creating", &staging, e))
    };
    fresh_staging()?;
    let mut result = Stages::for_placement(placement)
        .and_then(|stages| run(&source, &plan, &staging, &stages, opts, progress));
    if placement.uses_gpu() {
        if let Err(e) = &result {
            if gpu_fault(e) {
                // Nothing of the GPU attempt is kept: the CPU run starts over.
                GPU_FALLBACKS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(input = %input.display(), %placement, error = %e, "GPU path failed; rerunning the job on the CPU");
                drop(reservation);
                placement = Placement::CPU;
                fresh_staging()?;
                result = run(
                    &source,
                    &plan,
                    &staging,
                    &Stages::for_placement(placement)?,
                    opts,
                    progress,
                );
            }
        }
    }
    match result {
        Ok(tracks) => {
            progress(ProgressEvent::Packaging);
            let out = package(&staging, out_dir, &source, &plan, placement, &tracks)?;
            publish(&staging, out_dir)?;
            progress(ProgressEvent::Completed);
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Jobs whose GPU attempt failed and were rerun on the CPU, since start.
static GPU_FALLBACKS: AtomicU64 = AtomicU64::new(0);

pub fn gpu_fallbacks() -> u64 {
    GPU_FALLBACKS.load(Ordering::Relaxed)
}

/// Failures the CPU may not share: everything but a refusal of the input
/// and a cancel.
fn gpu_fault(e: &MediaError) -> bool {
    e.reject_code().is_none() && !matches!(e, MediaError::Cancelled | MediaError::InvalidRequest(_))
}

/// The shape of a job, for placement.
pub fn workload(source: &SourceInfo, plan: &LadderPlan) -> Workload {
    Workload {
        codec: source.video.codec.clone(),
        bit_depth: source.video.bit_depth,
        width: source.video.width,
        height: source.video.height,
        rotated: plan.rotation != 0,
        rungs: plan.rungs.iter().map(|r| (r.width, r.height)).collect(),
    }
}

fn staging_dir(out_dir: &Path) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ladder".into());
    out_dir.with_file_name(format!(".{name}.partial"))
}

fn check_destination(out_dir: &Path) -> Result<()> {
    if out_dir.file_name().is_none() {
        return Err(MediaError::InvalidRequest(format!(
            "`{}` cannot be an output directory",
            out_dir.display()
        )));
    }
    match std::fs::read_dir(out_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MediaError::io("reading", out_dir, e)),
        Ok(mut entries) => {
            if entries.next().is_none() || out_dir.join(playlist::MASTER).is_file() {
                Ok(())
            } else {
                Err(MediaError::InvalidRequest(format!(
                    "`{}` is not empty and holds no earlier ladder; refusing to overwrite it",
                    out_dir.display()
                )))
            }
        }
    }
}

/// Swaps the finished staging directory into place.
fn publish(staging: &Path, out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        let old = out_dir.with_file_name(format!(
            ".{}.old",
            out_dir.file_name().expect("checked").to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(out_dir, &old).map_err(|e| MediaError::io("moving aside", out_dir, e))?;
        std::fs::rename(staging, out_dir).map_err(|e| MediaError::io("publishing", out_dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| MediaError::io("removing", &old, e))?;
    } else {
        if let Some(parent) = out_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| MediaError::io("creating", parent, e))?;
        }
        std::fs::rename(staging, out_dir).map_err(|e| MediaError::io("publishing", out_dir, e))?;
    }
    Ok(())
}

/// Frames, the rungs' tracks, the audio track, and what was repaired.
type Tracks = (u64, Vec<Track>, Option<Track>, Vec<String>);

fn segment_secs(plan: &LadderPlan) -> (i64, i64) {
    (
        i64::from(plan.segment_frames) * i64::from(plan.frame_rate.1),
        i64::from(plan.frame_rate.0),
    )
}

fn run(
    source: &SourceInfo,
    plan: &LadderPlan,
    dir: &Path,
    stages: &Stages,
    opts: &TranscodeOptions,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> Result<Tracks> {
    progress(ProgressEvent::Started {
        rungs: plan.rungs.iter().map(|r| r.name.clone()).collect(),
        expected_frames: plan.expected_frames,
        placement: stages.describe(),
    });
    let file = &source.path;
    let repairs = Repairs::default();
    let repairs = &repairs;
    let at_frame = |index: u64| Location {
        file: file.clone(),
        stream: Some(source.video.index),
        timestamp: Some(plan.frames_to_secs(index)),
    };
    let mut ictx = ff::format::input(file)
        .map_err(|e| MediaError::rejected(file, RejectCode::CorruptMedia, e.to_string()))?;
    let vindex = source.video.index;
    let vstream = ictx.stream(vindex).expect("probed");
    let vtb = vstream.time_base();
    let mut decoder = stages.decode.video_decoder(DecodeInput {
        parameters: vstream.parameters(),
        time_base: vtb,
        plan,
    })?;
    let audio_input = match (&source.audio, &plan.audio) {
        (Some(a), Some(_)) => {
            let s = ictx.stream(a.index).expect("probed");
            let origin = ff::Rescale::rescale(&source.video.start_pts, vtb, s.time_base());
            Some(AudioInput {
                file: file.clone(),
                stream: a.index,
                parameters: s.parameters(),
                time_base: s.time_base(),
                origin,
            })
        }
        _ => None,
    };
    let seg = segment_secs(plan);
    let delay = stages.encode.reorder_delay(plan, &opts.encoder)?;
    let lead_in = (
        i64::from(delay) * i64::from(plan.frame_rate.1),
        i64::from(plan.frame_rate.0),
    );
    let top = &plan.rungs[0];
    let mut poster = PosterPicker::new(top.width, top.height, plan.fps());

    let job = RungJob {
        source,
        plan,
        stages,
        settings: &opts.encoder,
        delay,
        progress,
    };
    let job = &job;
    std::thread::scope(|scope| -> Result<Tracks> {
        let mut senders: Vec<Sender<Arc<ff::frame::Video>>> = Vec::new();
        let mut rung_workers = Vec::new();
        for rung in &plan.rungs {
            let (tx, rx) = bounded::<Arc<ff::frame::Video>>(FRAME_QUEUE);
            senders.push(tx);
            let rung_dir = dir.join(&rung.name);
            rung_workers.push(
                std::thread::Builder::new()
                    .name(format!("rung-{}", rung.name))
                    .spawn_scoped(scope, move || encode_rung(job, rung, &rung_dir, rx))
                    .map_err(|e| MediaError::io("spawning a rung worker", dir, e))?,
            );
        }
        let (audio_tx, audio_worker) = match (audio_input, &plan.audio) {
            (Some(input), Some(aplan)) => {
                let (tx, rx) = bounded::<ff::Packet>(256);
                let adir = dir.join(playlist::AUDIO_DIR);
                let h = std::thread::Builder::new()
                    .name("audio".into())
                    .spawn_scoped(scope, move || {
                        audio::run(input, aplan, &adir, seg, lead_in, rx, repairs)
                    })
                    .map_err(|e| MediaError::io("spawning the audio worker", dir, e))?;
                (Some(tx), Some(h))
            }
            _ => (None, None),
        };

        let mut frames = 0u64;
        let decode_result = (|| -> Result<()> {
            let mut emit = |frame: ff::frame::Video, frames: &mut u64| -> Result<bool> {
                let mut frame = frame;
                let index = *frames;
                if opts
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
                {
                    return Err(MediaError::Cancelled);
                }
                if plan.frames_to_secs(index) > opts.limits.max_duration_secs + 1.0 {
                    return Err(MediaError::rejected(
                        file,
                        RejectCode::DurationLimit,
                        format!(
                            "the video runs past the {:.0} s limit",
                            opts.limits.max_duration_secs
                        ),
                    ));
                }
                frame.set_pts(Some(index as i64));
                frame.set_kind(if index.is_multiple_of(u64::from(plan.gop_frames)) {
                    ff::picture::Type::I
                } else {
                    ff::picture::Type::None
                });
                if poster.wants(index) {
                    let host = crate::backend::nvidia::download_top(&frame)
                        .map_err(|e| e.located(|| at_frame(index)))?;
                    poster
                        .offer(index, host.as_ref().unwrap_or(&frame))
                        .map_err(|e| e.located(|| at_frame(index)))?;
                }
                *frames += 1;
                let frame = Arc::new(frame);
                for tx in &senders {
                    if tx.send(Arc::clone(&frame)).is_err() {
                        return Ok(false); // a worker stopped; its error is collected below
                    }
                }
                Ok(true)
            };
            let mut packet = ff::Packet::empty();
            // The latest video time read, to tell a file cut short (the
            // demuxer just reaches its end) from a complete one.
            let mut last_video_secs = 0f64;
            loop {
                match packet.read(&mut ictx) {
                    Ok(()) => {}
                    Err(ff::Error::Eof) => break,
                    Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => continue,
                    Err(e) => {
                        // Truncated or damaged tail: keep what decoded, as players do.
                        tracing::warn!(file = %file.display(), error = %e, "input ends early; finishing with what was read");
                        repairs.ended_early.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                let idx = packet.stream();
                if idx == vindex {
                    if let Some(p) = packet.pts().or(packet.dts()) {
                        last_video_secs = last_video_secs.max(p as f64 * f64::from(vtb));
                    }
                    let at = || Location {
                        file: file.clone(),
                        stream: Some(vindex),
                        timestamp: packet.pts().map(|p| p as f64 * f64::from(vtb)),
                    };
                    decoder.send_packet(&packet).map_err(|e| e.located(at))?;
                    while let Some(f) = decoder.receive_frame().map_err(|e| e.located(at))? {
                        if !emit(f, &mut frames)? {
                            return Ok(());
                        }
                    }
                } else if let Some(tx) = audio_tx
                    .as_ref()
                    .filter(|_| source.audio.as_ref().is_some_and(|a| a.index == idx))
                {
                    if tx
                        .send(std::mem::replace(&mut packet, ff::Packet::empty()))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            // The container promised more than its packets hold: the tail
            // is missing (a 1 s or 10 % shortfall, whichever is larger).
            let shortfall = source.duration_secs - last_video_secs;
            if shortfall > (source.duration_secs * 0.1).max(1.0) {
                repairs.ended_early.store(true, Ordering::Relaxed);
            }
            let at_end = at_frame(frames);
            decoder
                .send_eof()
                .map_err(|e| e.located(|| at_end.clone()))?;
            while let Some(f) = decoder
                .receive_frame()
                .map_err(|e| e.located(|| at_end.clone()))?
            {
                if !emit(f, &mut frames)? {
                    return Ok(());
                }
            }
            Ok(())
        })();
        drop(senders);
        drop(audio_tx);

        let mut video = Vec::new();
        let mut first_err = decode_result.err();
        for (h, rung) in rung_workers.into_iter().zip(&plan.rungs) {
            match join(h, &rung.name) {
                Ok(t) => video.push(t),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let audio = match audio_worker.map(|h| join(h, "audio")) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
                None
            }
            None => None,
        };
        if let Some(e) = first_err {
            return Err(e);
        }
        if frames == 0 {
            return Err(MediaError::rejected(
                file,
                RejectCode::CorruptMedia,
                "no video frame could be decoded",
            ));
        }
        poster.write(&dir.join(POSTER))?;
        repairs
            .video
            .fetch_add(decoder.damaged(), Ordering::Relaxed);
        Ok((frames, video, audio, repairs.describe()))
    })
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>, stage: &str) -> Result<T> {
    h.join().unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        Err(MediaError::Worker {
            stage: stage.into(),
            reason,
        })
    })
}

/// What every rung worker of one job shares.
struct RungJob<'a> {
    source: &'a SourceInfo,
    plan: &'a LadderPlan,
    stages: &'a Stages,
    settings: &'a EncoderSettings,
    /// The encoders' reorder delay, which audio was led in to match.
    delay: u32,
    progress: &'a (dyn Fn(ProgressEvent) + Sync),
}

fn encode_rung(
    job: &RungJob<'_>,
    rung: &Rung,
    dir: &Path,
    frames: Receiver<Arc<ff::frame::Video>>,
) -> Result<Track> {
    let RungJob {
        source,
        plan,
        stages,
        settings,
        delay,
        progress,
    } = *job;
    let mut scaler = stages.scale.scaler(rung)?;
    let mut encoder = None;
    let mut writer = None;
    let mut done = 0u64;
    let mut reported = 0u8;
    let tb = ff::Rational::new(plan.frame_rate.1, plan.frame_rate.0);
    let mut first_packet = true;
    let mut drain =
        |enc: &mut Box<dyn crate::backend::VideoEncoder>, writer: &mut TrackWriter| -> Result<()> {
            while let Some(p) = enc.receive_packet()? {
                if std::mem::take(&mut first_packet) && p.dts() != Some(-i64::from(delay)) {
                    // Audio was led in for `delay`; a different delay would desync it.
                    return Err(MediaError::Worker {
                        stage: rung.name.clone(),
                        reason: format!(
                            "encoder delay {:?} differs from the planned {delay} frames",
                            p.dts().map(|d| -d)
                        ),
                    });
                }
                writer.write(p)?;
            }
            Ok(())
        };
    for src in frames {
        let at = || Location {
            file: source.path.clone(),
            stream: Some(source.video.index),
            timestamp: src.pts().map(|i| plan.frames_to_secs(i as u64)),
        };
        let scaled = scaler.scale(&src).map_err(|e| e.located(at))?;
        let frame = scaled.as_ref().unwrap_or(&src);
        if encoder.is_none() {
            let desc = FrameDescription {
                color_space: frame.color_space(),
                color_primaries: frame.color_primaries(),
                color_trc: frame.color_transfer_characteristic(),
            };
            let enc = stages
                .encode
                .encoder(rung, plan, &desc, settings)
                .map_err(|e| e.located(at))?;
            let params = enc.parameters();
            let codec = codec_string(&params).ok_or_else(|| MediaError::Packaging {
                path: dir.to_owned(),
                reason: "the encoder gave no SPS to derive the CODECS string from".into(),
            })?;
            writer = Some(TrackWriter::create(
                dir,
                params,
                tb,
                segment_secs(plan),
                1,
                codec,
            )?);
            encoder = Some(enc);
        }
        let (enc, w) = (
            encoder.as_mut().expect("set"),
            writer.as_mut().expect("set"),
        );
        enc.send_frame(Some(frame)).map_err(|e| e.located(at))?;
        drain(enc, w).map_err(|e| e.located(at))?;
        done += 1;
        let pct = ((done * 100) / plan.expected_frames.max(1)).min(99) as u8;
        if pct > reported {
            reported = pct;
            progress(ProgressEvent::Rung {
                rung: rung.name.clone(),
                percent: pct,
            });
        }
    }
    let (Some(mut enc), Some(mut w)) = (encoder, writer) else {
        return Err(MediaError::Worker {
            stage: rung.name.clone(),
            reason: "received no frames".into(),
        });
    };
    enc.send_frame(None)?;
    drain(&mut enc, &mut w)?;
    let track = w.finish()?;
    progress(ProgressEvent::Rung {
        rung: rung.name.clone(),
        percent: 100,
    });
    Ok(track)
}

fn codec_string(params: &ff::codec::Parameters) -> Option<String> {
    // SAFETY: extradata/extradata_size describe one buffer owned by params.
    let extra = unsafe {
        let p = params.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return None;
        }
        std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize)
    };
    avc_codec_string(extra)
}

/// Writes the playlists into `dir` (staging) and describes the ladder as it
/// will be once published at `published`.
fn package(
    dir: &Path,
    published: &Path,
    source: &SourceInfo,
    plan: &LadderPlan,
    placement: Placement,
    (frames, video, audio, repairs): &Tracks,
) -> Result<LadderOutput> {
    let (frames, audio) = (*frames, audio.as_ref());
    for t in video.iter().chain(audio) {
        playlist::write_media_playlist(t)?;
    }
    let variants: Vec<Variant<'_>> = plan
        .rungs
        .iter()
        .zip(video)
        .map(|(rung, track)| Variant {
            rung,
            track,
            frame_rate: plan.fps(),
        })
        .collect();
    let bws: Vec<(String, Bandwidth)> =
        playlist::write_master(dir, &variants, plan.audio.as_ref().zip(audio))?;
    let renditions = plan
        .rungs
        .iter()
        .zip(video)
        .zip(bws)
        .map(|((rung, track), (_, bw))| RenditionSummary {
            name: rung.name.clone(),
            width: rung.width,
            height: rung.height,
            codecs: track.codec.clone(),
            bandwidth: bw.peak,
            average_bandwidth: bw.average,
            segments: track.segments.len(),
            playlist: published.join(&rung.name).join(playlist::MEDIA),
        })
        .collect();
    Ok(LadderOutput {
        dir: published.to_owned(),
        master: published.join(playlist::MASTER),
        poster: published.join(POSTER),
        source: source.clone(),
        plan: plan.clone(),
        placement,
        frames,
        renditions,
        audio: audio.map(|_| published.join(playlist::AUDIO_DIR).join(playlist::MEDIA)),
        repairs: repairs.clone(),
    })
}
