//! Pulling a camera with `retina`, and staying connected. Retina leaves
//! robustness to the caller; this follows moonfire-nvr's practice:
//! - reconnect on any error and at the end of the stream, with exponential
//!   backoff, jitter and a cap, the backoff reset once a session delivered;
//! - a stall watchdog: no frame for `watchdog` is a failure (a frozen server
//!   makes retina wait far longer);
//! - each session in its own `SessionGroup`, its TEARDOWN awaited under a
//!   timeout, so a dead camera cannot hold a reconnect;
//! - credentials are taken out of the URL and never logged.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use rand::Rng;
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::watch;

use super::audio::AudioSource;
use super::ladder::{Input, VideoInput};
use super::{ChannelState, LiveStats};

/// How to reach the camera and how patient to be.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub url: url::Url,
    /// RTP over the RTSP connection (the default) or over UDP.
    pub udp: bool,
    /// No frame for this long and the session is dropped and redialled.
    pub watchdog: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// DESCRIBE/SETUP/PLAY and TEARDOWN each get this long.
    pub request_timeout: Duration,
}

impl IngestOptions {
    pub fn new(url: url::Url) -> Self {
        Self {
            url,
            udp: false,
            watchdog: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The URL as it may be shown: no user name, no password.
pub fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Splits credentials out of `url` (retina refuses URLs that carry them).
fn split_credentials(url: &url::Url) -> (url::Url, Option<Credentials>) {
    if url.username().is_empty() && url.password().is_none() {
        return (url.clone(), None);
    }
    let creds = Credentials {
        username: percent(url.username()),
        password: percent(url.password().unwrap_or("")),
    };
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    (bare, Some(creds))
}

fn percent(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// How a session ended without an error.
enum End {
    Stopped,
    EndOfStream,
}

/// Runs until `stop` says so: connect, stream into `tx`, and on any failure
/// close the run (`Input::Gap`) and dial again after a backoff.
pub async fn run(
    opts: IngestOptions,
    tx: SyncSender<Input>,
    stats: Arc<LiveStats>,
    mut stop: watch::Receiver<bool>,
) {
    let shown = redacted(&opts.url);
    let mut failures = 0u32;
    let mut was_live = false;
    loop {
        if *stop.borrow() {
            break;
        }
        stats.set_state(if was_live {
            ChannelState::Reconnecting
        } else {
            ChannelState::Connecting
        });
        let began = Instant::now();
        let delivered_before = stats.frames_in.load(Ordering::Relaxed);
        let group = Arc::new(SessionGroup::default());
        let result = session(&opts, &tx, &stats, &mut stop, &group).await;
        let _ = tx.send(Input::Gap);
        let why = match &result {
            Ok(End::Stopped) => None,
            Ok(End::EndOfStream) => Some("the camera ended the stream".to_owned()),
            Err(e) => Some(e.clone()),
        };
        if let Some(why) = &why {
            // Said before the teardown wait, which a frozen camera can drag out.
            tracing::warn!(url = %shown, reason = %why, "live input lost; reconnecting");
            stats.set_error(why.clone());
        }
        // TEARDOWN runs in the background; never wait for it longer than a
        // request (a dead camera would otherwise hold the redial).
        let _ = tokio::time::timeout(opts.request_timeout, group.await_teardown()).await;
        if why.is_none() {
            break;
        }
        // Reconnects count lost inputs, not failed attempts to get one back.
        let delivered = stats.frames_in.load(Ordering::Relaxed) > delivered_before;
        if delivered {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            was_live = true;
        }
        // A session that delivered for a while resets the backoff.
        if delivered && began.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        let backoff = backoff(&opts, failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
    }
    stats.set_state(ChannelState::Stopped);
}

/// `min * 2^failures`, capped, times a random factor in [0.5, 1].
fn backoff(opts: &IngestOptions, failures: u32) -> Duration {
    let base = opts
        .backoff_min
        .saturating_mul(1u32 << failures.min(16))
        .min(opts.backoff_max);
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}

fn audio_source(
    p: Option<ParametersRef<'_>>,
    encoding: &str,
    channels: u16,
) -> Option<AudioSource> {
    let encoding = encoding.to_ascii_lowercase();
    let source = match p {
        Some(ParametersRef::Audio(a)) if encoding == "mpeg4-generic" => AudioSource::Aac {
            config: a.extra_data().to_vec(),
            sample_rate: a.clock_rate(),
        },
        Some(ParametersRef::Audio(a)) => AudioSource::Other {
            encoding,
            sample_rate: a.clock_rate(),
            channels,
        },
        _ => return None,
    };
    source.supported().then_some(source)
}

async fn session(
    opts: &IngestOptions,
    tx: &SyncSender<Input>,
    stats: &LiveStats,
    stop: &mut watch::Receiver<bool>,
    group: &Arc<SessionGroup>,
) -> Result<End, String> {
    let (url, creds) = split_credentials(&opts.url);
    let limit = opts.request_timeout;
    let timed = |what: &'static str| move |_| format!("{what}: no answer in {limit:?}");
    let mut described = tokio::time::timeout(
        limit,
        Session::describe(
            url,
            SessionOptions::default()
                .creds(creds)
                .user_agent("video-appliance".into())
                .session_group(Arc::clone(group)),
        ),
    )
    .await
    .map_err(timed("DESCRIBE"))?
    .map_err(|e| format!("DESCRIBE: {e}"))?;
    let streams = described.streams();
    let video_i = streams
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
        .ok_or_else(|| {
            let found: Vec<String> = streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            format!(
                "no H.264 or H.265 video in the stream (found {})",
                found.join(", ")
            )
        })?;
    let audio_i = streams.iter().position(|s| {
        s.media() == "audio"
            && audio_source(
                s.parameters(),
                s.encoding_name(),
                s.channels().map_or(1, |c| c.get()),
            )
            .is_some()
    });
    let transport = if opts.udp {
        Transport::Udp(UdpTransportOptions::default())
    } else {
        Transport::Tcp(TcpTransportOptions::default())
    };
    tokio::time::timeout(
        limit,
        described.setup(
            video_i,
            SetupOptions::default()
                .transport(transport.clone())
                .frame_format(FrameFormat::SIMPLE),
        ),
    )
    .await
    .map_err(timed("SETUP"))?
    .map_err(|e| format!("SETUP video: {e}"))?;
    if let Some(ai) = audio_i {
        // Raw AAC (not ADTS): it goes into fMP4 as it comes.
        let format = FrameFormat {
            aac_framing: retina::codec::aac::Framing::Raw,
            ..FrameFormat::SIMPLE
        };
        tokio::time::timeout(
            limit,
            described.setup(
                ai,
                SetupOptions::default()
                    .transport(transport)
                    .frame_format(format),
            ),
        )
        .await
        .map_err(timed("SETUP"))?
        .map_err(|e| format!("SETUP audio: {e}"))?;
    }
    let playing = tokio::time::timeout(limit, described.play(PlayOptions::default()))
        .await
        .map_err(timed("PLAY"))?
        .map_err(|e| format!("PLAY: {e}"))?;
    let mut demuxed = playing.demuxed().map_err(|e| format!("PLAY: {e}"))?;
    let codec = if demuxed.streams()[video_i].encoding_name() == "h265" {
        "hevc"
    } else {
        "h264"
    };

    let mut started: Option<(Instant, i64)> = None;
    let mut audio0: Option<i64> = None;
    let mut video: Option<VideoInput> = None;
    let mut wait_key = true;
    let outcome = loop {
        let item = tokio::select! {
            _ = stop.changed() => break Ok(End::Stopped),
            item = tokio::time::timeout(opts.watchdog, demuxed.next()) => item,
        };
        let item = match item {
            Err(_) => break Err(format!("stall watchdog: no frame for {:?}", opts.watchdog)),
            Ok(None) => break Ok(End::EndOfStream),
            Ok(Some(Err(e))) => break Err(e.to_string()),
            Ok(Some(Ok(item))) => item,
        };
        match item {
            CodecItem::VideoFrame(f) => {
                let key = f.is_random_access_point();
                if wait_key && !key {
                    continue; // decoding starts at a key frame
                }
                let params = match demuxed.streams()[video_i].parameters() {
                    Some(ParametersRef::Video(v)) => Some(VideoInput {
                        codec: codec.into(),
                        width: v.pixel_dimensions().0,
                        height: v.pixel_dimensions().1,
                        // retina gives the frame *duration* (1001, 30000).
                        frame_rate: v.frame_rate().map(|(n, d)| (d, n)),
                    }),
                    _ => None,
                };
                // A new run at the first key frame, and at a key frame whose
                // parameter sets change the picture size.
                let restart =
                    started.is_none() || (key && f.has_new_parameters() && params != video);
                if restart {
                    let Some(v) = params.clone() else {
                        continue;
                    };
                    if started.is_some() {
                        let _ = tx.send(Input::Gap);
                    }
                    let audio = audio_i.and_then(|ai| {
                        let s = &demuxed.streams()[ai];
                        audio_source(
                            s.parameters(),
                            s.encoding_name(),
                            s.channels().map_or(1, |c| c.get()),
                        )
                    });
                    stats.set_input(format!("{} {}x{}", v.codec, v.width, v.height));
                    tx.send(Input::Start {
                        video: v,
                        audio,
                        at: SystemTime::now(),
                    })
                    .map_err(|_| "the ladder stopped".to_owned())?;
                    video = params;
                    started = Some((Instant::now(), f.timestamp().elapsed()));
                    audio0 = None;
                    stats.set_state(super::ChannelState::Live);
                }
                let (_, t0) = started.expect("set above");
                let since = (f.timestamp().elapsed() - t0).max(0) as f64 / 90_000.0;
                stats.frames_in.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_in
                    .fetch_add(f.data().len() as u64, Ordering::Relaxed);
                stats.touch();
                match tx.try_send(Input::Video {
                    data: f.into_data(),
                    since_start: Duration::from_secs_f64(since),
                    key,
                }) {
                    Ok(()) => wait_key = false,
                    // The ladder is behind: drop, and resume at a key frame so
                    // the decoder never sees a broken reference chain.
                    Err(TrySendError::Full(_)) => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        wait_key = true;
                    }
                    Err(TrySendError::Disconnected(_)) => break Err("the ladder stopped".into()),
                }
            }
            CodecItem::AudioFrame(a) => {
                let Some((at, _)) = started else { continue };
                let rate = i64::from(a.timestamp().clock_rate().get());
                // The first audio frame is placed by its arrival against the
                // first video frame's; later ones by their RTP clock.
                let first = *audio0.get_or_insert_with(|| {
                    a.timestamp().elapsed()
                        - (at.elapsed().as_secs_f64() * rate as f64).round() as i64
                });
                let pts = a.timestamp().elapsed() - first;
                let _ = tx.try_send(Input::Audio {
                    data: a.data().to_vec(),
                    pts,
                });
            }
            CodecItem::MessageFrame(_) | CodecItem::Rtcp(_) => {}
            _ => {}
        }
    };
    drop(demuxed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_the_logs() {
        let u = url::Url::parse("rtsp://admin:p%40ss@cam.local:554/stream1").unwrap();
        let (bare, creds) = split_credentials(&u);
        assert_eq!(bare.as_str(), "rtsp://cam.local:554/stream1");
        let c = creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert_eq!(redacted(&u), "rtsp://cam.local:554/stream1");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let o = IngestOptions::new(url::Url::parse("rtsp://x/").unwrap());
        for (failures, base_ms) in [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 5000),
            (20, 5000),
        ] {
            let b = backoff(&o, failures).as_millis() as u64;
            assert!(b >= base_ms / 2 && b <= base_ms, "{failures}: {b} ms");
        }
    }
}
