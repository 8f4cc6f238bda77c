//! Live RTSP ingest: a real RTSP server (Debian's GStreamer, driven by
//! `tests/rtsp/serve.py`), the `appliance ingest-rtsp` process under test, a
//! poller that records every version of a live playlist, a parser for live
//! media playlists (RFC 8216 §4.3) and the invariants a live playlist must
//! keep from one reload to the next (§6.2.2, §6.3.4).
//!
//! By concern:
//!
//! - `server.rs`: the RTSP server (`serve.py`), free ports, signals, and
//!   when a missing GStreamer skips a test or fails it;
//! - `ingest.rs`: `appliance ingest-rtsp` in the background, its output
//!   collected line by line;
//! - `playlist.rs`: the live media playlist parser and program date-times;
//! - `history.rs`: the poller that rereads a playlist like a live player, and
//!   the invariants across its versions;
//! - `decode.rs`: segments probed and decoded with their init segment, and
//!   `ffmpeg` reading the live stream;
//! - `web.rs`: a static HTTP server for the browser test.
//!
//! The submodules are private: everything is used through the names
//! re-exported here (`use e2e::rtsp::{…}`).

mod decode;
mod history;
mod ingest;
mod playlist;
mod server;
mod web;

pub use decode::{assert_segment_decodes, probe_segment, LiveReader, ReaderResult};
pub use history::{check_history, History, PlaylistPoller, Snapshot};
pub use ingest::{Ingest, Line};
pub use playlist::{now_ms, parse_pdt, LivePlaylist, LiveSegment};
pub use server::{
    free_port, rtsp_server_available, serve_script, under_ci, RtspServer, PACKAGES, PYTHON,
};
pub use web::StaticServer;
