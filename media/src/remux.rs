//! The source as a rung. A phone upload is usually already what a rung would
//! be: H.264, 8-bit 4:2:0, square pixels, constant frame rate, a key frame
//! every second or two, AAC-LC. Such a source becomes the top rung by
//! copying its packets into CMAF segments (no decode, no encode), so the
//! video is playable a moment after the upload completes; the lower rungs
//! are then encoded with their IDRs on the source's key frames, so every
//! rung still switches at the same instants.
//!
//! [`scan`] reads the source's packets (no decoding) and says whether it
//! qualifies and, when it does, where its key frames are; [`run`] writes
//! the remuxed rung and the audio (copied when it is AAC-LC, else encoded).
//!
//! Copied audio is still decoded, once, on a thread beside the copy: the
//! video is first published as soon as the copy is done, and its sound
//! must be fingerprinted (and checked) before anyone is served it. That
//! decode also finds damaged audio packets, so the decode pass for the
//! lower rungs does not decode the audio again (`transcode`).

use std::path::Path;
use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;
use ff::Rational;
use ffmpeg_next as ff;

use crate::audio::{self, AudioInput};
use crate::cmaf::{avc_codec_string, Track, TrackWriter};
use crate::error::{Location, MediaError, Result};
use crate::fingerprint::{self, AudioFingerprint};
use crate::plan::LadderPlan;
use crate::playlist;
use crate::probe::SourceInfo;
use crate::repair::Repairs;
use crate::transcode::{ProgressEvent, TranscodeOptions};

/// A key frame at least this often: a segment is cut on the first IDR at
/// least 4 s after the previous cut, so it lasts 4–6 s, as with encoded
/// ladders (phones put one every 1–2 s).
const MAX_KEY_INTERVAL_SECS: f64 = 2.0;
/// A source more than this many times the top rung's planned bit rate is
/// encoded instead: a rung that heavy serves few viewers well.
const MAX_BITRATE_FACTOR: f64 = 3.0;

/// What [`scan`] found: the key frames as output frame indices, and whether
/// the audio can be copied.
#[derive(Debug, Clone, PartialEq)]
pub struct Remux {
    pub key_frames: Vec<u64>,
    /// Video frames in the source.
    pub frames: u64,
    pub copy_audio: bool,
}

