//! The copyright check: an operator's library of reference tracks, each
//! with a rights policy (block | flag | allow), held in memory with its
//! own index (a library is thousands of tracks, not millions), and the
//! check of an upload's audio against it. A reference is fingerprinted by
//! `media::fingerprint_file`, the same decode → resample → Chromaprint
//! chain an upload's audio goes through.

use api::wire::*;
use api::{ApiError, ApiResult};
use bytes::Bytes;

use super::index::Index;
use super::matcher::{self, Match};
use super::{Sounds, Verdict, CANDIDATES};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339, AudioMatchRow, ReferenceRow};
use crate::store::new_id;

/// The reference tracks and their index: entry `n` is `tracks[n]`.
#[derive(Default)]
pub struct Library {
    index: Index,
    tracks: Vec<(ReferenceRow, Vec<u32>)>,
}

impl Library {
    pub fn from_rows(rows: Vec<(ReferenceRow, Vec<u8>)>) -> Self {
        let mut lib = Self::default();
        for (row, bytes) in rows {
            lib.add(row, media::AudioFingerprint::items_from_bytes(&bytes));
        }
        lib
    }

    fn add(&mut self, row: ReferenceRow, items: Vec<u32>) {
        self.index.insert(&items);
        self.tracks.push((row, items));
    }

    /// How many tracks the library holds.
    pub fn count(&self) -> usize {
        self.tracks.len()
    }

    /// Every reference `items` match, best first.
    pub fn matches(&self, items: &[u32]) -> Vec<(ReferenceRow, Match)> {
        let mut found: Vec<(ReferenceRow, Match)> = self
            .index
            .candidates(items, CANDIDATES)
            .into_iter()
            .filter_map(|c| {
                let (row, ref_items) = self.tracks.get(c.entry as usize)?;
                Some((row.clone(), matcher::verify(items, ref_items)?))
            })
            .collect();
        found.sort_by(|a, b| b.1.confidence.total_cmp(&a.1.confidence));
        found
    }
}

/// What a creator is told when a `block` reference stops their upload.
pub fn block_reason(title: &str, m: &Match) -> String {
    format!(
        "COPYRIGHT_BLOCKED: the audio from {:.1} s into this video matches the protected track \"{title}\" (from {:.1} s of the track, for {:.1} s, confidence {:.2}); the video will not be published",
        m.query_secs, m.other_secs, m.duration_secs, m.confidence
    )
}

impl Sounds {
    /// Checks `items` against the reference library: matches of `block`
    /// and `flag` references are recorded; the first `block` one refuses
    /// the video.
    pub(super) async fn check_copyright(&self, video_id: &str, items: &[u32]) -> Result<Verdict> {
        let found = self.references.read().matches(items);
        let mut verdict = Verdict::Clear;
        for (r, m) in found {
            let policy = RightsPolicy::parse(&r.policy).unwrap_or(RightsPolicy::Flag);
            tracing::info!(video = %video_id, reference = %r.id, title = %r.title, policy = policy.as_str(), at_secs = m.query_secs, confidence = m.confidence, "audio matches a reference track");
            match policy {
                RightsPolicy::Allow => continue,
                RightsPolicy::Block => {
                    if verdict == Verdict::Clear {
                        verdict = Verdict::Blocked(block_reason(&r.title, &m));
                    }
                }
                RightsPolicy::Flag => {}
            }
            let row = AudioMatchRow {
                video_id: video_id.to_owned(),
                reference_id: r.id.clone(),
                reference_title: r.title.clone(),
                policy: policy.as_str().to_owned(),
                offset_ms: (m.query_secs * 1000.0).round() as i64,
                reference_offset_ms: (m.other_secs * 1000.0).round() as i64,
                duration_ms: (m.duration_secs * 1000.0).round() as i64,
                confidence: m.confidence,
                created_at: now_ms(),
            };
            self.catalog
                .call(move |c| cat::record_match(c, &row))
                .await?;
        }
        Ok(verdict)
    }

