//! A live channel's directory: every track's sliding window of segments, its
//! playlists (RFC 8216 §6.2.2, written with `hls_m3u8`) and the state that
//! makes numbering survive restarts (`live.json`).
//!
//! Invariants, across reconnects and restarts of the process:
//! - `EXT-X-TARGETDURATION` is [`TARGET_SECS`], always;
//! - `EXT-X-MEDIA-SEQUENCE` rises by one per removed segment, never falls;
//!   segment file numbers are shared by the tracks and never reused;
//! - a new run (reconnect, restart) starts with `EXT-X-DISCONTINUITY` and its
//!   own init segment, and `EXT-X-DISCONTINUITY-SEQUENCE` counts the
//!   discontinuities that slid out;
//! - every segment carries `EXT-X-PROGRAM-DATE-TIME`;
//! - a removed segment stays on disk for its duration plus the window's, so
//!   a client that fetched the previous playlist can still get it;
//! - files and playlists appear whole (written aside, then renamed);
//! - while recording, every committed segment is also appended to its
//!   track's `recorded.jsonl` and is never deleted, so [`super::record`]
//!   can turn any span of the channel into a VOD ladder without re-encoding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hls_m3u8::tags::{ExtXMap, ExtXProgramDateTime};
use hls_m3u8::{MediaPlaylist, MediaSegment};
use serde::{Deserialize, Serialize};

use crate::error::{MediaError, Result};
use crate::playlist::{tidy_extinf, MEDIA};

