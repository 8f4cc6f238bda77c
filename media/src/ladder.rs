//! Reading a finished ladder back: which video renditions the master
//! playlist lists (top and lowest), and each media playlist's init segment
//! and segments with their start times. The playlists are our own
//! packager's (`playlist`), so this reads only what it writes: `#EXT-X-MAP`,
//! `#EXTINF`, `#EXT-X-STREAM-INF` with `RESOLUTION` and `BANDWIDTH`,
//! `#EXT-X-MEDIA` for the audio rendition; URIs relative to the playlist.
//! Used by the thumbnails and the download (on a ladder directory) and by
//! the server's stills (on playlists read from the object store).

use std::path::{Path, PathBuf};

use crate::error::{MediaError, Result};

/// A video rendition of the master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist, relative to the master (`720p/index.m3u8`).
    pub uri: String,
    pub width: u32,
    pub height: u32,
    pub bandwidth: u64,
}

/// What the master playlist says about the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    /// Largest picture first (then highest bandwidth): the master's own
    /// order is not relied on, since renditions may be added as they finish.
    pub variants: Vec<Variant>,
    /// The audio rendition's media playlist, relative to the master.
    pub audio: Option<String>,
}

impl Master {
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut variants = Vec::new();
        let mut audio = None;
        let mut pending: Option<&str> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
                pending = Some(attrs);
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-MEDIA:") {
                if attribute(attrs, "TYPE") == Some("AUDIO") && audio.is_none() {
                    audio = attribute(attrs, "URI").map(str::to_owned);
                }
            } else if line.starts_with('#') {
                continue;
            } else if let Some(attrs) = pending.take() {
                let (width, height) = attribute(attrs, "RESOLUTION")
                    .and_then(|r| r.split_once('x'))
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    .ok_or_else(|| format!("{line}: no RESOLUTION"))?;
                let bandwidth = attribute(attrs, "BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0);
                variants.push(Variant {
                    uri: line.to_owned(),
                    width,
                    height,
                    bandwidth,
                });
            }
        }
        if variants.is_empty() {
            return Err("no video rendition (#EXT-X-STREAM-INF)".into());
        }
        variants.sort_by_key(|v| {
            std::cmp::Reverse((u64::from(v.width) * u64::from(v.height), v.bandwidth))
        });
        Ok(Self { variants, audio })
    }

    /// The best picture: the download, the poster and stills come from it.
    pub fn top(&self) -> &Variant {
        &self.variants[0]
    }

    /// The smallest picture: the storyboard is decoded from it (cheap).
    pub fn lowest(&self) -> &Variant {
        self.variants.last().expect("parse refuses an empty list")
    }
}

/// A value of an attribute list (`KEY=value,KEY="quoted, value"`).
fn attribute<'a>(attrs: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = attrs;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k.trim() == key {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// A media segment and where it sits on the playlist's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Relative to the media playlist (`3.m4s`).
    pub uri: String,
    pub start: f64,
    pub duration: f64,
}

/// A media playlist: its init segment and segments.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-MAP`, relative to the media playlist.
    pub init: String,
    pub segments: Vec<Segment>,
}

impl MediaPlaylist {
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut init = None;
        let mut segments: Vec<Segment> = Vec::new();
        let mut duration: Option<f64> = None;
        let mut start = 0.0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
                if init.is_some() {
                    return Err("more than one #EXT-X-MAP (not a VOD ladder of ours)".into());
                }
                init = Some(
                    attribute(attrs, "URI")
                        .ok_or("#EXT-X-MAP without URI")?
                        .to_owned(),
                );
            } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
                let d = rest.split(',').next().unwrap_or_default();
                duration = Some(
                    d.parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| format!("bad #EXTINF `{line}`"))?,
                );
            } else if line.starts_with('#') {
                continue;
            } else {
                let d = duration
                    .take()
                    .ok_or_else(|| format!("{line}: no #EXTINF"))?;
                segments.push(Segment {
                    uri: line.to_owned(),
                    start,
                    duration: d,
                });
                start += d;
            }
        }
        let init = init.ok_or("no #EXT-X-MAP")?;
        if segments.is_empty() {
            return Err("no segment".into());
        }
        Ok(Self { init, segments })
    }

    /// The sum of the segments' durations.
    pub fn duration(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.start + s.duration)
    }

    /// The segment showing time `t` (the last one for `t` at the very end).
    pub fn segment_at(&self, t: f64) -> Option<&Segment> {
        if !(0.0..=self.duration() + 1e-6).contains(&t) {
            return None;
        }
        let i = self.segments.partition_point(|s| s.start <= t);
        self.segments.get(i.saturating_sub(1))
    }
}

/// `uri` (relative to a playlist at `base`, itself relative to the
/// ladder's root) as a path relative to the root, or `None` for anything
/// that is not a plain relative path inside it.
pub fn resolve(base: &str, uri: &str) -> Option<String> {
    let ok = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !uri.split('/').all(ok) {
        return None;
    }
    match base.rsplit_once('/') {
        Some((dir, _)) if dir.split('/').all(ok) => Some(format!("{dir}/{uri}")),
        Some(_) => None,
        None => Some(uri.to_owned()),
    }
}

