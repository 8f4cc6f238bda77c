//! Pulling a camera with `retina`, and staying connected. Retina leaves
//! robustness to the caller; this follows moonfire-nvr's practice:
//! - reconnect on any error and at the end of the stream, with exponential
//!   backoff, jitter and a cap, the backoff reset once a session delivered;
//! - a stall watchdog: no frame for `watchdog` is a failure (a frozen server
//!   makes retina wait far longer);
//! - each session in its own `SessionGroup`, its TEARDOWN awaited under a
//!   timeout, so a dead camera cannot hold a reconnect;
//! - credentials are taken out of the URL and never logged.
//!
//! Time: a run's media time is anchored at the arrival of its first frame
//! at the box and advanced by the camera's RTP clock ([`MediaClock`]), so a
//! segment's program date-time is when its frames were captured as the box
//! sees them. RTP timestamps can jump: GStreamer's RTSP server seeks a
//! shared stream back to 0 for every viewer when another one sends `PLAY`
//! with `Range: npt=0.000-` (which retina always sends), and cameras reset
//! their clocks. A jump is bridged by the box's clock, so the timeline
//! neither rewinds nor leaps and latency does not depend on who joined when.

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

    // The run's first frame's arrival and its video clock; its audio clock.
    let mut started: Option<(Instant, MediaClock)> = None;
    let mut audio_clock: Option<MediaClock> = None;
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
        // A frame's time at the box: its arrival, not when it is handled.
        let arrived = Instant::now();
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
                    // The program date-time anchor: the wall clock when this
                    // frame arrived (the send below may wait for the ladder).
                    let at = SystemTime::now()
                        .checked_sub(arrived.elapsed())
                        .unwrap_or_else(SystemTime::now);
                    tx.send(Input::Start {
                        video: v,
                        audio,
                        at,
                    })
                    .map_err(|_| "the ladder stopped".to_owned())?;
                    video = params;
                    started = Some((
                        arrived,
                        MediaClock::new(
                            f.timestamp().clock_rate().get(),
                            f.timestamp().elapsed(),
                            arrived,
                            0.0,
                        ),
                    ));
                    audio_clock = None;
                    stats.set_state(super::ChannelState::Live);
                }
                let (_, clock) = started.as_mut().expect("set above");
                let since = clock.place(f.timestamp().elapsed(), arrived).max(0.0);
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
                let Some((began, _)) = started else { continue };
                let rate = a.timestamp().clock_rate().get();
                // The first audio frame is placed by its arrival against the
                // first video frame's; later ones by their RTP clock.
                let clock = audio_clock.get_or_insert_with(|| {
                    let since = arrived.saturating_duration_since(began).as_secs_f64();
                    MediaClock::new(rate, a.timestamp().elapsed(), arrived, since)
                });
                let since = clock.place(a.timestamp().elapsed(), arrived);
                let pts = (since * f64::from(rate)).round() as i64;
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

/// One track's media time in a run, in seconds: anchored at an arrival and
/// advanced by the RTP clock, except across a jump of the timestamps, which
/// the box's clock bridges (see the module doc).
#[derive(Debug, Clone, Copy)]
struct MediaClock {
    rate: f64,
    /// The RTP time (`Timestamp::elapsed`) the timeline counts from, and its
    /// media time.
    anchor: (i64, f64),
    /// The previous frame's RTP time, arrival and media time.
    last: (i64, Instant, f64),
}

impl MediaClock {
    /// A step back further than this is a jump, not B-frame reordering.
    const BACK: f64 = 0.25;
    /// Timestamps that advance this much further than the box's clock leapt.
    const AHEAD: f64 = 1.0;

