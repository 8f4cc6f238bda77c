//! A channel's recording as a VOD ladder, without re-encoding: the segments a
//! recording channel kept (`recorded.jsonl` per track, see [`super::window`])
//! over a span of wall-clock time, linked into a directory laid out like an
//! upload's ladder — VOD media playlists (each run's own `EXT-X-MAP`, an
//! `EXT-X-DISCONTINUITY` where a reconnect started a new run), a master with
//! bandwidths measured on the recorded segments, and a poster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ffmpeg_next as ff;
use hls_m3u8::tags::{ExtXMap, ExtXProgramDateTime};
use hls_m3u8::types::PlaylistType;
use hls_m3u8::{MediaPlaylist, MediaSegment};

use super::master::{self, LiveVariant, Measured, VARIANTS};
use super::window::{Entry, RECORDED, TARGET_SECS};
use crate::error::{MediaError, Result};
use crate::playlist::{tidy_extinf, AUDIO_DIR, MEDIA};
use crate::thumbnail::{PosterPicker, POSTER};
use crate::transcode::RenditionSummary;

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct Recording {
    pub duration_secs: f64,
    pub frame_rate: f64,
    /// Per rung, as an upload's transcode reports its renditions.
    pub rungs: Vec<RenditionSummary>,
    pub audio: bool,
    pub segments: usize,
    /// Where the recording starts and ends on the wall clock.
    pub from: SystemTime,
    pub to: SystemTime,
}

fn packaging(path: &Path, reason: impl Into<String>) -> MediaError {
    MediaError::Packaging {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn parse_pdt(path: &Path, pdt: &str) -> Result<SystemTime> {
    let t = time::OffsetDateTime::parse(pdt, &time::format_description::well_known::Rfc3339)
        .map_err(|e| packaging(path, format!("program date-time `{pdt}`: {e}")))?;
    let ns = t.unix_timestamp_nanos().max(0) as u128;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// Every entry a track recorded, in order. A torn last line (a crash while
/// appending) is skipped: its segment was never listed as committed.
fn recorded(track_dir: &Path) -> Result<Vec<Entry>> {
    let path = track_dir.join(RECORDED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MediaError::io("reading", &path, e)),
    };
    // A number listed twice (a crash between saving the state and listing
    // the segment, then the number reused) names the later file.
    let mut by_seq = std::collections::BTreeMap::new();
    for e in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
    {
        by_seq.insert(e.seq, e);
    }
    Ok(by_seq.into_values().collect())
}

/// Links `from` to `to` (same file system) or copies it.
fn place(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| MediaError::io("copying", from, e))
}

/// Writes the recording of `live` (a channel directory) between `span`'s
/// two instants (all of it when `None`) into `out`, which must not exist.
/// A segment is in the span when any of it is.
pub fn export(
    live: &Path,
    span: Option<(SystemTime, SystemTime)>,
    out: &Path,
) -> Result<Recording> {
    let listed = live.join(VARIANTS);
    let bytes = match std::fs::read(&listed) {
        Ok(b) => b,
        // The ladder lists its variants at its first frame: none, nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MediaError::InvalidRequest(
                "the channel has recorded nothing yet".into(),
            ))
        }
        Err(e) => return Err(MediaError::io("reading", &listed, e)),
    };
    let (variants, audio): (Vec<LiveVariant>, bool) =
        serde_json::from_slice(&bytes).map_err(|e| packaging(&listed, e.to_string()))?;
    let top = variants
        .first()
        .ok_or_else(|| packaging(&listed, "the channel lists no rung"))?;

    // The span is chosen on the top rung; every track takes the same numbers.
    let top_entries = recorded(&live.join(&top.name))?;
    let mut chosen = BTreeSet::new();
    let (mut from, mut to) = (None::<SystemTime>, None::<SystemTime>);
    for e in &top_entries {
        let begins = parse_pdt(&live.join(&top.name), &e.pdt)?;
        let ends = begins + Duration::from_secs_f64(e.duration.max(0.0));
        if span.is_none_or(|(a, b)| ends > a && begins < b) {
            chosen.insert(e.seq);
            from = Some(from.map_or(begins, |f| f.min(begins)));
            to = Some(to.map_or(ends, |t| t.max(ends)));
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(MediaError::InvalidRequest(
            if top_entries.is_empty() {
                "the channel has recorded nothing yet"
            } else {
                "the channel recorded nothing in that span"
            }
            .into(),
        ));
    };

    std::fs::create_dir(out).map_err(|e| MediaError::io("creating", out, e))?;
    let mut rungs = Vec::new();
    let mut duration_secs = 0.0;
    let audio_bw = if audio {
        let entries = recorded(&live.join(AUDIO_DIR))?;
        let picked: Vec<&Entry> = entries.iter().filter(|e| chosen.contains(&e.seq)).collect();
        if picked.is_empty() {
            None
        } else {
            Some(write_track(live, out, AUDIO_DIR, &picked)?)
        }
    } else {
        None
    };
    // The poster's source: the top rung's first segment and its init.
    let mut first: Option<(String, String)> = None;
    for v in &variants {
        let entries = recorded(&live.join(&v.name))?;
        let picked: Vec<&Entry> = entries.iter().filter(|e| chosen.contains(&e.seq)).collect();
        if picked.is_empty() {
            return Err(packaging(
                &live.join(&v.name),
                "this rung recorded none of the span's segments",
            ));
        }
        let bw = write_track(live, out, &v.name, &picked)?;
        if v.name == top.name {
            duration_secs = picked.iter().map(|e| e.duration).sum();
            first = Some((picked[0].map.clone(), picked[0].uri.clone()));
        }
        rungs.push((v.clone(), bw, picked.len()));
    }
    let listed_variants: Vec<LiveVariant> = rungs
        .iter()
        .map(|(v, bw, _)| LiveVariant {
            max_bitrate: bw.peak,
            average_bitrate: bw.average,
            ..v.clone()
        })
        .collect();
    master::write_with(out, &listed_variants, audio_bw)?;
    let (map, segment) = first.expect("the top rung has segments (checked above)");
    poster(&out.join(&top.name), &map, &segment, top, &out.join(POSTER))?;
    let audio_peak = audio_bw.map_or(0, |a| a.peak);
    let audio_avg = audio_bw.and_then(|a| a.average).unwrap_or(0);
    Ok(Recording {
        duration_secs,
        frame_rate: top.frame_rate,
        rungs: rungs
            .into_iter()
            .map(|(v, bw, segments)| RenditionSummary {
                codecs: if audio_bw.is_some() {
                    format!("{},mp4a.40.2", v.codec)
                } else {
                    v.codec.clone()
                },
                playlist: out.join(&v.name).join(MEDIA),
                name: v.name,
                width: v.width,
                height: v.height,
                bandwidth: bw.peak + audio_peak,
                average_bandwidth: bw.average.unwrap_or(0) + audio_avg,
                segments,
                duration_secs,
            })
            .collect(),
        audio: audio_bw.is_some(),
        segments: chosen.len(),
        from,
        to,
    })
}