/// Whether `source` can be the top rung of `plan` as it is; `Err` says why
/// not (for the log: the ladder is then encoded as usual).
pub fn scan(source: &SourceInfo, plan: &LadderPlan) -> std::result::Result<Remux, String> {
    let v = &source.video;
    let top = plan.rungs.first().ok_or("no rung")?;
    if v.codec != "h264"
        || v.bit_depth != 8
        || !matches!(v.pixel_format.as_str(), "yuv420p" | "yuvj420p")
    {
        return Err(format!(
            "{} {} is not 8-bit 4:2:0 H.264",
            v.codec, v.pixel_format
        ));
    }
    if v.interlaced
        || v.rotation != 0
        || (v.sample_aspect.0 > 0 && v.sample_aspect.0 != v.sample_aspect.1)
    {
        return Err("interlaced, rotated or non-square pixels".into());
    }
    if (v.width, v.height) != (top.width, top.height) {
        return Err(format!(
            "{}x{} is not the top rung's {}x{}",
            v.width, v.height, top.width, top.height
        ));
    }
    if !source.container.contains("mp4") {
        return Err(format!("container {} (MP4/MOV only)", source.container));
    }
    crate::init();
    let mut ictx = ff::format::input(&source.path).map_err(|e| e.to_string())?;
    let vs = ictx.stream(v.index).ok_or("no video stream")?;
    let tb = vs.time_base();
    let extradata = extradata(&vs.parameters()).ok_or("no avcC")?;
    if extradata.first() != Some(&1) || extradata.len() < 7 {
        return Err("H.264 without an avcC record".into());
    }
    let nal_len = usize::from(extradata[4] & 3) + 1;
    let audio_index = source.audio.as_ref().map(|a| a.index);
    let copy_audio = match audio_index.and_then(|i| ictx.stream(i)) {
        Some(a) => {
            let p = a.parameters();
            // SAFETY: plain field reads of the stream's codec parameters.
            let (id, profile, channels, rate) = unsafe {
                let p = p.as_ptr();
                (
                    (*p).codec_id,
                    (*p).profile,
                    (*p).ch_layout.nb_channels,
                    (*p).sample_rate,
                )
            };
            id == ff::ffi::AVCodecID::AV_CODEC_ID_AAC
                && profile == ff::ffi::FF_PROFILE_AAC_LOW
                && (1..=2).contains(&channels)
                && matches!(rate, 44_100 | 48_000)
        }
        None => false,
    };

    let mut pts = Vec::new();
    let mut keys = Vec::new();
    let mut bytes = 0u64;
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(format!("reading packets: {e}")),
        }
        if packet.stream() != v.index {
            continue;
        }
        if packet.is_corrupt() {
            return Err("a damaged packet".into());
        }
        let p = packet.pts().ok_or("a packet without a timestamp")?;
        bytes += packet.size() as u64;
        if packet.is_key() {
            if !has_idr(packet.data().unwrap_or_default(), nal_len) {
                return Err("a key frame that is not an IDR (open GOP)".into());
            }
            keys.push(p);
        }
        pts.push(p);
    }
    pts.sort_unstable();
    let (first, n) = (*pts.first().ok_or("no video packets")?, pts.len());
    // Constant rate at the plan's rate: frame i within a quarter frame of
    // i frame durations after the first.
    let (num, den) = plan.frame_rate;
    let frame = f64::from(den) / f64::from(num) / f64::from(tb);
    for (i, &p) in pts.iter().enumerate() {
        if ((p - first) as f64 - i as f64 * frame).abs() > frame / 4.0 {
            return Err(format!(
                "not constant {}/{} fps (frame {i} is off its slot)",
                num, den
            ));
        }
    }
    let index_of = |p: i64| ((p - first) as f64 / frame).round() as u64;
    let key_frames: Vec<u64> = keys.iter().map(|&k| index_of(k)).collect();
    if key_frames.first() != Some(&0) {
        return Err("the first frame is not a key frame".into());
    }
    let fps = plan.fps();
    let tail = (n as u64).saturating_sub(*key_frames.last().expect("non-empty"));
    let longest = key_frames
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([tail])
        .max()
        .unwrap_or(0);
    // Half a frame of slack: 2 s at 29.97 fps is 59.94 frames.
    if (longest as f64 - 0.5) / fps > MAX_KEY_INTERVAL_SECS {
        return Err(format!(
            "key frames up to {:.1} s apart (at most {MAX_KEY_INTERVAL_SECS} s)",
            longest as f64 / fps
        ));
    }
    let secs = n as f64 / fps;
    let bitrate = bytes as f64 * 8.0 / secs.max(1.0 / fps);
    if bitrate > top.bitrate as f64 * MAX_BITRATE_FACTOR {
        return Err(format!(
            "{:.1} Mb/s is over {MAX_BITRATE_FACTOR}× the top rung's {:.1} Mb/s",
            bitrate / 1e6,
            top.bitrate as f64 / 1e6
        ));
    }
    Ok(Remux {
        key_frames,
        frames: n as u64,
        copy_audio,
    })
}

/// Whether a length-prefixed H.264 access unit holds an IDR slice.
fn has_idr(data: &[u8], nal_len: usize) -> bool {
    let mut at = 0;
    while at + nal_len < data.len() {
        let len = data[at..at + nal_len]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some(&header) = data.get(at + nal_len) else {
            return false;
        };
        if header & 0x1f == 5 {
            return true;
        }
        at += nal_len + len;
    }
    false
}

fn extradata(params: &ff::codec::Parameters) -> Option<Vec<u8>> {
    // SAFETY: extradata/extradata_size describe one buffer owned by params.
    unsafe {
        let p = params.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return None;
        }
        Some(std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec())
    }
}

/// What [`run`] wrote: the top rung, the audio track, the fingerprint of
/// the audio, and what was wrong with the audio (damaged packets).
pub struct Copied {
    pub video: Track,
    pub audio: Option<Track>,
    pub fingerprint: Option<AudioFingerprint>,
    pub repairs: Vec<String>,
}

