//! `download.mp4`: the ladder's top rung and its audio rendition remuxed
//! into one progressive MP4 (no encode). Each track is its init segment
//! and segments read back to back (`avio`), demuxed by libavformat, and the
//! packets are interleaved by decode time into the MP4 muxer with
//! `+faststart` (the index first, so a browser plays it while it
//! downloads) and `+bitexact` (same ladder, same bytes).
//!
//! Timing: the ladder's first picture may be shown after the encoder's
//! reorder delay (a lead-in, with the audio padded by as much) or at 0
//! (when the CMAF tracks carry edit lists). Both tracks are shifted back by
//! the lead-in read from the first segment, so the first picture is at 0
//! either way; audio before it keeps its negative times (the AAC decoder
//! needs those frames to prime), which the muxer turns into an edit list
//! that players honour. Audio after the last picture (the rendition's
//! last segment is padded to whole AAC frames) is dropped, so the file is
//! as long as the ladder.

use std::path::Path;

use ff::Rational;
use ffmpeg_next as ff;

use crate::avio::{ChainInput, Part};
use crate::error::{Location, MediaError, Result};
use crate::frames::temp_name;
use crate::ladder::Track;

pub const DOWNLOAD: &str = "download.mp4";

/// One input track on its way into the MP4.
struct Source<'a> {
    input: ChainInput<'a>,
    stream: usize,
    in_tb: Rational,
    out_index: usize,
    /// Seconds subtracted from every time: the video's lead-in.
    shift: f64,
    /// Packets whose presentation starts at or after this (seconds, after
    /// the shift) are dropped.
    end: Option<f64>,
    pending: Option<ff::Packet>,
    done: bool,
}

impl Source<'_> {
    fn secs(&self, ts: i64) -> f64 {
        ts as f64 * f64::from(self.in_tb)
    }

    fn ticks(&self, secs: f64) -> i64 {
        (secs / f64::from(self.in_tb)).round() as i64
    }

    /// The next packet of the track, shifted; `None` when it is done.
    fn peek(&mut self) -> Result<Option<&ff::Packet>> {
        while self.pending.is_none() && !self.done {
            let Some(mut p) = self.input.read_packet()? else {
                self.done = true;
                break;
            };
            if p.stream() != self.stream {
                continue;
            }
            let shift = self.ticks(self.shift);
            p.set_pts(p.pts().map(|t| t - shift));
            p.set_dts(p.dts().map(|t| t - shift));
            let starts = p.pts().or(p.dts()).map(|t| self.secs(t));
            if let (Some(end), Some(s)) = (self.end, starts) {
                if s >= end - 1e-6 {
                    continue;
                }
            }
            self.pending = Some(p);
        }
        Ok(self.pending.as_ref())
    }

    /// When the next packet decodes, in seconds.
    fn dts_secs(&mut self) -> Result<Option<f64>> {
        let dts = self.peek()?.map(|p| p.dts().or(p.pts()).unwrap_or(0));
        Ok(dts.map(|t| self.secs(t)))
    }
}

