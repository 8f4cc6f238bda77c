//! The index itself: one tantivy index per kind (users, sounds, hashtags)
//! under `<data_dir>/index/search/<kind>`, with one schema, documents
//! keyed by `id`, and the lookups the API answers.
//!
//! A prefix lookup is one term: every prefix of a username or hashtag (and
//! of each word of a sound's title) up to a length is indexed as a term of
//! `prefix`, so "a" reads one postings list instead of walking every term
//! that starts with "a". Ranking reads fast fields (`pop`, `trend`, `seq`)
//! in the [`Ranked`] collector; the hits' text comes from the doc store.
//!
//! Every commit carries [`VERSION`] as its payload; an index without it
//! (another schema version, a crash before the first commit), one that
//! does not open, or a missing one is wiped and rebuilt from the catalog.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::rank::{prefixes, words, Key, Ranked};
use super::Kind;
use crate::error::{Error, Result};
use crate::store::catalog::{SoundDoc, UserDoc};

/// Bumped whenever the schema or what is indexed changes: an index of
/// another version is rebuilt.
pub const VERSION: &str = "search-v1";

pub const FIELD_POP: &str = "pop";
pub const FIELD_TREND: &str = "trend";
pub const FIELD_SEQ: &str = "seq";

/// Prefixes indexed per username (usernames are at most 32 characters, so
/// every prefix of every name).
const USER_PREFIX_MAX: usize = 32;
/// Per hashtag (at most 64 characters).
const TAG_PREFIX_MAX: usize = 64;
/// Per word of a sound's title; a longer last word is looked up as a range
/// of `words` terms (rare, and long prefixes match few terms).
const WORD_PREFIX_MAX: usize = 16;
/// Tantivy's default tokenizer drops longer tokens.
const WORD_MAX_BYTES: usize = 40;

/// The fields every kind's index has (a kind leaves the ones it has no use
/// for empty).
#[derive(Clone, Copy)]
pub struct Fields {
    /// The key: user id, sound id, or the tag itself.
    id: Field,
    /// Registration order (users), catalog order (sounds), a hash of the
    /// tag: the last tie-break.
    seq: Field,
    /// Followers, uses, videos.
    pop: Field,
    /// Trending score (hashtags).
    trend: Field,
    prefix: Field,
    /// A sound title's words, for relevance.
    words: Field,
    /// What is shown: the username, the title, the tag.
    name: Field,
    owner_id: Field,
    owner_name: Field,
    duration: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        seq: b.add_u64_field(FIELD_SEQ, FAST),
        pop: b.add_u64_field(FIELD_POP, FAST | STORED),
        trend: b.add_f64_field(FIELD_TREND, FAST | STORED),
        prefix: b.add_text_field("prefix", STRING),
        words: b.add_text_field("words", words),
        name: b.add_text_field("name", STORED),
        owner_id: b.add_text_field("owner_id", STORED),
        owner_name: b.add_text_field("owner_name", STORED),
        duration: b.add_u64_field("duration", STORED),
    };
    (b.build(), fields)
}

/// A document to index (its kind says which fields matter).
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: String,
    pub seq: u64,
    pub pop: u64,
    pub trend: f64,
    pub name: String,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub duration_ms: u64,
}

impl Doc {
    pub fn user(u: &UserDoc) -> Self {
        Self {
            id: u.id.clone(),
            seq: u.seq.max(0) as u64,
            pop: u.followers,
            trend: 0.0,
            name: u.username.clone(),
            owner_id: None,
            owner_name: None,
            duration_ms: 0,
        }
    }

    pub fn sound(s: &SoundDoc) -> Self {
        Self {
            id: s.id.clone(),
            seq: s.seq.max(0) as u64,
            pop: s.usage,
            trend: 0.0,
            name: s.title.clone(),
            owner_id: s.owner_id.clone(),
            owner_name: s.owner_username.clone(),
            duration_ms: s.duration_ms.max(0) as u64,
        }
    }

    pub fn hashtag(tag: &str, videos: u64, trend: f64) -> Self {
        Self {
            id: tag.to_owned(),
            seq: tag_seq(tag),
            pop: videos,
            trend,
            name: tag.to_owned(),
            owner_id: None,
            owner_name: None,
            duration_ms: 0,
        }
    }
}

