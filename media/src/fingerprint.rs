//! Audio fingerprints: Chromaprint items (`rusty-chromaprint`, the
//! `test2` preset, as `fpcalc` makes them) of the audio a transcode
//! already decodes. Every fingerprint, of an upload or of a reference
//! track, is made the same way: the decoded sound at the video's timeline
//! (what the audio thread resamples for AAC), resampled once more by
//! libswresample to 11 025 Hz mono 16-bit ([`BRANCH`], Chromaprint's own
//! rate, so the fingerprinter never resamples) and fed to a [`Tap`].
//!
//! Three places make one: the audio thread (`audio::run`) splits its
//! resampled stream into the AAC encoder and this branch; a remuxed source
//! (`remux::run`), whose audio is copied and so not otherwise decoded
//! before the first publication, decodes the copied packets on a thread of
//! their own ([`decode_packets`]); and [`fingerprint_file`] decodes a
//! whole file (the copyright library's reference tracks).

use std::path::Path;

use crossbeam_channel::Receiver;
use ff::Rational;
use ffmpeg_next as ff;
use rusty_chromaprint::{Configuration, Fingerprinter};
use serde::Serialize;

use crate::audio::AudioInput;
use crate::error::{MediaError, Result};
use crate::repair::Repairs;

/// Chromaprint's working rate: audio reaches the fingerprinter at it.
pub const SAMPLE_RATE: u32 = 11_025;

/// The filter chain from any decoded (or already resampled) audio to what
/// the fingerprinter takes; the one definition for every caller.
pub(crate) const BRANCH: &str = "aresample=11025,aformat=sample_fmts=s16:channel_layouts=mono";

/// At most this much of an input is fingerprinted (the longest upload the
/// default limits take, 10 minutes).
pub const MAX_SECS: f64 = 600.0;

/// The one configuration every fingerprint is made and compared with.
pub fn config() -> Configuration {
    Configuration::preset_test2()
}

/// Seconds of audio between two consecutive items (0.1238 s).
pub fn item_secs() -> f64 {
    f64::from(config().item_duration_in_seconds())
}

/// The fingerprint of one audio track: item `i` describes the sound about
/// `i × item_secs()` after the track's start (the video's first picture).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioFingerprint {
    pub items: Vec<u32>,
    /// How much audio was fingerprinted, in milliseconds.
    pub duration_ms: u64,
}

impl AudioFingerprint {
    /// Little-endian `u32`s, as the catalog stores them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.items.iter().flat_map(|i| i.to_le_bytes()).collect()
    }

    pub fn items_from_bytes(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Feeds 11 025 Hz mono s16 frames (the output of [`BRANCH`]) to a
/// fingerprinter.
pub(crate) struct Tap {
    printer: Fingerprinter,
    samples: u64,
    scratch: Vec<i16>,
}

impl Tap {
    pub fn new() -> Self {
        let mut printer = Fingerprinter::new(&config());
        printer
            .start(SAMPLE_RATE, 1)
            .expect("11025 Hz mono is Chromaprint's own format");
        Self {
            printer,
            samples: 0,
            scratch: Vec::new(),
        }
    }

    pub fn push(&mut self, frame: &ff::frame::Audio) {
        let max = (MAX_SECS * f64::from(SAMPLE_RATE)) as u64;
        let n = (frame.samples() as u64).min(max.saturating_sub(self.samples)) as usize;
        if n == 0 {
            return;
        }
        let bytes = &frame.data(0)[..n * 2];
        self.scratch.clear();
        self.scratch.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_ne_bytes([b[0], b[1]])),
        );
        self.printer.consume(&self.scratch);
        self.samples += n as u64;
    }

    /// The fingerprint, or `None` when too little sound came for one item.
    pub fn finish(mut self) -> Option<AudioFingerprint> {
        self.printer.finish();
        let items = self.printer.fingerprint().to_vec();
        (!items.is_empty()).then(|| AudioFingerprint {
            items,
            duration_ms: self.samples * 1000 / u64::from(SAMPLE_RATE),
        })
    }
}