/// Writes `out` from the top rung `video` and the `audio` rendition.
/// Returns the duration written (the video's, in seconds).
pub(crate) fn write(video: &Track, audio: Option<&Track>, out: &Path) -> Result<f64> {
    let tmp = temp_name(out);
    let result = remux(video, audio, &tmp);
    match result {
        Ok(duration) => {
            std::fs::rename(&tmp, out)
                .map_err(|e| MediaError::io("renaming into place", out, e))?;
            Ok(duration)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn track_parts(track: &Track) -> Vec<Part<'static>> {
    let mut parts = vec![Part::File(track.init.clone())];
    parts.extend(track.segments.iter().cloned().map(Part::File));
    parts
}

fn remux(video: &Track, audio: Option<&Track>, tmp: &Path) -> Result<f64> {
    let at = |file: &Path| Location {
        file: file.to_owned(),
        ..Default::default()
    };
    let mut octx = ff::format::output_as(tmp, "mp4")
        .map_err(|e| MediaError::ffmpeg_at("creating the MP4", at(tmp), e))?;

    let mut sources = Vec::new();
    let (v_input, lead_in, v_end) = open_video(video)?;
    sources.push(v_input);
    if let Some(a) = audio {
        let input = ChainInput::open(track_parts(a), &a.init)?;
        if let Some((stream, in_tb)) = input.stream_of(ff::media::Type::Audio) {
            sources.push(Source {
                input,
                stream,
                in_tb,
                out_index: 0,
                shift: lead_in,
                end: Some(v_end),
                pending: None,
                done: false,
            });
        }
    }
    for (i, s) in sources.iter_mut().enumerate() {
        let params = s
            .input
            .stream(s.stream)
            .expect("found at open")
            .parameters();
        let mut st = octx
            .add_stream(None::<ff::Codec>)
            .map_err(|e| MediaError::ffmpeg_at("adding a stream", at(tmp), e))?;
        st.set_parameters(params);
        st.set_time_base(s.in_tb);
        // SAFETY: codecpar belongs to the stream just added; a zero tag
        // lets the muxer pick the sample entry for MP4 (avc1, mp4a).
        unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
        s.out_index = i;
    }
    let mut opts = ff::Dictionary::new();
    opts.set("movflags", "+faststart");
    // No encoder string or creation time: the same ladder gives the same file.
    opts.set("fflags", "+bitexact");
    octx.write_header_with(opts)
        .map_err(|e| MediaError::ffmpeg_at("writing the MP4 header", at(tmp), e))?;
    let out_tbs: Vec<Rational> = (0..sources.len())
        .map(|i| octx.stream(i).expect("added above").time_base())
        .collect();

    loop {
        // The track whose next packet decodes first goes next.
        let mut pick: Option<(usize, f64)> = None;
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(t) = s.dts_secs()? {
                if pick.is_none_or(|(_, best)| t < best) {
                    pick = Some((i, t));
                }
            }
        }
        let Some((i, _)) = pick else { break };
        let s = &mut sources[i];
        let mut p = s.pending.take().expect("peeked above");
        p.set_stream(s.out_index);
        p.set_position(-1);
        p.rescale_ts(s.in_tb, out_tbs[i]);
        let pts = p.pts();
        p.write_interleaved(&mut octx).map_err(|e| {
            MediaError::ffmpeg_at(
                "muxing the MP4",
                Location {
                    file: tmp.to_owned(),
                    stream: Some(i),
                    timestamp: pts.map(|t| t as f64 * f64::from(out_tbs[i])),
                },
                e,
            )
        })?;
    }
    octx.write_trailer()
        .map_err(|e| MediaError::ffmpeg_at("finishing the MP4", at(tmp), e))?;
    Ok(v_end)
}

/// The video track as a source, its lead-in (first picture's time) and
/// where its last picture ends, both in seconds after the shift.
fn open_video(video: &Track) -> Result<(Source<'static>, f64, f64)> {
    let first = ChainInput::open(
        vec![
            Part::File(video.init.clone()),
            Part::File(video.segments[0].clone()),
        ],
        &video.init,
    )?;
    let lead_in = first_picture(first, &video.init)?;
    let input = ChainInput::open(track_parts(video), &video.init)?;
    let Some((stream, in_tb)) = input.stream_of(ff::media::Type::Video) else {
        return Err(MediaError::Packaging {
            path: video.init.clone(),
            reason: "the top rung has no video stream".into(),
        });
    };
    Ok((
        Source {
            input,
            stream,
            in_tb,
            out_index: 0,
            shift: lead_in,
            end: None,
            pending: None,
            done: false,
        },
        lead_in,
        video.duration(),
    ))
}

/// The earliest presentation time of the first segment: the lead-in.
fn first_picture(mut input: ChainInput<'_>, name: &Path) -> Result<f64> {
    let Some((stream, tb)) = input.stream_of(ff::media::Type::Video) else {
        return Err(MediaError::Packaging {
            path: name.to_owned(),
            reason: "the top rung has no video stream".into(),
        });
    };
    let mut earliest: Option<i64> = None;
    while let Some(p) = input.read_packet()? {
        if p.stream() == stream {
            if let Some(pts) = p.pts() {
                earliest = Some(earliest.map_or(pts, |e| e.min(pts)));
            }
        }
    }
    Ok(earliest.map_or(0.0, |e| e as f64 * f64::from(tb)))
}