/// Writes the remuxed top rung into `dir/<top>` and the audio into
/// `dir/audio`: timestamps re-based so the first picture is at zero, cut
/// where every encoded rung will be cut.
pub fn run(
    source: &SourceInfo,
    plan: &LadderPlan,
    remux: &Remux,
    dir: &Path,
    opts: &TranscodeOptions,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> Result<Copied> {
    let file = &source.path;
    let top = &plan.rungs[0];
    let mut ictx = ff::format::input(file)
        .map_err(|e| MediaError::ffmpeg_at("opening", at(source, None), e))?;
    let vindex = source.video.index;
    let vs = ictx.stream(vindex).expect("probed");
    let vtb = vs.time_base();
    let params = vs.parameters();
    let codec = extradata(&params)
        .and_then(|e| avc_codec_string(&e))
        .ok_or_else(|| MediaError::Packaging {
            path: file.clone(),
            reason: "the source's avcC gives no CODECS string".into(),
        })?;
    let (num, den) = plan.frame_rate;
    let frame_ticks = ff::Rescale::rescale(&1i64, Rational::new(den, num), vtb).max(1);
    let mut video = TrackWriter::create(
        &dir.join(&top.name),
        params,
        vtb,
        plan.cuts(),
        frame_ticks,
        codec,
    )?;
    let origin = source.video.start_pts;

    let audio = match (&source.audio, &plan.audio) {
        (Some(a), Some(aplan)) => {
            let s = ictx.stream(a.index).expect("probed");
            let atb = s.time_base();
            let aorigin = ff::Rescale::rescale(&origin, vtb, atb);
            let adir = dir.join(playlist::AUDIO_DIR);
            if remux.copy_audio {
                Some(Audio::Copy {
                    index: a.index,
                    origin: aorigin,
                    input: AudioInput {
                        file: file.clone(),
                        stream: a.index,
                        parameters: s.parameters(),
                        time_base: atb,
                        origin: aorigin,
                    },
                    writer: TrackWriter::create(
                        &adir,
                        s.parameters(),
                        atb,
                        plan.cuts(),
                        1024,
                        "mp4a.40.2".into(),
                    )?,
                })
            } else {
                Some(Audio::Encode {
                    index: a.index,
                    input: AudioInput {
                        file: file.clone(),
                        stream: a.index,
                        parameters: s.parameters(),
                        time_base: atb,
                        origin: aorigin,
                    },
                    plan: aplan.clone(),
                    dir: adir,
                })
            }
        }
        _ => None,
    };
    let repairs = Repairs::default();
    let total = plan.expected_frames.max(1);
    let mut reported = 0u8;
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };

    std::thread::scope(|scope| -> Result<Copied> {
        let repairs = &repairs;
        let (mut copy, encode) = match audio {
            Some(Audio::Copy {
                index,
                origin,
                input,
                writer,
            }) => {
                // The copied packets, decoded only to be fingerprinted.
                let (tx, rx) = bounded::<ff::Packet>(256);
                let h = std::thread::Builder::new()
                    .name("fingerprint".into())
                    .spawn_scoped(scope, move || {
                        fingerprint::decode_packets(input, rx, repairs)
                    })
                    .map_err(|e| MediaError::io("spawning the fingerprint worker", dir, e))?;
                (Some((index, origin, writer, tx, h)), None)
            }
            Some(Audio::Encode {
                index,
                input,
                plan: aplan,
                dir: adir,
            }) => {
                let (tx, rx) = bounded::<ff::Packet>(256);
                let cuts = plan.cuts();
                let h = std::thread::Builder::new()
                    .name("audio".into())
                    .spawn_scoped(scope, move || {
                        audio::run(input, &aplan, &adir, cuts, rx, repairs)
                    })
                    .map_err(|e| MediaError::io("spawning the audio worker", dir, e))?;
                (None, Some((index, tx, h)))
            }
            None => (None, None),
        };
        let mut packet = ff::Packet::empty();
        let copied = (|| -> Result<()> {
            loop {
                match packet.read(&mut ictx) {
                    Ok(()) => {}
                    Err(ff::Error::Eof) => return Ok(()),
                    Err(e) => return Err(MediaError::ffmpeg_at("reading", at(source, None), e)),
                }
                if cancelled() {
                    return Err(MediaError::Cancelled);
                }
                let idx = packet.stream();
                if idx == vindex {
                    let pts = packet.pts().unwrap_or(origin);
                    rebase(&mut packet, origin);
                    video
                        .write(std::mem::replace(&mut packet, ff::Packet::empty()))
                        .map_err(|e| e.located(|| at(source, Some(pts as f64 * f64::from(vtb)))))?;
                    let done = ((pts - origin).max(0) / frame_ticks) as u64;
                    let pct = (done * 100 / total).min(99) as u8;
                    if pct > reported {
                        reported = pct;
                        progress(ProgressEvent::Rung {
                            rung: top.name.clone(),
                            percent: pct,
                        });
                    }
                } else if let Some((_, origin, writer, tx, _)) =
                    copy.as_mut().filter(|c| c.0 == idx)
                {
                    // A worker that stopped has its error collected below.
                    let _ = tx.send(packet.clone());
                    rebase(&mut packet, *origin);
                    // Sound from before the first picture: one frame of it
                    // stays (the decoder's priming), the edit list trims it.
                    let (pts, dur) = (packet.pts().unwrap_or(0), packet.duration().max(1));
                    if pts > -2 * dur {
                        writer.write(std::mem::replace(&mut packet, ff::Packet::empty()))?;
                    }
                } else if let Some((_, tx, _)) = encode.as_ref().filter(|e| e.0 == idx) {
                    if tx
                        .send(std::mem::replace(&mut packet, ff::Packet::empty()))
                        .is_err()
                    {
                        return Ok(()); // the audio worker stopped; its error is collected below
                    }
                }
            }
        })();
        let audio_track = match (copy, encode) {
            (Some((_, _, writer, tx, h)), _) => {
                drop(tx);
                let printed = crate::transcode::join(h, "fingerprint");
                Some(writer.finish().and_then(|t| Ok((t, printed?))))
            }
            (_, Some((_, tx, h))) => {
                drop(tx);
                Some(crate::transcode::join(h, "audio"))
            }
            _ => None,
        };
        copied?;
        let video = video.finish()?;
        progress(ProgressEvent::Rung {
            rung: top.name.clone(),
            percent: 100,
        });
        let (audio, fingerprint) = match audio_track.transpose()? {
            Some((track, print)) => (Some(track), print),
            None => (None, None),
        };
        Ok(Copied {
            video,
            audio,
            fingerprint,
            repairs: repairs.describe(),
        })
    })
}

