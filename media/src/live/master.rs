//! A live channel's multivariant playlist: the rungs as planned (bandwidth
//! declared from the rate control's ceiling, since a live rung cannot be
//! measured ahead), the codec strings of the encoders' parameter sets, and
//! the shared AAC rendition when the camera has audio.

use std::path::Path;

use hls_m3u8::tags::{ExtXMedia, VariantStream};
use hls_m3u8::types::{MediaType, StreamData, UFloat};
use hls_m3u8::MasterPlaylist;

use crate::error::{MediaError, Result};
use crate::playlist::{AUDIO_DIR, AUDIO_GROUP, MASTER, MEDIA};

/// What the ladder's current run lists, kept beside the master for
/// recordings (`super::record`), which rebuild a master from it.
pub const VARIANTS: &str = "variants.json";

/// One rung as listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveVariant {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub max_bitrate: u64,
    pub codec: String,
    pub frame_rate: f64,
    /// Measured mean (recordings); a live rung has none yet.
    pub average_bitrate: Option<u64>,
}

/// Declared audio bandwidth (the AAC encoder's or a camera's typical rate).
const AUDIO_BPS: u64 = 128_000;
const AUDIO_CODEC: &str = "mp4a.40.2";

/// A live master: bandwidth declared (rate-control ceiling + typical audio).
pub fn write(dir: &Path, variants: &[LiveVariant], audio: bool) -> Result<()> {
    let listed = serde_json::to_vec(&(variants, audio)).map_err(|e| MediaError::Packaging {
        path: dir.join(VARIANTS),
        reason: e.to_string(),
    })?;
    let tmp = dir.join(format!("{VARIANTS}.tmp"));
    std::fs::write(&tmp, listed).map_err(|e| MediaError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dir.join(VARIANTS))
        .map_err(|e| MediaError::io("renaming", &dir.join(VARIANTS), e))?;
    let audio = audio.then_some(Measured {
        peak: AUDIO_BPS,
        average: None,
    });
    write_with(dir, variants, audio)
}

/// Bits per second a track needs: its peak, and its average once measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub peak: u64,
    pub average: Option<u64>,
}

/// A master whose variants carry `max_bitrate` as their peak (measured on a
/// recording) and, when known, `average` (AVERAGE-BANDWIDTH), plus audio's.
pub fn write_with(dir: &Path, variants: &[LiveVariant], audio: Option<Measured>) -> Result<()> {
    let path = dir.join(MASTER);
    let packaging = |reason: String| MediaError::Packaging {
        path: path.clone(),
        reason,
    };
    let mut media = Vec::new();
    if audio.is_some() {
        media.push(
            ExtXMedia::builder()
                .media_type(MediaType::Audio)
                .group_id(AUDIO_GROUP)
                .name("default")
                .uri(format!("{AUDIO_DIR}/{MEDIA}"))
                .is_default(true)
                .is_autoselect(true)
                .build()
                .map_err(packaging)?,
        );
    }
    let mut streams = Vec::new();
    for v in variants {
        let mut codecs = vec![v.codec.clone()];
        let mut bandwidth = v.max_bitrate;
        let mut average = v.average_bitrate;
        if let Some(a) = audio {
            codecs.push(AUDIO_CODEC.into());
            bandwidth += a.peak;
            average = average.map(|v| v + a.average.unwrap_or(a.peak));
        }
        let mut data = StreamData::builder();
        data.bandwidth(bandwidth)
            .codecs(codecs)
            .resolution((v.width as usize, v.height as usize));
        if let Some(average) = average {
            data.average_bandwidth(average);
        }
        let stream_data = data.build().map_err(packaging)?;
        streams.push(VariantStream::ExtXStreamInf {
            uri: format!("{}/{MEDIA}", v.name).into(),
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
        .map_err(|e| packaging(e.to_string()))?;
    let tmp = dir.join(format!("{MASTER}.tmp"));
    std::fs::write(&tmp, master.to_string()).map_err(|e| MediaError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| MediaError::io("renaming", &path, e))
}
