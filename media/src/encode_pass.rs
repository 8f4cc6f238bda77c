//! One decode of the source feeding the scale+encode branch of each rung it
//! is asked for (a thread per rung, bounded queues) and, when asked, the
//! audio branch; every finished rung goes to the growing [`Ladder`] at
//! once, so it can be published while the others still encode.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use ffmpeg_next as ff;

use crate::audio::{self, AudioInput};
use crate::backend::{DecodeInput, EncoderSettings, FrameDescription, Stages};
use crate::cmaf::{avc_codec_string, Track, TrackWriter};
use crate::error::{Location, MediaError, RejectCode, Result};
use crate::package::Ladder;
use crate::plan::{LadderPlan, Rung};
use crate::playlist;
use crate::probe::SourceInfo;
use crate::repair::Repairs;
use crate::transcode::{join, ProgressEvent, TranscodeOptions};

/// Frames in flight per rung: enough to absorb jitter between encoders,
/// small enough that 4K ladders do not balloon memory.
const FRAME_QUEUE: usize = 8;

/// What one pass is asked to make. A pass with no rungs and no audio
/// still decodes the whole source (it checks it).
pub(crate) struct Pass<'a> {
    /// Indices into the plan's rungs.
    pub rungs: &'a [usize],
    /// Appended to each rung's directory name: a rung that replaces one
    /// already published gets new URLs (`1080pv2/…`).
    pub suffix: &'a str,
    /// The audio track's directory, when the pass encodes the audio.
    pub audio: Option<&'a str>,
}

/// What a pass read: frames decoded, what was repaired, and the audio
/// track when it made one, with the fingerprint of its sound (the rungs
/// went to the ladder as they finished).
pub(crate) struct PassOutput {
    pub frames: u64,
    pub repairs: Vec<String>,
    pub audio: Option<Track>,
    pub fingerprint: Option<crate::fingerprint::AudioFingerprint>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    source: &SourceInfo,
    plan: &LadderPlan,
    pass: &Pass<'_>,
    ladder: &Ladder<'_>,
    dir: &Path,
    stages: &Stages,
    opts: &TranscodeOptions,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> Result<PassOutput> {
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
        (Some(a), Some(_)) if pass.audio.is_some() => {
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

    let job = RungJob {
        source,
        plan,
        stages,
        settings: &opts.encoder,
        ladder,
        progress,
    };
    let job = &job;
    std::thread::scope(|scope| -> Result<PassOutput> {
        let mut senders: Vec<Sender<Arc<ff::frame::Video>>> = Vec::new();
        let mut rung_workers = Vec::new();
        for &index in pass.rungs {
            let rung = &plan.rungs[index];
            let (tx, rx) = bounded::<Arc<ff::frame::Video>>(FRAME_QUEUE);
            senders.push(tx);
            let rung_dir = dir.join(format!("{}{}", rung.name, pass.suffix));
            rung_workers.push(
                std::thread::Builder::new()
                    .name(format!("rung-{}", rung.name))
                    .spawn_scoped(scope, move || encode_rung(job, index, &rung_dir, rx))
                    .map_err(|e| MediaError::io("spawning a rung worker", dir, e))?,
            );
        }
        let (audio_tx, audio_worker) = match (audio_input, &plan.audio) {
            (Some(input), Some(aplan)) => {
                let (tx, rx) = bounded::<ff::Packet>(256);
                let adir = dir.join(pass.audio.unwrap_or(playlist::AUDIO_DIR));
                let cuts = plan.cuts();
                let h = std::thread::Builder::new()
                    .name("audio".into())
                    .spawn_scoped(scope, move || {
                        audio::run(input, aplan, &adir, cuts, rx, repairs)
                    })
                    .map_err(|e| MediaError::io("spawning the audio worker", dir, e))?;
                (Some(tx), Some(h))
            }
            _ => (None, None),
        };

        let mut frames = 0u64;
        let decode_result = (|| -> Result<()> {
            let emit = |frame: ff::frame::Video, frames: &mut u64| -> Result<bool> {
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
                frame.set_kind(if plan.is_idr(index) {
                    ff::picture::Type::I
                } else {
                    ff::picture::Type::None
                });
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

        let mut first_err = decode_result.err();
        for (h, &index) in rung_workers.into_iter().zip(pass.rungs) {
            if let Err(e) = join(h, &plan.rungs[index].name) {
                first_err.get_or_insert(e);
            }
        }
        let (audio, fingerprint) = match audio_worker.map(|h| join(h, "audio")) {
            Some(Ok((t, f))) => (Some(t), f),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
                (None, None)
            }
            None => (None, None),
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
        repairs
            .video
            .fetch_add(decoder.damaged(), Ordering::Relaxed);
        Ok(PassOutput {
            frames,
            repairs: repairs.describe(),
            audio,
            fingerprint,
        })
    })
}

/// What every rung worker of one job shares.
struct RungJob<'a> {
    source: &'a SourceInfo,
    plan: &'a LadderPlan,
    stages: &'a Stages,
    settings: &'a EncoderSettings,
    ladder: &'a Ladder<'a>,
    progress: &'a (dyn Fn(ProgressEvent) + Sync),
}

fn encode_rung(
    job: &RungJob<'_>,
    index: usize,
    dir: &Path,
    frames: Receiver<Arc<ff::frame::Video>>,
) -> Result<()> {
    let RungJob {
        source,
        plan,
        stages,
        settings,
        ladder,
        progress,
    } = *job;
    let rung: &Rung = &plan.rungs[index];
    let mut scaler = stages.scale.scaler(rung)?;
    let mut encoder = None;
    let mut writer = None;
    let mut done = 0u64;
    let mut reported = 0u8;
    let tb = ff::Rational::new(plan.frame_rate.1, plan.frame_rate.0);
    let drain =
        |enc: &mut Box<dyn crate::backend::VideoEncoder>, writer: &mut TrackWriter| -> Result<()> {
            while let Some(p) = enc.receive_packet()? {
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
            writer = Some(TrackWriter::create(dir, params, tb, plan.cuts(), 1, codec)?);
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
    ladder.add_rung(index, track)
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