    fn reference_wire(r: ReferenceRow) -> ReferenceAudio {
        ReferenceAudio {
            policy: RightsPolicy::parse(&r.policy).unwrap_or(RightsPolicy::Flag),
            id: r.id,
            title: r.title,
            duration_secs: r.duration_ms as f64 / 1000.0,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// After (created_at, video, reference): the flags list's cursor.
fn flags_cursor(m: &AudioMatchRow) -> String {
    hex::encode(format!(
        "{}:{}:{}",
        m.created_at, m.video_id, m.reference_id
    ))
}

fn parse_flags_cursor(cursor: &str) -> ApiResult<(i64, String, String)> {
    let text = hex::decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(api::cursor::bad)?;
    let mut parts = text.splitn(3, ':');
    let (Some(at), Some(v), Some(r)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(api::cursor::bad());
    };
    let at = at.parse().map_err(|_| api::cursor::bad())?;
    if v.is_empty() || r.is_empty() {
        return Err(api::cursor::bad());
    }
    Ok((at, v.to_owned(), r.to_owned()))
}

impl api::service::Copyright for Sounds {
    async fn add_reference(
        &self,
        caller: &Principal,
        meta: ReferenceAudioMeta,
        file: Bytes,
    ) -> ApiResult<ReferenceAudio> {
        let title = meta.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ApiError::invalid("title", "title must be 1–200 characters"));
        }
        self.wait_loaded().await;
        // FFmpeg reads files: the upload goes to a temporary one.
        let printed = tokio::task::spawn_blocking(move || -> Result<_> {
            let tmp = tempfile::NamedTempFile::new()
                .map_err(Error::io("creating a temporary file", "reference audio"))?;
            std::fs::write(tmp.path(), &file)
                .map_err(Error::io("writing", tmp.path().display()))?;
            Ok(media::fingerprint_file(tmp.path()))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let fp = match printed {
            Ok(Some(fp)) if matcher::distinctive(&fp.items) => fp,
            Ok(Some(_)) => {
                return Err(ApiError::invalid(
                    "file",
                    "its audio is too uniform (silence or a steady tone) to be recognised",
                ))
            }
            Ok(None) => return Err(ApiError::invalid("file", "the file has no decodable audio")),
            Err(e) => {
                return Err(ApiError::invalid(
                    "file",
                    format!("not an audio or video file FFmpeg can read ({})", short(&e)),
                ))
            }
        };
        let row = ReferenceRow {
            id: new_id(),
            title,
            policy: meta.policy.as_str().to_owned(),
            duration_ms: fp.duration_ms as i64,
            created_by: Some(caller.user_id.clone()),
            created_at: now_ms(),
        };
        let (r, bytes) = (row.clone(), fp.to_bytes());
        self.catalog
            .call(move |c| cat::insert_reference(c, &r, &bytes))
            .await?;
        self.references.write().add(row.clone(), fp.items);
        tracing::info!(reference = %row.id, title = %row.title, policy = %row.policy, "reference audio added");
        Ok(Self::reference_wire(row))
    }

    async fn references(&self, page: PageQuery) -> ApiResult<Page<ReferenceAudio>> {
        let (limit, after) = page.by_created()?;
        let rows = self
            .catalog
            .read(move |c| cat::references_page(c, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |r| api::cursor::created(r.created_at, &r.id),
            Self::reference_wire,
        ))
    }

    async fn delete_reference(&self, id: &str) -> ApiResult<()> {
        self.wait_loaded().await;
        let key = id.to_owned();
        if !self
            .catalog
            .call(move |c| cat::delete_reference(c, &key))
            .await?
        {
            return Err(ApiError::not_found("reference audio"));
        }
        // The library is small: rebuilt without it.
        let rows = self.catalog.read(cat::all_references).await?;
        *self.references.write() = Library::from_rows(rows);
        Ok(())
    }

    async fn flags(&self, page: PageQuery) -> ApiResult<Page<AudioFlag>> {
        use api::wire::Params;
        page.check()?;
        let limit = page.limit.unwrap_or(20);
        let after = page.cursor.as_deref().map(parse_flags_cursor).transpose()?;
        let rows = self
            .catalog
            .read(move |c| cat::matches_page(c, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(rows, limit, flags_cursor, |m| {
            AudioFlag {
                video_id: m.video_id,
                reference_id: m.reference_id,
                reference_title: m.reference_title,
                policy: RightsPolicy::parse(&m.policy).unwrap_or(RightsPolicy::Flag),
                offset_secs: m.offset_ms as f64 / 1000.0,
                reference_offset_secs: m.reference_offset_ms as f64 / 1000.0,
                duration_secs: m.duration_ms as f64 / 1000.0,
                confidence: m.confidence,
                created_at: rfc3339(m.created_at),
            }
        }))
    }
}

/// An FFmpeg refusal without the temporary file's path.
fn short(e: &media::MediaError) -> String {
    if let media::MediaError::Rejected { reason, .. } = e {
        reason.clone()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_cursors_round_trip_and_garbage_is_refused() {
        let m = AudioMatchRow {
            video_id: "v1".into(),
            reference_id: "r1".into(),
            reference_title: String::new(),
            policy: "flag".into(),
            offset_ms: 0,
            reference_offset_ms: 0,
            duration_ms: 0,
            confidence: 1.0,
            created_at: 42,
        };
        assert_eq!(
            parse_flags_cursor(&flags_cursor(&m)).unwrap(),
            (42, "v1".into(), "r1".into())
        );
        for bad in ["zz", "", &hex::encode("1:v"), &hex::encode("x:v:r")] {
            assert!(parse_flags_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_block_reason_names_the_track_where_and_how_sure() {
        let m = Match {
            query_secs: 2.04,
            other_secs: 0.0,
            duration_secs: 17.5,
            confidence: 0.83,
        };
        let r = block_reason("Harbour Lights", &m);
        assert!(r.contains("\"Harbour Lights\""), "{r}");
        assert!(r.contains("2.0 s into this video"), "{r}");
        assert!(r.contains("confidence 0.83"), "{r}");
    }
}