/// Moves what the sink named `name` holds into `tap`.
pub(crate) fn drain_sink(
    graph: &mut ff::filter::Graph,
    name: &str,
    frame: &mut ff::frame::Audio,
    tap: &mut Tap,
) -> std::result::Result<(), ff::Error> {
    let mut sink = graph.get(name).expect("sink");
    loop {
        match sink.sink().frame(frame) {
            Ok(()) => tap.push(frame),
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(()),
            Err(ff::Error::Eof) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// abuffer → aresample (async, the first sample at the video's first
/// picture, as the audio thread has it) → [`BRANCH`] → sink `fp`.
fn build_graph(
    first: &ff::frame::Audio,
    time_base: Rational,
) -> std::result::Result<ff::filter::Graph, ff::Error> {
    let mut g = ff::filter::Graph::new();
    g.add(
        &ff::filter::find("abuffer").expect("abuffer"),
        "in",
        &crate::graph_src::abuffer_args(first, time_base),
    )?;
    g.add(
        &ff::filter::find("abuffersink").expect("abuffersink"),
        "fp",
        "",
    )?;
    let spec = format!("[in]aresample=async=1:first_pts=0,{BRANCH}[fp]");
    g.output("in", 0)?.input("fp", 0)?.parse(&spec)?;
    g.validate()?;
    Ok(g)
}

/// Decodes audio packets (of `input`'s stream, as the demuxer read them)
/// only to fingerprint them: the remuxed source's copied audio. A packet
/// the decoder refuses is counted in `repairs` and skipped, as the audio
/// thread does. `None` when nothing decoded.
pub(crate) fn decode_packets(
    input: AudioInput,
    packets: Receiver<ff::Packet>,
    repairs: &Repairs,
) -> Result<Option<AudioFingerprint>> {
    let mut tap = Tap::new();
    let mut out = ff::frame::Audio::empty();
    let decoded_any = input.decode_through(
        packets,
        repairs,
        |first| build_graph(first, input.time_base),
        |g, flush| {
            let op = if flush {
                "flushing audio"
            } else {
                "resampling audio"
            };
            drain_sink(g, "fp", &mut out, &mut tap).map_err(|e| input.err(op, None, e))
        },
    )?;
    Ok(if decoded_any { tap.finish() } else { None })
}

/// The fingerprint of the best audio stream of any file FFmpeg reads (a
/// reference track: audio only, or a video's sound), made as an upload's
/// is. `Ok(None)` when the file has no audio stream or none of it decodes;
/// an error when the file cannot be opened at all.
pub fn fingerprint_file(path: &Path) -> Result<Option<AudioFingerprint>> {
    crate::init();
    let mut ictx = ff::format::input(path).map_err(|e| {
        MediaError::rejected(path, crate::RejectCode::UnsupportedFormat, e.to_string())
    })?;
    let Some(stream) = ictx.streams().best(ff::media::Type::Audio) else {
        return Ok(None);
    };
    let index = stream.index();
    let input = AudioInput {
        file: path.to_owned(),
        stream: index,
        parameters: stream.parameters(),
        time_base: stream.time_base(),
        // The reference starts where its sound starts.
        origin: stream.start_time().max(0),
    };
    let (tx, rx) = crossbeam_channel::bounded::<ff::Packet>(256);
    let repairs = Repairs::default();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| decode_packets(input, rx, &repairs));
        let mut packet = ff::Packet::empty();
        loop {
            match packet.read(&mut ictx) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => continue,
                // A damaged tail: what was read is fingerprinted.
                Err(_) => break,
            }
            if packet.stream() == index
                && tx
                    .send(std::mem::replace(&mut packet, ff::Packet::empty()))
                    .is_err()
            {
                break;
            }
        }
        drop(tx);
        let result = worker.join().unwrap_or_else(|_| {
            Err(MediaError::Worker {
                stage: "fingerprint".into(),
                reason: "panicked".into(),
            })
        });
        // Nothing of it decodes: no audio to speak of.
        if let Err(MediaError::Ffmpeg { .. }) = result {
            return Ok(None);
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A 20 s "song" made with the ffmpeg CLI: a melody of chords that
    /// changes every quarter second (Chromaprint needs chroma to move),
    /// its notes picked by `seed`.
    pub(crate) fn song(out: &Path, seed: u32, secs: u32, extra: &[&str]) {
        // A pseudo-random note (0–11) per quarter second, its sequence
        // picked by the seed (no two seeds' melodies are shifts of each other).
        let note = format!(
            "mod(floor(abs(sin(floor(t*4)*{:.3}))*1000),12)",
            1.37 + 0.71 * f64::from(seed)
        );
        let f = |shift: u32| format!("440*pow(2,({note}+{shift})/12)");
        let expr = format!(
            "0.3*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})",
            f(0),
            f(4),
            f(7)
        );
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("aevalsrc='{expr}':s=44100:d={secs}"))
            .args(extra)
            .arg(out)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
    }

    fn have_ffmpeg() -> bool {
        Command::new("ffmpeg").arg("-version").output().is_ok()
    }

    #[test]
    fn a_file_is_fingerprinted_and_a_reencode_matches_it() {
        if !have_ffmpeg() {
            eprintln!("skipped: no ffmpeg CLI");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        let b = dir.path().join("b.mp3");
        song(&a, 1, 20, &[]);
        // Re-encoded as MP3 at 64 kb/s, 3 dB quieter, 2 s of silence first.
        song(
            &b,
            1,
            20,
            &[
                "-af",
                "volume=-3dB,adelay=2000|2000",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "64k",
            ],
        );
        let fa = fingerprint_file(&a).unwrap().unwrap();
        let fb = fingerprint_file(&b).unwrap().unwrap();
        assert!(
            (19_500..=20_500).contains(&fa.duration_ms),
            "{}",
            fa.duration_ms
        );
        assert!(fa.items.len() > 120, "{} items", fa.items.len());
        let segs = rusty_chromaprint::match_fingerprints(&fb.items, &fa.items, &config()).unwrap();
        let best = segs
            .iter()
            .max_by_key(|s| s.items_count)
            .expect("a common segment");
        // Found 2 s into the second file, at the start of the first.
        let shift = (best.offset1 as f64 - best.offset2 as f64) * item_secs();
        assert!((shift - 2.0).abs() < 0.3, "shift {shift}");
        assert!(best.score < 8.0, "score {}", best.score);
        assert_eq!(AudioFingerprint::items_from_bytes(&fa.to_bytes()), fa.items);
    }

    #[test]
    fn a_file_without_audio_has_no_fingerprint() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("v.mp4");
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=64x64:rate=10:duration=1")
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&v)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(fingerprint_file(&v).unwrap(), None);
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"not media at all").unwrap();
        assert!(fingerprint_file(&junk).is_err());
    }
}
