//! Live media playlists (RFC 8216 §4.3) as a client sees them on one
//! reload: a strict parser (a half-written playlist is an error), and
//! EXT-X-PROGRAM-DATE-TIME parsed to ms since the Unix epoch.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One segment of a live media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSegment {
    /// Media sequence number (EXT-X-MEDIA-SEQUENCE + index).
    pub seq: u64,
    pub uri: String,
    pub duration: f64,
    /// EXT-X-PROGRAM-DATE-TIME as written, and in ms since the epoch.
    pub pdt: Option<String>,
    pub pdt_ms: Option<i64>,
    /// An EXT-X-DISCONTINUITY precedes it.
    pub discontinuity: bool,
    /// The EXT-X-MAP URI in force for it, and whether the tag is in its own
    /// tag block (right before it).
    pub map: Option<String>,
    pub map_here: bool,
}

/// A media playlist as a live client sees it on one reload.
#[derive(Clone, Debug)]
pub struct LivePlaylist {
    pub target_duration: Option<u64>,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<LiveSegment>,
    pub endlist: bool,
}

impl LivePlaylist {
    /// Parses `text`; an error says what is wrong (a playlist read half
    /// written is one: live playlists must be replaced atomically).
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with("#EXTM3U") {
            return Err("does not start with #EXTM3U".into());
        }
        if !text.ends_with('\n') {
            return Err("does not end with a newline (written in place, not renamed?)".into());
        }
        let mut p = LivePlaylist {
            target_duration: None,
            media_sequence: 0,
            discontinuity_sequence: 0,
            segments: Vec::new(),
            endlist: false,
        };
        let mut map: Option<String> = None;
        let mut duration = None;
        let mut pdt = None;
        let mut disc = false;
        let mut map_here = false;
        let mut seen_segment = false;
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            if p.endlist {
                return Err(format!("{line:?} after #EXT-X-ENDLIST"));
            }
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = Some(
                    v.parse()
                        .map_err(|_| format!("bad target duration {v:?}"))?,
                );
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                if seen_segment {
                    return Err("EXT-X-MEDIA-SEQUENCE after the first segment".into());
                }
                p.media_sequence = v.parse().map_err(|_| format!("bad media sequence {v:?}"))?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                if seen_segment {
                    return Err("EXT-X-DISCONTINUITY-SEQUENCE after the first segment".into());
                }
                p.discontinuity_sequence = v
                    .parse()
                    .map_err(|_| format!("bad discontinuity sequence {v:?}"))?;
            } else if line == "#EXT-X-DISCONTINUITY" {
                disc = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                let uri = crate::attr(v, "URI").ok_or(format!("EXT-X-MAP without URI: {v}"))?;
                map = Some(uri.to_owned());
                map_here = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v.split(',').next().unwrap_or("");
                duration = Some(d.parse::<f64>().map_err(|_| format!("bad EXTINF {v:?}"))?);
            } else if line == "#EXT-X-ENDLIST" {
                p.endlist = true;
            } else if !line.starts_with('#') {
                let d = duration.take().ok_or(format!("{line:?} without #EXTINF"))?;
                if !line.ends_with(".m4s") {
                    return Err(format!(
                        "segment URI {line:?} does not end in .m4s (truncated?)"
                    ));
                }
                let seq = p.media_sequence + p.segments.len() as u64;
                let pdt_ms = pdt.as_deref().and_then(parse_pdt);
                p.segments.push(LiveSegment {
                    seq,
                    uri: line.to_owned(),
                    duration: d,
                    pdt: pdt.take(),
                    pdt_ms,
                    discontinuity: std::mem::take(&mut disc),
                    map: map.clone(),
                    map_here: std::mem::take(&mut map_here),
                });
                seen_segment = true;
            }
        }
        if duration.is_some() {
            return Err("#EXTINF without a segment URI at the end (truncated?)".into());
        }
        Ok(p)
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}:\n{text}", path.display()))
    }

    /// Reads `path`, panicking with the reason if it is not a valid playlist.
    pub fn load(path: &Path) -> Self {
        Self::read(path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Discontinuities since the stream began: the ones that slid out
    /// (the discontinuity sequence) plus the visible tags.
    pub fn discontinuities_total(&self) -> u64 {
        self.discontinuity_sequence
            + self.segments.iter().filter(|s| s.discontinuity).count() as u64
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.segments.last().map(|s| s.seq)
    }

    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM|±HHMM)` → ms since the Unix epoch.
pub fn parse_pdt(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let mi: i64 = digits[2..].parse().ok()?;
        (t, sign * (h * 60 + mi))
    };
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let secs: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + hh * 3600 + mm * 60 - offset_min * 60) as f64 + secs) * 1000.0;
    Some(ms.round() as i64)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_date_times_parse() {
        assert_eq!(parse_pdt("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_pdt("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(
            parse_pdt("2000-03-01T00:00:00.000+00:00"),
            Some(951_868_800_000)
        );
        assert_eq!(
            parse_pdt("2026-11-30T07:10:00.250+01:00"),
            parse_pdt("2026-11-30T06:10:00.250Z")
        );
        assert_eq!(
            parse_pdt("2026-11-30T06:10:00.250-0130"),
            parse_pdt("2026-11-30T07:40:00.250Z")
        );
        assert_eq!(parse_pdt("yesterday"), None);
    }

    #[test]
    fn live_playlists_parse() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
            #EXT-X-MAP:URI=\"init-1.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:00.000Z\n#EXTINF:2.000,\n10.m4s\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-30T06:10:07.000Z\n#EXTINF:2.000,\n11.m4s\n\
            #EXT-X-ENDLIST\n";
        let p = LivePlaylist::parse(text).unwrap();
        assert_eq!(p.target_duration, Some(2));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].seq, 11);
        assert!(p.segments[1].discontinuity && p.segments[1].map_here);
        assert_eq!(p.segments[1].map.as_deref(), Some("init-2.mp4"));
        assert_eq!(p.discontinuities_total(), 2);
        assert!(p.endlist);
        assert!(LivePlaylist::parse(&text[..text.len() - 20]).is_err());
        assert!(LivePlaylist::parse("#EXTM3U\n#EXTINF:2.0,\n1.m").is_err());
    }
}