/// Every segment's target (and maximum) duration.
pub const TARGET_SECS: u64 = 2;
/// Segments a playlist lists: 12 s, over the 3 target durations RFC 8216
/// §6.2.2 asks for, so a player polling late still finds its next segment.
pub const WINDOW: usize = 6;
const STATE: &str = "live.json";
/// Per track: one JSON [`Entry`] per committed segment, while recording.
pub const RECORDED: &str = "recorded.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub uri: String,
    pub duration: f64,
    /// RFC 3339, milliseconds, UTC.
    pub pdt: String,
    pub discontinuity: bool,
    /// The init segment in force (listed as `EXT-X-MAP` where it changes).
    pub map: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct TrackWindow {
    entries: Vec<Entry>,
    /// Segments removed from this track's window so far (a track may lack a
    /// segment number, e.g. audio before the camera's audio started, so this
    /// is per track, not the shared number).
    media_sequence: u64,
    discontinuity_sequence: u64,
    /// Files slid out of the window and when they may go (Unix seconds).
    retired: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct State {
    /// The number the next segment gets (all tracks share numbering).
    next_seq: u64,
    /// Runs so far: each has its own init segments.
    run: u64,
    ended: bool,
    tracks: BTreeMap<String, TrackWindow>,
}

pub struct LiveDir {
    dir: PathBuf,
    state: State,
    /// The next segment of each track opens a discontinuity.
    pending_discontinuity: bool,
    recording: bool,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MediaError + 'a {
    move |e| MediaError::io(op, path, e)
}

/// Writes `bytes` to `path` through a temporary name, so readers see the
/// old file or the new one, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}

/// Appends one JSON line and syncs it: a recording lists only segments
/// whose files are already in place, and survives a crash.
fn append_line(path: &Path, entry: &Entry) -> Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(entry).map_err(|e| MediaError::Packaging {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("opening", path))?;
    f.write_all(&line).map_err(io("appending to", path))?;
    f.sync_data().map_err(io("syncing", path))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 in UTC with milliseconds, as `EXT-X-PROGRAM-DATE-TIME` wants.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let dt = time::OffsetDateTime::UNIX_EPOCH + d;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

impl LiveDir {
    /// Opens (or creates) a channel directory. A directory that already
    /// holds segments continues their numbering, after a discontinuity.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let path = dir.join(STATE);
        let state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MediaError::Packaging {
                path: path.clone(),
                reason: format!("unreadable live state: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(MediaError::io("reading", &path, e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            state,
            pending_discontinuity: false,
            recording: false,
        })
    }

    /// Keeps every segment from now on and lists it in `recorded.jsonl`.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments committed so far, over every run.
    pub fn next_seq(&self) -> u64 {
        self.state.next_seq
    }

    /// Starts a run: writes each track's init segment (`init-{run}.mp4`)
    /// and makes the run's first segment a discontinuity unless it is the
    /// channel's very first.
    pub fn start_run(&mut self, inits: &[(&str, &[u8])]) -> Result<()> {
        self.state.run += 1;
        self.state.ended = false;
        self.pending_discontinuity = self.state.next_seq > 0;
        for (track, bytes) in inits {
            let dir = self.dir.join(track);
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            write_atomic(&dir.join(self.init_name()), bytes)?;
            self.state.tracks.entry((*track).to_owned()).or_default();
        }
        self.save()
    }

    fn init_name(&self) -> String {
        format!("init-{}.mp4", self.state.run)
    }

    /// Publishes one segment of every track (same number, same start):
    /// files first, then playlists, then the state.
    ///
    /// The order makes a crash at any step safe: the segment files, then
    /// the state (the number is taken only once it is saved, so a crash
    /// before that reuses a number nobody was shown), then the recording's
    /// list, then the playlists (rewritten from the state at the next
    /// commit if a crash comes first).
    pub fn commit(&mut self, segments: &[(&str, &[u8], f64)], start: SystemTime) -> Result<u64> {
        let seq = self.state.next_seq;
        let now = SystemTime::now();
        let map = self.init_name();
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        for (track, bytes, _) in segments {
            write_atomic(&self.dir.join(track).join(format!("{seq}.m4s")), bytes)?;
        }
        let mut recorded = Vec::new();
        for (track, _, duration) in segments {
            let entry = Entry {
                seq,
                uri: format!("{seq}.m4s"),
                duration: *duration,
                pdt: rfc3339_millis(start),
                discontinuity,
                map: map.clone(),
            };
            if self.recording {
                recorded.push((self.dir.join(track).join(RECORDED), entry.clone()));
            }
            let w = self.state.tracks.entry((*track).to_owned()).or_default();
            w.entries.push(entry);
            let window_secs: f64 = w.entries.iter().map(|e| e.duration).sum();
            while w.entries.len() > WINDOW {
                let gone = w.entries.remove(0);
                w.media_sequence += 1;
                if gone.discontinuity {
                    w.discontinuity_sequence += 1;
                }
                // A recorded segment stays for the recording.
                if !self.recording {
                    w.retired
                        .push((gone.uri, unix(now) + gone.duration + window_secs));
                }
            }
        }
        self.state.next_seq = seq + 1;
        self.save()?;
        for (path, entry) in &recorded {
            append_line(path, entry)?;
        }
        self.write_playlists()?;
        self.sweep(now);
        Ok(seq)
    }

    /// Ends the channel: `EXT-X-ENDLIST` on every playlist.
    pub fn end(&mut self) -> Result<()> {
        self.state.ended = true;
        self.write_playlists()?;
        self.save()
    }

    fn write_playlists(&self) -> Result<()> {
        for (track, w) in &self.state.tracks {
            if w.entries.is_empty() {
                continue;
            }
            let path = self.dir.join(track).join(MEDIA);
            let text = render(w, self.state.ended).map_err(|reason| MediaError::Packaging {
                path: path.clone(),
                reason,
            })?;
            write_atomic(&path, text.as_bytes())?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| MediaError::Packaging {
            path: self.dir.join(STATE),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join(STATE), &bytes)
    }

    /// Deletes retired segments whose grace period is over.
    fn sweep(&mut self, now: SystemTime) {
        let now = unix(now);
        for (track, w) in &mut self.state.tracks {
            let dir = self.dir.join(track);
            w.retired.retain(|(uri, after)| {
                if *after > now {
                    return true;
                }
                let _ = std::fs::remove_file(dir.join(uri));
                false
            });
        }
    }
}

fn render(w: &TrackWindow, ended: bool) -> std::result::Result<String, String> {
    let mut last_map: Option<&str> = None;
    let segments: Vec<MediaSegment<'_>> = w
        .entries
        .iter()
        .map(|e| {
            let mut b = MediaSegment::builder();
            b.duration(Duration::from_micros((e.duration * 1e6).round() as u64))
                .uri(e.uri.as_str())
                .has_discontinuity(e.discontinuity)
                .program_date_time(ExtXProgramDateTime::new(e.pdt.as_str()));
            if last_map != Some(e.map.as_str()) {
                b.map(ExtXMap::new(e.map.as_str()));
                last_map = Some(e.map.as_str());
            }
            b.build().map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<_, _>>()?;
    let playlist = MediaPlaylist::builder()
        .target_duration(Duration::from_secs(TARGET_SECS))
        .media_sequence(w.media_sequence as usize)
        .discontinuity_sequence(w.discontinuity_sequence as usize)
        .has_independent_segments(true)
        .has_end_list(ended)
        .segments(segments)
        .build()?;
    Ok(tidy_extinf(&playlist.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(dir: &mut LiveDir, n: usize) {
        for _ in 0..n {
            dir.commit(&[("720p", b"x", 2.0)], SystemTime::now())
                .unwrap();
        }
    }

    fn playlist(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("720p").join(MEDIA)).unwrap()
    }

    #[test]
    fn the_window_slides_and_numbering_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = LiveDir::open(tmp.path()).unwrap();
        d.start_run(&[("720p", b"init")]).unwrap();
        seg(&mut d, 8);
        let p = playlist(tmp.path());
        assert!(p.contains("#EXT-X-TARGETDURATION:2"), "{p}");
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:2"), "{p}");
        assert_eq!(p.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), WINDOW);
        assert!(!p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
        assert!(!p.contains("ENDLIST"));
        // Slid out, but still on disk during its grace period.
        assert!(tmp.path().join("720p/0.m4s").exists());

        // A new process on the same directory: numbering continues after a
        // discontinuity with a new init segment.
        drop(d);
        let mut d = LiveDir::open(tmp.path()).unwrap();
        d.start_run(&[("720p", b"init2")]).unwrap();
        seg(&mut d, 1);
        let p = playlist(tmp.path());
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
        assert!(p.contains("init-2.mp4"), "{p}");
        assert!(p.trim_end().ends_with("8.m4s"), "{p}");
        // The discontinuity slides out: the discontinuity sequence counts it.
        seg(&mut d, WINDOW);
        let p = playlist(tmp.path());
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{p}");
        d.end().unwrap();
        assert!(playlist(tmp.path()).contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn a_recording_keeps_and_lists_every_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = LiveDir::open(tmp.path()).unwrap();
        d.set_recording(true);
        d.start_run(&[("720p", b"init")]).unwrap();
        seg(&mut d, WINDOW + 3);
        let p = playlist(tmp.path());
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{p}");
        for n in 0..WINDOW + 3 {
            assert!(tmp.path().join(format!("720p/{n}.m4s")).exists(), "{n}");
        }
        let listed: Vec<Entry> = std::fs::read_to_string(tmp.path().join("720p").join(RECORDED))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(listed.len(), WINDOW + 3);
        assert_eq!(listed[4].uri, "4.m4s");
        assert_eq!(listed[0].map, "init-1.mp4");
    }

    #[test]
    fn program_date_time_is_rfc3339_with_millis() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(rfc3339_millis(t), "2026-01-01T00:00:00.123Z");
    }
}