/// A hashtag's tie-break: FNV-1a of the tag (stable across runs and
/// builds, unlike the standard hasher).
pub fn tag_seq(tag: &str) -> u64 {
    tag.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An indexed document as the reconciliation sees it: id, popularity,
/// trending score.
pub type Indexed = (String, u64, f64);

/// A hit as stored: what the API shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: String,
    pub name: String,
    pub pop: u64,
    pub trend: f64,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub duration_ms: u64,
}

/// One kind's index, its reader and its (only) writer.
pub struct Shard {
    kind: Kind,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    path: PathBuf,
}

/// The three indexes.
pub struct Indexes {
    f: Fields,
    users: Shard,
    sounds: Shard,
    hashtags: Shard,
    /// Which kinds were (re)built empty at open, and why.
    pub rebuilt: Vec<(Kind, String)>,
}

fn failed(op: &'static str) -> impl FnOnce(tantivy::TantivyError) -> Error {
    move |e| Error::Task(format!("search index ({op}): {e}"))
}

impl Indexes {
    /// Opens (or rebuilds) the three indexes under `dir`, each writer with
    /// `threads` indexing threads and `heap` bytes of indexing memory in
    /// all (tantivy's minimum is 15 MB per thread).
    pub fn open(dir: &Path, threads: usize, heap: usize) -> Result<Self> {
        let (schema, f) = schema();
        let mut rebuilt = Vec::new();
        let mut shard = |kind: Kind| -> Result<Shard> {
            let path = dir.join(kind.name());
            let (index, why) = match open_existing(&path, &schema) {
                Ok(index) => (index, None),
                Err(why) => {
                    if path.exists() {
                        std::fs::remove_dir_all(&path)
                            .map_err(Error::io("removing", path.display()))?;
                    }
                    std::fs::create_dir_all(&path)
                        .map_err(Error::io("creating", path.display()))?;
                    let index =
                        Index::create_in_dir(&path, schema.clone()).map_err(failed("creating"))?;
                    (index, Some(why))
                }
            };
            let writer = index
                .writer_with_num_threads(threads.max(1), heap.max(15_000_000 * threads.max(1)))
                .map_err(failed("opening its writer"))?;
            let reader = index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .map_err(failed("opening its reader"))?;
            let shard = Shard {
                kind,
                reader,
                writer: Mutex::new(writer),
                path,
            };
            if let Some(why) = why {
                // Marked as ours at once, so a crash before the first
                // documents does not look like another version.
                shard.commit()?;
                rebuilt.push((kind, why));
            }
            Ok(shard)
        };
        let users = shard(Kind::Users)?;
        let sounds = shard(Kind::Sounds)?;
        let hashtags = shard(Kind::Hashtags)?;
        Ok(Self {
            f,
            users,
            sounds,
            hashtags,
            rebuilt,
        })
    }

    pub fn shard(&self, kind: Kind) -> &Shard {
        match kind {
            Kind::Users => &self.users,
            Kind::Sounds => &self.sounds,
            Kind::Hashtags => &self.hashtags,
        }
    }

    /// Replaces (or adds) documents by id; seen after the next commit.
    pub fn upsert(&self, kind: Kind, docs: &[Doc]) -> Result<()> {
        let shard = self.shard(kind);
        let writer = shard.writer.lock();
        for d in docs {
            writer.delete_term(Term::from_field_text(self.f.id, &d.id));
            writer
                .add_document(self.document(kind, d))
                .map_err(failed("adding a document"))?;
        }
        Ok(())
    }

    /// Removes documents by id; gone after the next commit.
    pub fn delete(&self, kind: Kind, ids: &[String]) {
        let shard = self.shard(kind);
        let writer = shard.writer.lock();
        for id in ids {
            writer.delete_term(Term::from_field_text(self.f.id, id));
        }
    }