enum Audio {
    Copy {
        index: usize,
        origin: i64,
        input: AudioInput,
        writer: TrackWriter,
    },
    Encode {
        index: usize,
        input: AudioInput,
        plan: crate::plan::AudioPlan,
        dir: std::path::PathBuf,
    },
}

fn rebase(packet: &mut ff::Packet, origin: i64) {
    packet.set_pts(packet.pts().map(|p| p - origin));
    packet.set_dts(packet.dts().map(|d| d - origin));
}

fn at(source: &SourceInfo, secs: Option<f64>) -> Location {
    Location {
        file: source.path.clone(),
        stream: Some(source.video.index),
        timestamp: secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_slices_are_found_among_length_prefixed_nals() {
        // SEI (6), then an IDR slice (5): 4-byte lengths.
        let au = [0, 0, 0, 2, 6, 0xaa, 0, 0, 0, 3, 0x65, 1, 2];
        assert!(has_idr(&au, 4));
        // SEI then a non-IDR slice (1).
        let p = [0, 0, 0, 2, 6, 0xaa, 0, 0, 0, 3, 0x41, 1, 2];
        assert!(!has_idr(&p, 4));
        // A length running past the end stops the walk.
        assert!(!has_idr(&[0, 0, 0, 200, 6], 4));
        assert!(!has_idr(&[], 4));
    }
}
