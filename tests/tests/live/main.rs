//! `appliance ingest-rtsp` end to end: a real RTSP server nobody on the
//! project wrote (GStreamer's, from Debian, started by `tests/rtsp/serve.py`)
//! on a free loopback port, the real binary pulling it into a live HLS
//! ladder, and that ladder read the way live players read it — reloading the
//! playlists, through a camera that dies, freezes, and an ingester that
//! restarts.
//!
//! The contract under test:
//!
//! ```text
//! appliance ingest-rtsp <rtsp-url> --out DIR [--rungs 720,480,360] [--duration SECS] [--watchdog-secs N]
//! DIR/master.m3u8, DIR/v{H}/index.m3u8 (or {H}p/) + init-{N}.mp4 + {seq}.m4s, DIR/audio/…, DIR/live.json
//! ```
//!
//! 2 s CMAF segments, EXT-X-TARGETDURATION:2 always, a window of ≥ 3
//! segments, EXT-X-PROGRAM-DATE-TIME on every segment, EXT-X-DISCONTINUITY
//! (+ DISCONTINUITY-SEQUENCE, + its own EXT-X-MAP) after a reconnect,
//! EXT-X-ENDLIST and exit 0 on --duration expiry, SIGTERM or SIGINT.
//!
//! Outside CI the tests skip when GStreamer's RTSP server is not installed;
//! under CI that fails them (`scripts/setup` installs it). Each test needs
//! the two cores to itself (a live ladder is encoded in real time), so they
//! run one at a time (a lock in `ladder.rs`; `.config/nextest.toml` for
//! nextest).
//!
//! By concern:
//!
//! - `ladder.rs`: the rig (temp dir, RTSP server, the lock) and what a
//!   finished live ladder must be;
//! - `mounts.rs`: each camera mount (H.264, H.265, with G.711 or AAC audio)
//!   gives a live ladder that ffmpeg reads while it grows;
//! - `drops.rs`: a camera killed and restarted, a frozen camera, a restarted
//!   ingester — each one discontinuity, and the stream goes on;
//! - `signals.rs`: SIGTERM and SIGINT end the playlists and exit 0 (SIGINT
//!   after hls.js in headless Chromium has played the live stream);
//! - `server.rs`: live channels in `appliance serve` — a channel made over
//!   the API, served by the origin (cache headers, ETag/304, CORS), read
//!   live by ffmpeg, surviving a `kill -9` and a SIGTERM of the box
//!   (numbering goes on after one discontinuity each, no EXT-X-ENDLIST),
//!   clipped, and stopped into a VOD video with a discontinuity between
//!   runs; and each refusal (role, URL, rungs, capacity with its units,
//!   another creator's channel, a clip of a channel that does not record).

use std::time::Duration;

mod drops;
mod ladder;
mod mounts;
mod server;
mod signals;

const RUNGS: [u64; 3] = [720, 480, 360];
const TARGET: u64 = 2;
const MIN_WINDOW: usize = 3;
const POLL: Duration = Duration::from_millis(500);
/// From the start of `ingest-rtsp` to its first segment on disk (connect,
/// first key frame, one 2 s segment, encoder start-up on a busy box).
const FIRST_SEGMENT: Duration = Duration::from_secs(60);
/// Past --duration, for the last segment and EXT-X-ENDLIST.
const WIND_DOWN: Duration = Duration::from_secs(90);