    fn document(&self, kind: Kind, d: &Doc) -> TantivyDocument {
        let f = &self.f;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_u64(f.seq, d.seq);
        doc.add_u64(f.pop, d.pop);
        doc.add_f64(f.trend, d.trend);
        doc.add_text(f.name, &d.name);
        let mut keys = Vec::new();
        match kind {
            Kind::Users => prefixes(&d.name.to_lowercase(), USER_PREFIX_MAX, &mut keys),
            Kind::Hashtags => prefixes(&d.name, TAG_PREFIX_MAX, &mut keys),
            Kind::Sounds => {
                doc.add_text(f.words, &d.name);
                for w in words(&d.name) {
                    prefixes(&w, WORD_PREFIX_MAX, &mut keys);
                }
                keys.sort_unstable();
                keys.dedup();
                if let Some(o) = &d.owner_id {
                    doc.add_text(f.owner_id, o);
                }
                if let Some(o) = &d.owner_name {
                    doc.add_text(f.owner_name, o);
                }
                doc.add_u64(f.duration, d.duration_ms);
            }
        }
        for k in keys {
            doc.add_text(f.prefix, k);
        }
        doc
    }

    /// The lookup a kind's query is: `None` when nothing can match (no
    /// words, a prefix longer than any indexed name).
    pub fn query(&self, kind: Kind, q: &str) -> Option<Box<dyn Query>> {
        let f = &self.f;
        let prefix = |p: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(f.prefix, p),
                IndexRecordOption::Basic,
            ))
        };
        match kind {
            Kind::Users => {
                let p = q.trim().to_lowercase();
                (!p.is_empty() && p.chars().count() <= USER_PREFIX_MAX).then(|| prefix(&p))
            }
            Kind::Hashtags => {
                let p = normalize_tag_prefix(q);
                (!p.is_empty() && p.chars().count() <= TAG_PREFIX_MAX).then(|| prefix(&p))
            }
            Kind::Sounds => {
                let mut ws = words(q);
                let last = ws.pop()?;
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for w in ws.iter().filter(|w| w.len() <= WORD_MAX_BYTES) {
                    clauses.push((
                        Occur::Must,
                        Box::new(TermQuery::new(
                            Term::from_field_text(f.words, w),
                            IndexRecordOption::WithFreqs,
                        )),
                    ));
                }
                // The word being typed: any word it begins (no score of its
                // own), and the whole word scores when it is one.
                let begins: Box<dyn Query> = if last.chars().count() <= WORD_PREFIX_MAX {
                    prefix(&last)
                } else {
                    let mut upper = last.clone();
                    upper.push(char::MAX);
                    Box::new(InvertedIndexRangeQuery::new(
                        Bound::Included(Term::from_field_text(f.words, &last)),
                        Bound::Excluded(Term::from_field_text(f.words, &upper)),
                    ))
                };
                clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(begins, 0.0))));
                if last.len() <= WORD_MAX_BYTES {
                    clauses.push((
                        Occur::Should,
                        Box::new(TermQuery::new(
                            Term::from_field_text(f.words, &last),
                            IndexRecordOption::WithFreqs,
                        )),
                    ));
                }
                Some(Box::new(BooleanQuery::new(clauses)))
            }
        }
    }

    /// The best `limit` hits of `q` ranked after `after`, with their keys.
    pub fn search(
        &self,
        kind: Kind,
        q: &str,
        limit: usize,
        after: Option<Key>,
    ) -> Result<Vec<(Key, Stored)>> {
        let query = self.query(kind, q).unwrap_or_else(|| Box::new(EmptyQuery));
        let shard = self.shard(kind);
        let searcher = shard.reader.searcher();
        let hits = searcher
            .search(query.as_ref(), &Ranked { kind, limit, after })
            .map_err(failed("searching"))?;
        let f = &self.f;
        let mut out = Vec::with_capacity(hits.len());
        for (key, addr) in hits {
            let doc: TantivyDocument = searcher.doc(addr).map_err(failed("reading a hit"))?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
            };
            let num = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            out.push((
                key,
                Stored {
                    id: text(f.id).unwrap_or_default(),
                    name: text(f.name).unwrap_or_default(),
                    pop: num(f.pop),
                    trend: doc
                        .get_first(f.trend)
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0),
                    owner_id: text(f.owner_id),
                    owner_name: text(f.owner_name),
                    duration_ms: num(f.duration),
                },
            ));
        }
        Ok(out)
    }

    /// Every indexed document's id, popularity and trending score: what
    /// the reconciliation compares with the catalog.
    pub fn contents(&self, kind: Kind) -> Result<Vec<Indexed>> {
        let searcher = self.shard(kind).reader.searcher();
        let f = &self.f;
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let fast = segment.fast_fields();
            let pop = fast
                .column_first_or_default::<u64>(FIELD_POP)
                .map_err(failed("reading popularity"))?;
            let trend = fast
                .column_first_or_default::<f64>(FIELD_TREND)
                .map_err(failed("reading trending"))?;
            let store = segment
                .get_store_reader(64)
                .map_err(|e| Error::Task(format!("search index (reading the doc store): {e}")))?;
            for doc in segment.doc_ids_alive() {
                let stored: TantivyDocument =
                    store.get(doc).map_err(failed("reading a document"))?;
                let id = stored
                    .get_first(f.id)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                out.push((id, pop.get_val(doc), trend.get_val(doc)));
            }
        }
        Ok(out)
    }

    /// The highest `seq` indexed (0 when empty): for users and sounds, the
    /// catalog rowid an incremental read resumes after.
    pub fn max_seq(&self, kind: Kind) -> Result<u64> {
        let searcher = self.shard(kind).reader.searcher();
        let mut max = 0;
        for segment in searcher.segment_readers() {
            if segment.max_doc() == 0 {
                continue;
            }
            let seq = segment
                .fast_fields()
                .column_first_or_default::<u64>(FIELD_SEQ)
                .map_err(failed("reading order"))?;
            max = max.max(seq.max_value());
        }
        Ok(max)
    }

    /// Makes what was written visible (and durable).
    pub fn commit(&self, kind: Kind) -> Result<()> {
        self.shard(kind).commit()
    }

    pub fn num_docs(&self, kind: Kind) -> u64 {
        self.shard(kind).reader.searcher().num_docs()
    }

    /// Bytes on disk of a kind's index.
    pub fn disk_bytes(&self, kind: Kind) -> u64 {
        dir_bytes(&self.shard(kind).path)
    }

    /// Waits for background merges (benchmarks, before measuring size).
    pub fn wait_merges(self) -> Result<()> {
        for shard in [self.users, self.sounds, self.hashtags] {
            shard
                .writer
                .into_inner()
                .wait_merging_threads()
                .map_err(failed("merging"))?;
        }
        Ok(())
    }
}

