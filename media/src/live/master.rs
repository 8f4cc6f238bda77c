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

/// One rung as listed.
pub struct LiveVariant {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub max_bitrate: u64,
    pub codec: String,
    pub frame_rate: f64,
}

/// Declared audio bandwidth (the AAC encoder's or a camera's typical rate).
const AUDIO_BPS: u64 = 128_000;
const AUDIO_CODEC: &str = "mp4a.40.2";

pub fn write(dir: &Path, variants: &[LiveVariant], audio: bool) -> Result<()> {
    let path = dir.join(MASTER);
    let packaging = |reason: String| MediaError::Packaging {
        path: path.clone(),
        reason,
    };
    let mut media = Vec::new();
    if audio {
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
        if audio {
            codecs.push(AUDIO_CODEC.into());
            bandwidth += AUDIO_BPS;
        }
        let stream_data = StreamData::builder()
            .bandwidth(bandwidth)
            .codecs(codecs)
            .resolution((v.width as usize, v.height as usize))
            .build()
            .map_err(packaging)?;
        streams.push(VariantStream::ExtXStreamInf {
            uri: format!("{}/{MEDIA}", v.name).into(),
            frame_rate: Some(UFloat::new(
                ((v.frame_rate * 1000.0).round() / 1000.0) as f32,
            )),
            audio: audio.then(|| AUDIO_GROUP.into()),
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