/// A finished ladder directory's playlists, read once.
pub(crate) struct Ladder {
    pub dir: PathBuf,
    pub master: Master,
}

/// A track of the ladder on disk: its init segment and segments as paths.
pub(crate) struct Track {
    pub init: PathBuf,
    pub playlist: MediaPlaylist,
    pub segments: Vec<PathBuf>,
}

impl Track {
    pub fn duration(&self) -> f64 {
        self.playlist.duration()
    }
}

impl Ladder {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("master.m3u8");
        let text = read(&path)?;
        let master = Master::parse(&text).map_err(|reason| MediaError::Packaging {
            path: path.clone(),
            reason,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            master,
        })
    }

    /// The track whose media playlist is `uri` (relative to the master).
    pub fn track(&self, uri: &str) -> Result<Track> {
        let bad = |reason: String| MediaError::Packaging {
            path: self.dir.join(uri),
            reason,
        };
        let rel =
            resolve("master.m3u8", uri).ok_or_else(|| bad("not a path in the ladder".into()))?;
        let path = self.dir.join(&rel);
        let playlist = MediaPlaylist::parse(&read(&path)?).map_err(bad)?;
        let file = |u: &str| {
            resolve(&rel, u)
                .map(|r| self.dir.join(r))
                .ok_or_else(|| bad(format!("`{u}` is not a path in the ladder")))
        };
        Ok(Track {
            init: file(&playlist.init)?,
            segments: playlist
                .segments
                .iter()
                .map(|s| file(&s.uri))
                .collect::<Result<_>>()?,
            playlist,
        })
    }

    pub fn top(&self) -> Result<Track> {
        self.track(&self.master.top().uri)
    }

    pub fn lowest(&self) -> Result<Track> {
        self.track(&self.master.lowest().uri)
    }

    pub fn audio(&self) -> Result<Option<Track>> {
        self.master
            .audio
            .as_deref()
            .map(|a| self.track(a))
            .transpose()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| MediaError::io("reading", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",GROUP-ID=\"audio\",NAME=\"default\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"
#EXT-X-STREAM-INF:BANDWIDTH=445820,AVERAGE-BANDWIDTH=431320,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"audio\"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3068014,AVERAGE-BANDWIDTH=3066545,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1186148,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=854x480,FRAME-RATE=30.000,AUDIO=\"audio\"
480p/index.m3u8
#EXT-X-INDEPENDENT-SEGMENTS
";

    const MEDIA: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:4
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4,
0.m4s
#EXTINF:4.000000,
1.m4s
#EXTINF:0.966667,
2.m4s
#EXT-X-ENDLIST
";

    #[test]
    fn the_master_gives_renditions_largest_first_whatever_their_order() {
        let m = Master::parse(MASTER).unwrap();
        let uris: Vec<_> = m.variants.iter().map(|v| v.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["720p/index.m3u8", "480p/index.m3u8", "360p/index.m3u8"]
        );
        assert_eq!((m.top().width, m.top().height), (1280, 720));
        assert_eq!(m.lowest().uri, "360p/index.m3u8");
        assert_eq!(m.audio.as_deref(), Some("audio/index.m3u8"));
        assert!(Master::parse("#EXTM3U\n").is_err());
        let no_audio =
            Master::parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\nv/index.m3u8\n")
                .unwrap();
        assert_eq!(no_audio.audio, None);
    }

    #[test]
    fn media_playlists_give_segment_times() {
        let p = MediaPlaylist::parse(MEDIA).unwrap();
        assert_eq!(p.init, "init.mp4");
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.segments[2].start, 8.0);
        assert!((p.duration() - 8.966667).abs() < 1e-9);
        assert_eq!(p.segment_at(0.0).unwrap().uri, "0.m4s");
        assert_eq!(p.segment_at(3.999).unwrap().uri, "0.m4s");
        assert_eq!(p.segment_at(4.0).unwrap().uri, "1.m4s");
        assert_eq!(p.segment_at(8.966667).unwrap().uri, "2.m4s");
        assert_eq!(p.segment_at(9.5), None);
        assert_eq!(p.segment_at(-0.1), None);
        assert!(MediaPlaylist::parse("#EXTM3U\n#EXTINF:4,\n0.m4s\n").is_err());
        assert!(MediaPlaylist::parse("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n0.m4s\n").is_err());
        assert!(MediaPlaylist::parse("#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:nan,\n0.m4s\n").is_err());
    }

    #[test]
    fn uris_resolve_only_inside_the_ladder() {
        assert_eq!(
            resolve("master.m3u8", "720p/index.m3u8").as_deref(),
            Some("720p/index.m3u8")
        );
        assert_eq!(
            resolve("720p/index.m3u8", "init.mp4").as_deref(),
            Some("720p/init.mp4")
        );
        assert_eq!(
            resolve("720p/index.m3u8", "12.m4s").as_deref(),
            Some("720p/12.m4s")
        );
        for bad in ["../x.m4s", "/etc/passwd", "a//b", "http://x/y", "./a", ""] {
            assert_eq!(resolve("720p/index.m3u8", bad), None, "{bad}");
        }
    }
}
