//! HLS playlists, written with `hls_m3u8`: one VOD media playlist per track
//! and the multivariant playlist with measured bandwidths.

use std::path::Path;
use std::time::Duration;

use hls_m3u8::tags::{ExtXMap, ExtXMedia, VariantStream};
use hls_m3u8::types::{MediaType, PlaylistType, StreamData, UFloat};
use hls_m3u8::{MasterPlaylist, MediaPlaylist, MediaSegment};
use serde::Serialize;

use crate::cmaf::Track;
use crate::error::{MediaError, Result};
use crate::plan::{AudioPlan, Rung};

pub const MASTER: &str = "master.m3u8";
pub const MEDIA: &str = "index.m3u8";
pub const AUDIO_GROUP: &str = "audio";
pub const AUDIO_DIR: &str = "audio";

/// Bandwidth figures of a track (bits/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bandwidth {
    pub peak: u64,
    pub average: u64,
}

/// Peak over segments, with each segment's duration floored at one second so
/// a short tail segment (a lone IDR) cannot pose as the peak.
pub fn bandwidth(track: &Track) -> Bandwidth {
    let total_bytes: u64 = track.segments.iter().map(|s| s.bytes).sum();
    let total_secs: f64 = track.segments.iter().map(|s| s.duration_secs).sum();
    let peak = track
        .segments
        .iter()
        .map(|s| {
            (s.bytes as f64 * 8.0 / s.duration_secs.max(1.0).min(total_secs.max(1e-3))).ceil()
                as u64
        })
        .max()
        .unwrap_or(0);
    let average = (total_bytes as f64 * 8.0 / total_secs.max(1e-3)).ceil() as u64;
    Bandwidth {
        peak: peak.max(average),
        average,
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| MediaError::io("writing", path, e))
}

/// Writes `index.m3u8` for a track.
pub fn write_media_playlist(track: &Track) -> Result<()> {
    // RFC 8216 §4.3.3.1: each EXTINF rounded to the nearest integer ≤ target.
    let target = track
        .segments
        .iter()
        .map(|s| s.duration_secs)
        .fold(0.0, f64::max)
        .round()
        .max(1.0) as u64;
    let segments: Vec<MediaSegment<'_>> = track
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut b = MediaSegment::builder();
            b.duration(Duration::from_micros((s.duration_secs * 1e6).round() as u64))
                .uri(s.uri.as_str());
            if i == 0 {
                b.map(ExtXMap::new(track.init_uri.as_str()));
            }
            b.build().expect("duration and uri are set")
        })
        .collect();
    let playlist = MediaPlaylist::builder()
        .target_duration(Duration::from_secs(target))
        .playlist_type(PlaylistType::Vod)
        .has_independent_segments(true)
        .has_end_list(true)
        .segments(segments)
        .build()
        .map_err(|reason| MediaError::Packaging {
            path: track.dir.join(MEDIA),
            reason,
        })?;
    write_file(&track.dir.join(MEDIA), &tidy_extinf(&playlist.to_string()))
}

/// `hls_m3u8` prints `EXTINF` as `Duration::as_secs_f64()`, a float sum that
/// can come out as `3.9938320000000003`. Our durations are whole microseconds,
/// so the playlist states them with at most six decimals: shorter, and the
/// same bytes on every platform.
pub(crate) fn tidy_extinf(playlist: &str) -> String {
    let mut out = String::with_capacity(playlist.len());
    for line in playlist.lines() {
        match line
            .strip_prefix("#EXTINF:")
            .and_then(|rest| rest.split_once(','))
        {
            Some((secs, title)) if secs.parse::<f64>().is_ok() => {
                let secs: f64 = secs.parse().expect("checked");
                let fixed = format!("{secs:.6}");
                let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
                out.push_str(&format!("#EXTINF:{fixed},{title}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One video rung as the multivariant playlist lists it.
pub struct Variant<'a> {
    pub rung: &'a Rung,
    pub track: &'a Track,
    pub frame_rate: f64,
}

/// Writes `master.m3u8`. Audio, when present, is one AAC rendition shared by
/// every rung (`EXT-X-MEDIA` group), so it is stored once.
pub fn write_master(
    dir: &Path,
    variants: &[Variant<'_>],
    audio: Option<(&AudioPlan, &Track)>,
) -> Result<Vec<(String, Bandwidth)>> {
    let audio_bw = audio.map(|(_, t)| bandwidth(t));
    let mut media = Vec::new();
    if let Some((plan, audio_track)) = audio {
        media.push(
            ExtXMedia::builder()
                .media_type(MediaType::Audio)
                .group_id(AUDIO_GROUP)
                .name("default")
                .uri(format!("{}/{MEDIA}", dir_name(audio_track)))
                .is_default(true)
                .is_autoselect(true)
                .channels(hls_m3u8::types::Channels::new(u64::from(plan.channels)))
                .build()
                .map_err(|reason| MediaError::Packaging {
                    path: dir.join(MASTER),
                    reason,
                })?,
        );
    }
    let mut summary = Vec::new();
    let mut streams = Vec::new();
    for v in variants {
        let vb = bandwidth(v.track);
        let bw = Bandwidth {
            peak: vb.peak + audio_bw.map_or(0, |a| a.peak),
            average: vb.average + audio_bw.map_or(0, |a| a.average),
        };
        summary.push((v.rung.name.clone(), bw));
        let mut codecs = vec![v.track.codec.clone()];
        if let Some((_, t)) = audio {
            codecs.push(t.codec.clone());
        }
        let stream_data = StreamData::builder()
            .bandwidth(bw.peak)
            .average_bandwidth(bw.average)
            .codecs(codecs)
            .resolution((v.rung.width as usize, v.rung.height as usize))
            .build()
            .map_err(|reason| MediaError::Packaging {
                path: dir.join(MASTER),
                reason,
            })?;
        streams.push(VariantStream::ExtXStreamInf {
            uri: format!("{}/{MEDIA}", dir_name(v.track)).into(),
            frame_rate: Some(UFloat::new(
                ((v.frame_rate * 1000.0).round() / 1000.0) as f32,
            )),
            audio: audio.map(|_| AUDIO_GROUP.into()),
            subtitles: None,
            closed_captions: None,
            stream_data,
        });
    }
    let master = MasterPlaylist::builder()
        .has_independent_segments(true)
        .media(media)
        .variant_streams(streams)
        .build()
        .map_err(|e| MediaError::Packaging {
            path: dir.join(MASTER),
            reason: e.to_string(),
        })?;
    write_file(&dir.join(MASTER), &master.to_string())?;
    Ok(summary)
}

/// A track's folder in the ladder: its rung's name, or the audio's, plus a
/// suffix for one that replaced a published track.
pub fn dir_name(track: &Track) -> String {
    track
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extinf_is_stated_in_microseconds() {
        let text = "#EXTM3U\n#EXTINF:3.9938320000000003,\n0.m4s\n#EXTINF:4,\n1.m4s\n#EXTINF:1.8768750000000001,x\n";
        assert_eq!(
            tidy_extinf(text),
            "#EXTM3U\n#EXTINF:3.993832,\n0.m4s\n#EXTINF:4,\n1.m4s\n#EXTINF:1.876875,x\n"
        );
    }
}