impl Shard {
    fn commit(&self) -> Result<()> {
        let mut writer = self.writer.lock();
        let mut prepared = writer.prepare_commit().map_err(failed("committing"))?;
        prepared.set_payload(VERSION);
        prepared.commit().map_err(failed("committing"))?;
        drop(writer);
        self.reader.reload().map_err(failed("reloading"))?;
        tracing::trace!(kind = self.kind.name(), "search index committed");
        Ok(())
    }
}

/// An index that is there, ours and of this version; why not otherwise.
fn open_existing(path: &Path, schema: &Schema) -> std::result::Result<Index, String> {
    if !path.join("meta.json").exists() {
        return Err("missing".into());
    }
    let index = Index::open_in_dir(path).map_err(|e| format!("does not open: {e}"))?;
    if index.schema() != *schema {
        return Err("another schema".into());
    }
    let metas = index
        .load_metas()
        .map_err(|e| format!("unreadable metadata: {e}"))?;
    if metas.payload.as_deref() != Some(VERSION) {
        return Err(format!(
            "version {:?}, this binary's is {VERSION:?}",
            metas.payload
        ));
    }
    // Opens every segment: a truncated or missing file shows here.
    let reader = index
        .reader()
        .map_err(|e| format!("segments do not open: {e}"))?;
    for segment in reader.searcher().segment_readers() {
        segment
            .get_store_reader(0)
            .map_err(|e| format!("doc store does not open: {e}"))?;
    }
    Ok(index)
}

/// A hashtag query as the tags are stored: trimmed, without `#`,
/// lowercase.
pub fn normalize_tag_prefix(q: &str) -> String {
    q.trim().trim_start_matches('#').to_lowercase()
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