/// Places one track's segments and init segments in `out/track` and writes
/// its VOD playlist; returns its measured bit rates.
fn write_track(live: &Path, out: &Path, track: &str, picked: &[&Entry]) -> Result<Measured> {
    let src = live.join(track);
    let dst = out.join(track);
    std::fs::create_dir(&dst).map_err(|e| MediaError::io("creating", &dst, e))?;
    let mut maps = BTreeSet::new();
    let (mut total_bytes, mut total_secs, mut peak) = (0u64, 0.0f64, 0u64);
    for e in picked {
        if maps.insert(e.map.as_str()) {
            place(&src.join(&e.map), &dst.join(&e.map))?;
        }
        let from = src.join(&e.uri);
        place(&from, &dst.join(&e.uri))?;
        let bytes = std::fs::metadata(&from)
            .map_err(|err| MediaError::io("reading", &from, err))?
            .len();
        total_bytes += bytes;
        total_secs += e.duration;
        // As uploads measure it: a short segment cannot pose as the peak.
        peak = peak.max((bytes as f64 * 8.0 / e.duration.max(1.0)).ceil() as u64);
    }
    let mut last_map: Option<&str> = None;
    let mut segments = Vec::with_capacity(picked.len());
    for e in picked {
        let mut b = MediaSegment::builder();
        b.duration(Duration::from_micros((e.duration * 1e6).round() as u64))
            .uri(e.uri.as_str())
            .program_date_time(ExtXProgramDateTime::new(e.pdt.as_str()));
        if last_map != Some(e.map.as_str()) {
            // A new run: new codec state and a new timeline.
            b.map(ExtXMap::new(e.map.as_str()))
                .has_discontinuity(last_map.is_some());
            last_map = Some(e.map.as_str());
        }
        segments.push(b.build().map_err(|r| packaging(&dst, r.to_string()))?);
    }
    let playlist = MediaPlaylist::builder()
        .target_duration(Duration::from_secs(TARGET_SECS))
        .playlist_type(PlaylistType::Vod)
        .has_independent_segments(true)
        .has_end_list(true)
        .segments(segments)
        .build()
        .map_err(|r| packaging(&dst, r))?;
    let path = dst.join(MEDIA);
    std::fs::write(&path, tidy_extinf(&playlist.to_string()))
        .map_err(|e| MediaError::io("writing", &path, e))?;
    let average = (total_bytes as f64 * 8.0 / total_secs.max(1e-3)).ceil() as u64;
    Ok(Measured {
        peak: peak.max(average),
        average: Some(average),
    })
}

/// The poster from the top rung's first recorded segment (in `dir`), its
/// init joined to it as a player appends them.
fn poster(dir: &Path, map: &str, segment: &str, top: &LiveVariant, to: &Path) -> Result<()> {
    let joined: PathBuf = dir.join(".poster-source.mp4");
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| MediaError::io("reading", &dir.join(name), e))
    };
    let mut bytes = read(map)?;
    bytes.extend(read(segment)?);
    std::fs::write(&joined, &bytes).map_err(|e| MediaError::io("writing", &joined, e))?;
    let result = poster_from(&joined, top, to);
    let _ = std::fs::remove_file(&joined);
    result
}

fn poster_from(source: &Path, top: &LiveVariant, to: &Path) -> Result<()> {
    crate::init();
    let mut input =
        ff::format::input(source).map_err(|e| MediaError::ffmpeg("opening the recording", e))?;
    let stream = input
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| packaging(source, "the recorded segment has no video"))?;
    let index = stream.index();
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| MediaError::ffmpeg("reading the recording's codec", e))?;
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| MediaError::ffmpeg("opening the recording's decoder", e))?;
    let mut picker = PosterPicker::new(top.width, top.height, top.frame_rate.max(1.0));
    let mut frame = ff::frame::Video::empty();
    let mut n = 0u64;
    let mut offer = |decoder: &mut ff::decoder::Video, picker: &mut PosterPicker| -> Result<()> {
        while decoder.receive_frame(&mut frame).is_ok() {
            if picker.wants(n) {
                picker.offer(n, &frame)?;
            }
            n += 1;
        }
        Ok(())
    };
    for (s, packet) in input.packets() {
        if s.index() == index && decoder.send_packet(&packet).is_ok() {
            offer(&mut decoder, &mut picker)?;
        }
    }
    let _ = decoder.send_eof();
    offer(&mut decoder, &mut picker)?;
    picker.write(to)
}
