//! Probe and validate an input with libavformat/libavcodec before any work is
//! planned. Every refusal is a [`MediaError::Rejected`] with a [`RejectCode`].

use std::io::Read;
use std::path::{Path, PathBuf};

use ff::codec::packet::side_data::Type as SideDataType;
use ff::format::stream::Disposition;
use ff::media::Type as MediaType;
use ff::Rational;
use ffmpeg_next as ff;
use serde::Serialize;

use crate::error::{Location, MediaError, RejectCode, Result};

/// Containers we accept, by libavformat demuxer name.
const ALLOWED_CONTAINERS: &[&str] = &["mov", "mp4", "matroska", "webm", "mpegts", "avi"];
/// Video codecs we accept, by libavcodec codec name.
const ALLOWED_VIDEO_CODECS: &[&str] = &[
    "h264",
    "hevc",
    "vp9",
    "av1",
    "mpeg2video",
    "prores",
    "mjpeg",
];
/// How many video packets may pass before the first decoded frame: generous
/// enough for long open-GOP lead-ins, bounded so a junk stream cannot spin.
const MAX_PACKETS_TO_FIRST_FRAME: usize = 2_000;

/// Operator-configurable input limits (spec §Media pipeline 2).
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_duration_secs: f64,
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 5_000_000_000,
            max_duration_secs: 600.0,
            max_width: 4096,
            max_height: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// libavformat's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    pub duration_secs: f64,
    pub video: VideoInfo,
    pub audio: Option<AudioInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoInfo {
    pub index: usize,
    pub codec: String,
    /// Coded frame size, before rotation and sample-aspect correction.
    pub width: u32,
    pub height: u32,
    pub sample_aspect: (i32, i32),
    pub pixel_format: String,
    pub bit_depth: u8,
    /// Clockwise rotation a player must apply, from the display matrix: 0, 90, 180 or 270.
    pub rotation: u32,
    /// Average frame rate (frames / duration): the rate the viewer sees.
    pub avg_frame_rate: (i32, i32),
    /// libavformat's guess of the base rate (the finest timestamp grid).
    pub base_frame_rate: (i32, i32),
    pub interlaced: bool,
    pub time_base: (i32, i32),
    /// First timestamp of the stream in its time base (0 when unknown).
    pub start_pts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioInfo {
    pub index: usize,
    pub codec: String,
    pub channels: u16,
    pub sample_rate: u32,
}

impl VideoInfo {
    /// Frame size as displayed: sample aspect applied, then rotation.
    pub fn display_size(&self) -> (u32, u32) {
        let (n, d) = self.sample_aspect;
        let w = if n > 0 && d > 0 && n != d {
            (f64::from(self.width) * f64::from(n) / f64::from(d)).round() as u32
        } else {
            self.width
        };
        if self.rotation % 180 == 90 {
            (self.height, w)
        } else {
            (w, self.height)
        }
    }
}

/// Reads `path`, checks it against the allow-list and `limits`, and decodes one
/// video frame to prove the stream is usable.
pub fn probe(path: &Path, limits: &Limits) -> Result<SourceInfo> {
    crate::init();
    let reject = |code, reason: String| MediaError::rejected(path, code, reason);

    let size_bytes = std::fs::metadata(path)
        .map_err(|e| MediaError::io("reading", path, e))?
        .len();
    if size_bytes == 0 {
        return Err(reject(
            RejectCode::CorruptMedia,
            "the file is empty (0 bytes)".into(),
        ));
    }
    if size_bytes > limits.max_bytes {
        return Err(reject(
            RejectCode::FileTooLarge,
            format!(
                "the file is {size_bytes} bytes; the limit is {} bytes",
                limits.max_bytes
            ),
        ));
    }
    if sniff_container(path)?.is_none() {
        return Err(reject(
            RejectCode::UnsupportedFormat,
            "not a recognised audio/video container (the content matches no known media format)"
                .into(),
        ));
    }

    let mut input = ff::format::input(&path).map_err(|e| {
        reject(
            RejectCode::CorruptMedia,
            format!("the container could not be read, it may be truncated or damaged ({e})"),
        )
    })?;
    let container = input.format().name().to_owned();
    if !container
        .split(',')
        .any(|n| ALLOWED_CONTAINERS.contains(&n))
    {
        return Err(reject(
            RejectCode::UnsupportedFormat,
            format!("container `{container}` is not accepted (accepted: MP4/MOV, WebM/MKV, MPEG-TS, AVI)"),
        ));
    }

    let video_stream = input
        .streams()
        .filter(|s| s.parameters().medium() == MediaType::Video)
        .filter(|s| !s.disposition().contains(Disposition::ATTACHED_PIC))
        .max_by_key(|s| {
            let p = s.parameters();
            // SAFETY: codecpar is valid for the lifetime of the stream.
            let (w, h) = unsafe { ((*p.as_ptr()).width, (*p.as_ptr()).height) };
            i64::from(w) * i64::from(h)
        })
        .map(|s| s.index());
    let Some(vindex) = video_stream else {
        if input.streams().count() == 0 {
            return Err(reject(
                RejectCode::CorruptMedia,
                "the container holds no readable stream; the file is truncated or damaged".into(),
            ));
        }
        let found: Vec<String> = input
            .streams()
            .map(|s| {
                format!(
                    "{:?} ({})",
                    s.parameters().medium(),
                    s.parameters().id().name()
                )
            })
            .collect();
        return Err(reject(
            RejectCode::UnsupportedFormat,
            format!(
                "no video stream; the file contains only: {}",
                found.join(", ")
            ),
        ));
    };

    let vstream = input.stream(vindex).expect("index from streams()");
    let params = vstream.parameters();
    let codec = params.id().name().to_owned();
    if !ALLOWED_VIDEO_CODECS.contains(&codec.as_str()) {
        return Err(reject(
            RejectCode::UnsupportedFormat,
            format!("video codec `{codec}` is not accepted (accepted: H.264, HEVC, VP9, AV1, MPEG-2, ProRes, MJPEG)"),
        ));
    }
    if vstream
        .side_data()
        .any(|sd| sd.kind() == SideDataType::EncryptionInitInfo)
    {
        return Err(reject(
            RejectCode::EncryptedMedia,
            "the video stream is encrypted (CENC/DRM)".into(),
        ));
    }
    // SAFETY: codecpar is valid while `input` lives; plain field reads.
    let (width, height, field_order) = unsafe {
        let p = params.as_ptr();
        (
            (*p).width.max(0) as u32,
            (*p).height.max(0) as u32,
            (*p).field_order,
        )
    };
    if width > limits.max_width || height > limits.max_height {
        return Err(reject(
            RejectCode::ResolutionLimit,
            format!(
                "the video is {width}×{height}; the limit is {}×{}",
                limits.max_width, limits.max_height
            ),
        ));
    }

    let time_base = vstream.time_base();
    let duration_secs = duration_of(&input, vindex);
    if duration_secs > limits.max_duration_secs {
        return Err(reject(
            RejectCode::DurationLimit,
            format!(
                "the video lasts {duration_secs:.1} s; the limit is {:.0} s",
                limits.max_duration_secs
            ),
        ));
    }
    let rotation = vstream
        .side_data()
        .find(|sd| sd.kind() == SideDataType::DisplayMatrix && sd.data().len() >= 36)
        .map(|sd| {
            // SAFETY: a display matrix is nine 32-bit integers; length checked above.
            let ccw = unsafe { ff::ffi::av_display_rotation_get(sd.data().as_ptr().cast()) };
            // The matrix rotates counter-clockwise; players turn the picture clockwise.
            (((-ccw).round() as i64).rem_euclid(360) as u32 + 45) / 90 % 4 * 90
        })
        .unwrap_or(0);
    let avg_frame_rate = vstream.avg_frame_rate();
    let base_frame_rate = vstream.rate();
    let start_pts = if vstream.start_time() == ff::ffi::AV_NOPTS_VALUE {
        0
    } else {
        vstream.start_time()
    };

    let audio = input
        .streams()
        .best(MediaType::Audio)
        .and_then(|s| audio_info(&s));

    let first = first_frame(path, &mut input, vindex, time_base)?;
    let pix = first.format();
    let bit_depth = pix.descriptor().map(|d| {
        // SAFETY: descriptor pointers from libavutil are static.
        unsafe { (*d.as_ptr()).comp[0].depth as u8 }
    });
    let interlaced = first.is_interlaced()
        || !matches!(
            field_order,
            ff::ffi::AVFieldOrder::AV_FIELD_PROGRESSIVE | ff::ffi::AVFieldOrder::AV_FIELD_UNKNOWN
        );
    let sar = first.aspect_ratio();

    Ok(SourceInfo {
        path: path.to_owned(),
        size_bytes,
        container,
        duration_secs,
        video: VideoInfo {
            index: vindex,
            codec,
            width: first.width(),
            height: first.height(),
            sample_aspect: (sar.numerator(), sar.denominator()),
            pixel_format: format!("{pix:?}").to_lowercase(),
            bit_depth: bit_depth.unwrap_or(8),
            rotation,
            avg_frame_rate: (avg_frame_rate.numerator(), avg_frame_rate.denominator()),
            base_frame_rate: (base_frame_rate.numerator(), base_frame_rate.denominator()),
            interlaced,
            time_base: (time_base.numerator(), time_base.denominator()),
            start_pts,
        },
        audio,
    })
}

/// Asks libavformat which format the *content* looks like, ignoring the file
/// name, so a text file renamed `.mp4` is told apart from a damaged MP4.
fn sniff_container(path: &Path) -> Result<Option<String>> {
    const PROBE_BYTES: usize = 1 << 20;
    let mut buf = Vec::with_capacity(PROBE_BYTES);
    std::fs::File::open(path)
        .and_then(|f| f.take(PROBE_BYTES as u64).read_to_end(&mut buf))
        .map_err(|e| MediaError::io("reading", path, e))?;
    let len = buf.len();
    buf.resize(len + ff::ffi::AVPROBE_PADDING_SIZE as usize, 0);
    let empty_name = c"";
    let pd = ff::ffi::AVProbeData {
        filename: empty_name.as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: len as i32,
        mime_type: std::ptr::null(),
    };
    let mut score = 0;
    // SAFETY: pd points at a padded buffer that outlives the call.
    let fmt = unsafe { ff::ffi::av_probe_input_format3(&pd, 1, &mut score) };
    if fmt.is_null() {
        return Ok(None);
    }
    // SAFETY: demuxer descriptors are static.
    let name = unsafe { std::ffi::CStr::from_ptr((*fmt).name) }
        .to_string_lossy()
        .into_owned();
    Ok(Some(name))
}

fn duration_of(input: &ff::format::context::Input, vindex: usize) -> f64 {
    let s = input.stream(vindex).expect("valid index");
    let tb = s.time_base();
    if s.duration() > 0 && tb.denominator() > 0 {
        return s.duration() as f64 * f64::from(tb);
    }
    if input.duration() > 0 {
        return input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE);
    }
    0.0
}