    /// A clock whose first frame, at RTP time `ts`, arrived at `arrived`
    /// and is at `since`.
    fn new(rate: u32, ts: i64, arrived: Instant, since: f64) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            anchor: (ts, since),
            last: (ts, arrived, since),
        }
    }

    /// The media time of the frame at RTP time `ts` that arrived at
    /// `arrived`.
    fn place(&mut self, ts: i64, arrived: Instant) -> f64 {
        let (last_ts, last_arrived, last_since) = self.last;
        let step = (ts - last_ts) as f64 / self.rate;
        let waited = arrived
            .saturating_duration_since(last_arrived)
            .as_secs_f64();
        if step < -Self::BACK || step > waited + Self::AHEAD {
            // The timestamps jumped: carry on from the previous frame by the
            // time that passed at the box.
            tracing::info!(
                jump_secs = step - waited,
                "the camera's timestamps jumped; bridged by the arrival clock"
            );
            self.anchor = (ts, last_since + waited);
        }
        let since = self.anchor.1 + (ts - self.anchor.0) as f64 / self.rate;
        self.last = (ts, arrived, since);
        since
    }
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

    /// 30 fps at 90 kHz: frame `n` at RTP time `ts0 + 3000 n`, arriving at
    /// `t0 + n / 30 s` plus `late`.
    fn frame(t0: Instant, n: i64, late: f64) -> Instant {
        t0 + Duration::from_secs_f64(n as f64 / 30.0 + late)
    }

    #[test]
    fn media_time_follows_the_rtp_clock_from_the_first_frame() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(90_000, 1_000_000, t0, 0.0);
        assert_eq!(c.place(1_000_000, t0), 0.0);
        for n in 1..300 {
            // Arrival jitter does not move a frame's time.
            let jitter = if n % 2 == 0 { 0.04 } else { 0.0 };
            let since = c.place(1_000_000 + 3000 * n, frame(t0, n, jitter));
            assert!((since - n as f64 / 30.0).abs() < 1e-9, "{n}: {since}");
        }
    }

    #[test]
    fn a_shared_stream_seeked_back_by_another_viewer_does_not_rewind_the_run() {
        // GStreamer's RTSP server rewinds every viewer's RTP time to the
        // stream's start when another viewer PLAYs with a range.
        let t0 = Instant::now();
        let mut c = MediaClock::new(90_000, 0, t0, 0.0);
        let mut ts = 0;
        for n in 1..=90i64 {
            ts = if n == 30 || n == 60 { 0 } else { ts + 3000 };
            let since = c.place(ts, frame(t0, n, 0.0));
            assert!((since - n as f64 / 30.0).abs() < 1e-9, "{n}: {since}");
        }
    }

    #[test]
    fn a_forward_leap_of_the_timestamps_is_bridged_too() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(90_000, 0, t0, 0.0);
        for n in 1..=60i64 {
            let ts = 3000 * n + if n >= 30 { 90_000 * 3600 } else { 0 };
            let since = c.place(ts, frame(t0, n, 0.0));
            assert!((since - n as f64 / 30.0).abs() < 1e-9, "{n}: {since}");
        }
    }

    #[test]
    fn late_frames_and_reordered_ones_keep_their_capture_time() {
        let t0 = Instant::now();
        let mut c = MediaClock::new(90_000, 0, t0, 0.0);
        // A 3 s stall, then the backlog at once: each at its own time.
        for n in 1..=120i64 {
            let at = if (30..120).contains(&n) {
                frame(t0, 120, 0.0)
            } else {
                frame(t0, n, 0.0)
            };
            let since = c.place(3000 * n, at);
            assert!((since - n as f64 / 30.0).abs() < 1e-9, "{n}: {since}");
        }
        // B-frames: presentation time steps back by a few frames.
        let since = c.place(3000 * 118, frame(t0, 121, 0.0));
        assert!((since - 118.0 / 30.0).abs() < 1e-9, "{since}");
    }

    #[test]
    fn audio_starts_at_its_arrival_after_the_first_video_frame() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_millis(250);
        let mut a = MediaClock::new(48_000, 7, at, 0.25);
        assert_eq!(a.place(7, at), 0.25);
        let since = a.place(7 + 1024, at + Duration::from_millis(21));
        assert!((since - (0.25 + 1024.0 / 48_000.0)).abs() < 1e-9, "{since}");
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