fn audio_info(s: &ff::format::stream::Stream<'_>) -> Option<AudioInfo> {
    let params = s.parameters();
    let ctx = ff::codec::context::Context::from_parameters(params.clone()).ok()?;
    let dec = ctx.decoder().audio().ok();
    let Some(dec) = dec else {
        tracing::warn!(
            stream = s.index(),
            codec = params.id().name(),
            "audio stream has no decoder; it will be dropped"
        );
        return None;
    };
    Some(AudioInfo {
        index: s.index(),
        codec: params.id().name().to_owned(),
        channels: dec.channels(),
        sample_rate: dec.rate(),
    })
}

fn first_frame(
    path: &Path,
    input: &mut ff::format::context::Input,
    vindex: usize,
    time_base: Rational,
) -> Result<ff::frame::Video> {
    let stream = input.stream(vindex).expect("valid index");
    let corrupt = |reason: String| MediaError::rejected(path, RejectCode::CorruptMedia, reason);
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| {
        corrupt(format!(
            "video stream #{vindex} has unusable codec parameters ({e})"
        ))
    })?;
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| corrupt(format!("video stream #{vindex} cannot be decoded ({e})")))?;
    let mut frame = ff::frame::Video::empty();
    let mut seen = 0usize;
    let mut last_error = None;
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(input) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => continue,
            Err(e) => {
                last_error = Some(e.to_string());
                break;
            }
        }
        if packet.stream() != vindex {
            continue;
        }
        if packet
            .side_data()
            .any(|sd| sd.kind() == SideDataType::EncryptionInfo)
        {
            return Err(MediaError::rejected(
                path,
                RejectCode::EncryptedMedia,
                "the video samples are encrypted (CENC/DRM)",
            ));
        }
        seen += 1;
        if let Err(e) = decoder.send_packet(&packet) {
            last_error = Some(format!(
                "{e} at {}",
                Location {
                    file: path.to_owned(),
                    stream: Some(vindex),
                    timestamp: packet.pts().map(|p| p as f64 * f64::from(time_base)),
                }
            ));
        }
        if decoder.receive_frame(&mut frame).is_ok() {
            return Ok(frame);
        }
        if seen >= MAX_PACKETS_TO_FIRST_FRAME {
            break;
        }
    }
    let _ = decoder.send_eof();
    if decoder.receive_frame(&mut frame).is_ok() {
        return Ok(frame);
    }
    Err(corrupt(match last_error {
        Some(e) => format!("no decodable video frame ({seen} packets read; last error: {e})"),
        None => format!("no decodable video frame ({seen} video packets read)"),
    }))
}
