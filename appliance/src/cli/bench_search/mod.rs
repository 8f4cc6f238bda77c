//! `appliance bench search`: search over users, sounds and hashtags at 1M
//! of each, the box's tantivy index (`crate::search`) against the
//! strongest simple alternative on the same data and the same queries,
//! side by side in one run: SQLite (the catalog's own engine) with a
//! B-tree prefix range on the lowercased name ordered by popularity for
//! users and hashtags, and FTS5 with prefix indexes, ranked by bm25 × use,
//! for sound titles. Queries alternate engines, one at a time, on one
//! thread; each asks for a first page of 20 (+1 to know whether more
//! follow) with the hits' fields read.
//!
//! The data is generated, deterministically (`--seed`): usernames from
//! first names, surnames and words with separators and digits; sound
//! titles as on short-video apps ("original sound - <user>", "Artist -
//! Song", "(sped up)" edits, loose phrases) from a vocabulary drawn
//! Zipf-like; hashtags from words, pairs, digits and suffixes; followers,
//! uses and videos heavy-tailed (Pareto), and the top 100 hashtags
//! trending. The query mix per kind: prefixes of 1, 2, 3 and 4–6
//! characters of a random entity's name (of a random title word for
//! sounds), whole names (two title words and the start of a third for
//! sounds), and misses.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::search::{words, Doc, Indexes, Kind};
use vocabulary::{FIRST, LAST, WORDS};

mod vocabulary;

pub struct Options {
    pub entities: usize,
    pub queries: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Indexing threads and memory for the build.
    pub threads: usize,
    pub heap_mb: usize,
}

#[derive(Serialize)]
pub struct Build {
    pub kind: &'static str,
    pub tantivy_build_s: f64,
    pub tantivy_docs: u64,
    pub tantivy_bytes: u64,
    pub sqlite_build_s: f64,
    pub sqlite_bytes: u64,
}

#[derive(Serialize, Clone)]
pub struct Row {
    pub kind: &'static str,
    pub query_type: &'static str,
    pub engine: &'static str,
    pub queries: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Hits per query, on average (both engines should agree closely).
    pub mean_hits: f64,
}

#[derive(Serialize)]
pub struct Summary {
    pub kind: &'static str,
    /// Over the whole query mix of the kind.
    pub tantivy_p99_ms: f64,
    pub sqlite_p99_ms: f64,
    /// SQLite p99 ÷ tantivy p99: how many times faster the box's index is.
    pub speedup_p99: f64,
    pub tantivy_max_ms: f64,
    pub sqlite_max_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub workload: String,
    pub anchor: String,
    pub entities_per_kind: usize,
    pub queries_per_type: usize,
    /// "Answering in milliseconds": the p99 each query type should stay
    /// under.
    pub goal_p99_ms_search: f64,
    /// Background merges after the last commit, all kinds.
    pub tantivy_merge_s: f64,
    pub build: Vec<Build>,
    pub summary: Vec<Summary>,
    pub rows: Vec<Row>,
}

const QUERY_TYPES: [&str; 6] = [
    "prefix-1",
    "prefix-2",
    "prefix-3",
    "prefix-4-6",
    "whole",
    "miss",
];
const PAGE: usize = 21;

pub fn run(o: &Options) -> Result<Report> {
    let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
    let mut rng = StdRng::seed_from_u64(o.seed);
    eprintln!(
        "search: generating {} users, sounds and hashtags",
        o.entities
    );
    let data = Data::generate(&mut rng, o.entities);

    let index_dir = scratch.path().join("index");
    let mut build = Vec::new();
    let indexes = Indexes::open(&index_dir, o.threads, o.heap_mb << 20)?;
    let mut tantivy_s = Vec::new();
    for kind in Kind::ALL {
        let started = Instant::now();
        for chunk in data.docs(kind).chunks(50_000) {
            indexes.upsert(kind, chunk)?;
        }
        indexes.commit(kind)?;
        let s = started.elapsed().as_secs_f64();
        eprintln!("search: tantivy {} indexed in {s:.1} s", kind.name());
        tantivy_s.push(s);
    }
    let started = Instant::now();
    indexes.wait_merges()?;
    let merge_s = started.elapsed().as_secs_f64();
    let indexes = Indexes::open(&index_dir, 1, 15 << 20)?;

    let mut anchors = Vec::new();
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let path = scratch.path().join(format!("{}.db", kind.name()));
        let started = Instant::now();
        let conn = sqlite_build(&path, kind, &data)?;
        let s = started.elapsed().as_secs_f64();
        eprintln!("search: sqlite {} built in {s:.1} s", kind.name());
        build.push(Build {
            kind: kind.name(),
            tantivy_build_s: tantivy_s[i],
            tantivy_docs: indexes.num_docs(kind),
            tantivy_bytes: indexes.disk_bytes(kind),
            sqlite_build_s: s,
            sqlite_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        });
        anchors.push(conn);
    }

    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (kind, conn) in Kind::ALL.into_iter().zip(&anchors) {
        let mut all = [Vec::new(), Vec::new()];
        for qt in QUERY_TYPES {
            let queries: Vec<String> = (0..o.queries)
                .map(|_| data.query(&mut rng, kind, qt))
                .collect();
            // Warm both (page cache, statement cache) on a few first.
            for q in queries.iter().take(20) {
                indexes.search(kind, q, PAGE, None)?;
                sqlite_query(conn, kind, q)?;
            }
            let mut ms = [Vec::new(), Vec::new()];
            let mut hits = [0usize, 0usize];
            for (n, q) in queries.iter().enumerate() {
                // Alternate who goes first.
                for side in if n % 2 == 0 { [0, 1] } else { [1, 0] } {
                    let started = Instant::now();
                    let found = if side == 0 {
                        indexes.search(kind, q, PAGE, None)?.len()
                    } else {
                        sqlite_query(conn, kind, q)?
                    };
                    ms[side].push(started.elapsed().as_secs_f64() * 1e3);
                    hits[side] += found;
                }
            }
            for (side, engine) in ["tantivy", "sqlite"].into_iter().enumerate() {
                let row = stats(kind, qt, engine, &mut ms[side], hits[side]);
                eprintln!(
                    "search: {} {qt} {engine}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {:.1} hits",
                    kind.name(),
                    row.p50_ms,
                    row.p99_ms,
                    row.max_ms,
                    row.mean_hits
                );
                rows.push(row);
                all[side].extend_from_slice(&ms[side]);
            }
        }
        for v in &mut all {
            v.sort_by(f64::total_cmp);
        }
        let (t, s) = (
            benches::percentile(&all[0], 0.99),
            benches::percentile(&all[1], 0.99),
        );
        summary.push(Summary {
            kind: kind.name(),
            tantivy_p99_ms: t,
            sqlite_p99_ms: s,
            speedup_p99: s / t.max(1e-9),
            tantivy_max_ms: all[0].last().copied().unwrap_or(0.0),
            sqlite_max_ms: all[1].last().copied().unwrap_or(0.0),
        });
    }
    let version: String = anchors[0]
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .map_err(Error::catalog("reading the SQLite version"))?;
    Ok(Report {
        machine: benches::Machine::current(),
        workload: format!(
            "{} users, {} sounds, {} hashtags (generated, seed {}); {} queries per kind and type, \
             first page of 20 (+1), one at a time, engines alternating",
            o.entities, o.entities, o.entities, o.seed, o.queries
        ),
        anchor: format!(
            "SQLite {version}: users and hashtags by an indexed prefix range on the lowercased \
             name ordered by followers / trending then videos; sounds by FTS5 (prefix indexes \
             1–4) ordered by bm25 × ln(e + uses)"
        ),
        entities_per_kind: o.entities,
        queries_per_type: o.queries,
        goal_p99_ms_search: 10.0,
        tantivy_merge_s: merge_s,
        build,
        summary,
        rows,
    })
}

fn stats(kind: Kind, qt: &'static str, engine: &'static str, ms: &mut [f64], hits: usize) -> Row {
    ms.sort_by(f64::total_cmp);
    Row {
        kind: kind.name(),
        query_type: qt,
        engine,
        queries: ms.len(),
        p50_ms: benches::percentile(ms, 0.5),
        p95_ms: benches::percentile(ms, 0.95),
        p99_ms: benches::percentile(ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
        mean_hits: hits as f64 / ms.len().max(1) as f64,
    }
}

/// The anchor's tables, built the way a team would: one insert
/// transaction, then the indexes.
fn sqlite_build(path: &std::path::Path, kind: Kind, data: &Data) -> Result<Connection> {
    let err = Error::catalog;
    let mut c = Connection::open(path).map_err(err("opening the anchor"))?;
    c.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(err("configuring the anchor"))?;
    let tx = c.transaction().map_err(err("building the anchor"))?;
    match kind {
        Kind::Users => {
            tx.execute_batch(
                "CREATE TABLE users (seq INTEGER PRIMARY KEY, id TEXT, name TEXT,
                    name_lower TEXT, followers INTEGER)",
            )
            .map_err(err("building the anchor"))?;
            let mut st = tx
                .prepare("INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(err("building the anchor"))?;
            for d in &data.users {
                st.execute(params![
                    d.seq as i64,
                    d.id,
                    d.name,
                    d.name.to_lowercase(),
                    d.pop as i64
                ])
                .map_err(err("building the anchor"))?;
            }
            drop(st);
            tx.execute_batch("CREATE INDEX users_name ON users(name_lower, followers);")
                .map_err(err("building the anchor"))?;
        }
        Kind::Sounds => {
            tx.execute_batch(
                "CREATE TABLE sounds (seq INTEGER PRIMARY KEY, id TEXT, title TEXT, uses INTEGER,
                    lnpop REAL, duration_ms INTEGER, owner_id TEXT);
                 CREATE VIRTUAL TABLE sounds_fts USING fts5(title, content='sounds',
                    content_rowid='seq', prefix='1 2 3 4');",
            )
            .map_err(err("building the anchor"))?;
            let mut st = tx
                .prepare("INSERT INTO sounds VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(err("building the anchor"))?;
            for d in &data.sounds {
                st.execute(params![
                    d.seq as i64,
                    d.id,
                    d.name,
                    d.pop as i64,
                    (std::f64::consts::E + d.pop as f64).ln(),
                    d.duration_ms as i64,
                    d.owner_id
                ])
                .map_err(err("building the anchor"))?;
            }
            drop(st);
            tx.execute_batch("INSERT INTO sounds_fts(sounds_fts) VALUES ('rebuild');")
                .map_err(err("building the anchor"))?;
        }
        Kind::Hashtags => {
            tx.execute_batch(
                "CREATE TABLE tags (seq INTEGER PRIMARY KEY, tag TEXT, videos INTEGER, trend REAL)",
            )
            .map_err(err("building the anchor"))?;
            let mut st = tx
                .prepare("INSERT INTO tags VALUES (?1, ?2, ?3, ?4)")
                .map_err(err("building the anchor"))?;
            for (n, d) in data.tags.iter().enumerate() {
                st.execute(params![n as i64, d.name, d.pop as i64, d.trend])
                    .map_err(err("building the anchor"))?;
            }
            drop(st);
            tx.execute_batch("CREATE UNIQUE INDEX tags_tag ON tags(tag);")
                .map_err(err("building the anchor"))?;
        }
    }
    tx.commit().map_err(err("building the anchor"))?;
    c.execute_batch("ANALYZE;")
        .map_err(err("analysing the anchor"))?;
    Ok(c)
}

/// Reads a page of the anchor's rows (the second column as text, as a
/// caller would): how many.
fn count_rows(st: &mut rusqlite::Statement<'_>, p: impl rusqlite::Params) -> Result<usize> {
    let err = || Error::catalog("querying the anchor");
    let mut rows = st.query(p).map_err(err())?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(err())? {
        let _: String = r.get(1).map_err(err())?;
        n += 1;
    }
    Ok(n)
}

/// The anchor's answer to `q` (first page, fields read): how many hits.
fn sqlite_query(c: &Connection, kind: Kind, q: &str) -> Result<usize> {
    let err = Error::catalog("querying the anchor");
    match kind {
        Kind::Users | Kind::Hashtags => {
            let p = q.trim().trim_start_matches('#').to_lowercase();
            let mut upper = p.clone();
            upper.push(char::MAX);
            let sql = if kind == Kind::Users {
                "SELECT id, name, followers FROM users WHERE name_lower >= ?1 AND name_lower < ?2
                 ORDER BY followers DESC, seq LIMIT ?3"
            } else {
                "SELECT seq, tag, videos, trend FROM tags WHERE tag >= ?1 AND tag < ?2
                 ORDER BY trend DESC, videos DESC, seq LIMIT ?3"
            };
            let mut st = c.prepare_cached(sql).map_err(err)?;
            count_rows(&mut st, params![p, upper, PAGE as i64])
        }
        Kind::Sounds => {
            let ws = words(q);
            let Some((last, rest)) = ws.split_last() else {
                return Ok(0);
            };
            let mut m: Vec<String> = rest.iter().map(|w| format!("\"{w}\"")).collect();
            m.push(format!("\"{last}\"*"));
            let mut st = c
                .prepare_cached(
                    "SELECT s.id, s.title, s.uses, s.duration_ms, s.owner_id
                     FROM sounds_fts JOIN sounds s ON s.seq = sounds_fts.rowid
                     WHERE sounds_fts MATCH ?1
                     ORDER BY (1.0 - bm25(sounds_fts)) * s.lnpop DESC, s.seq LIMIT ?2",
                )
                .map_err(err)?;
            count_rows(&mut st, params![m.join(" "), PAGE as i64])
        }
    }
}

/// The generated entities, as the index takes them.
struct Data {
    users: Vec<Doc>,
    sounds: Vec<Doc>,
    tags: Vec<Doc>,
}

impl Data {
    fn docs(&self, kind: Kind) -> &[Doc] {
        match kind {
            Kind::Users => &self.users,
            Kind::Sounds => &self.sounds,
            Kind::Hashtags => &self.tags,
        }
    }

    fn generate(rng: &mut StdRng, n: usize) -> Self {
        let mut seen = HashSet::with_capacity(n);
        let mut users = Vec::with_capacity(n);
        while users.len() < n {
            let mut name = username(rng);
            while !seen.insert(name.to_lowercase()) {
                name = format!("{name}{}", rng.random_range(0..10));
            }
            let seq = users.len() as u64 + 1;
            users.push(Doc {
                id: format!("u{seq:07}"),
                seq,
                pop: pareto(rng, 2.0, 0.8, 50_000_000),
                trend: 0.0,
                name,
                owner_id: None,
                owner_name: None,
                duration_ms: 0,
            });
        }
        let sounds = (0..n)
            .map(|i| {
                let owner = &users[rng.random_range(0..users.len())];
                let seq = i as u64 + 1;
                Doc {
                    id: format!("s{seq:07}"),
                    seq,
                    pop: pareto(rng, 1.0, 0.7, 5_000_000),
                    trend: 0.0,
                    name: sound_title(rng, &owner.name),
                    owner_id: Some(owner.id.clone()),
                    owner_name: Some(owner.name.clone()),
                    duration_ms: rng.random_range(5_000..180_000),
                }
            })
            .collect();
        let mut seen = HashSet::with_capacity(n);
        let mut tags = Vec::with_capacity(n);
        while tags.len() < n {
            let tag = hashtag(rng);
            if tag.chars().count() <= 64 && seen.insert(tag.clone()) {
                tags.push(Doc::hashtag(
                    &tag,
                    pareto(rng, 1.0, 0.7, 20_000_000) + 1,
                    0.0,
                ));
            }
        }
        // The 100 most used, give or take, trend (as `/hashtags/trending`
        // keeps 100).
        let mut order: Vec<usize> = (0..tags.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tags[i].pop));
        for &i in order.iter().take(100) {
            tags[i].trend = rng.random_range(1.0..1000.0);
        }
        Self {
            users,
            sounds,
            tags,
        }
    }

    /// A query of type `qt` for `kind`.
    fn query(&self, rng: &mut StdRng, kind: Kind, qt: &str) -> String {
        let docs = self.docs(kind);
        let d = &docs[rng.random_range(0..docs.len())];
        let source = match kind {
            Kind::Sounds if qt != "whole" => {
                let ws = words(&d.name);
                ws[rng
                    .random_range(0..ws.len().max(1))
                    .min(ws.len().saturating_sub(1))]
                .clone()
            }
            Kind::Users | Kind::Sounds | Kind::Hashtags => d.name.clone(),
        };
        let take = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        match qt {
            "prefix-1" => take(&source, 1),
            "prefix-2" => take(&source, 2),
            "prefix-3" => take(&source, 3),
            "prefix-4-6" => take(&source, rng.random_range(4..=6)),
            "whole" if kind == Kind::Sounds => {
                let ws = words(&d.name);
                match ws.len() {
                    0..=2 => ws.join(" "),
                    _ => format!("{} {} {}", ws[0], ws[1], take(&ws[2], 3)),
                }
            }
            "whole" => source,
            _ => format!(
                "{}{}",
                pick(rng, &["zq", "xj", "qv", "jx"]),
                rng.random_range(0..1000)
            ),
        }
    }
}

/// Heavy-tailed counts: `scale · ((1-u)^(-1/alpha) - 1)`, at most `cap`.
fn pareto(rng: &mut StdRng, scale: f64, alpha: f64, cap: u64) -> u64 {
    let u: f64 = rng.random();
    ((scale * ((1.0 - u).powf(-1.0 / alpha) - 1.0)).floor() as u64).min(cap)
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// A vocabulary word, common ones far more often (Zipf-like).
fn word(rng: &mut StdRng) -> &'static str {
    let u: f64 = rng.random();
    WORDS[((WORDS.len() as f64) * u.powf(2.5)) as usize % WORDS.len()]
}

fn capitalised(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn username(rng: &mut StdRng) -> String {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let w = word(rng);
    let n = rng.random_range(0..10_000);
    let name = match rng.random_range(0..8) {
        0 => format!("{first}{last}"),
        1 => format!("{first}_{last}"),
        2 => format!("{first}.{last}{}", n % 100),
        3 => format!("{first}{n}"),
        4 => format!("{w}{}", word(rng)),
        5 => format!("the{w}{}", n % 1000),
        6 => format!("{w}_{first}"),
        _ => format!("{}{}", capitalised(first), capitalised(last)),
    };
    name.chars().take(28).collect()
}

fn sound_title(rng: &mut StdRng, owner: &str) -> String {
    let phrase = |rng: &mut StdRng, k: usize| -> String {
        (0..k)
            .map(|_| capitalised(word(rng)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match rng.random_range(0..20) {
        0..=6 => format!("original sound - {owner}"),
        7..=11 => {
            let artist = if rng.random_bool(0.5) {
                format!(
                    "{} {}",
                    capitalised(pick(rng, FIRST)),
                    capitalised(pick(rng, LAST))
                )
            } else {
                phrase(rng, 2)
            };
            let k = rng.random_range(1..=4);
            format!("{artist} - {}", phrase(rng, k))
        }
        12..=14 => {
            let k = rng.random_range(1..=3);
            format!(
                "{} ({})",
                phrase(rng, k),
                pick(
                    rng,
                    &[
                        "sped up",
                        "slowed + reverb",
                        "remix",
                        "Instrumental",
                        "live"
                    ]
                )
            )
        }
        _ => {
            let k = rng.random_range(2..=5);
            phrase(rng, k)
        }
    }
}

fn hashtag(rng: &mut StdRng) -> String {
    let w = word(rng);
    match rng.random_range(0..10) {
        0 => w.to_owned(),
        1..=3 => format!("{w}{}", word(rng)),
        4 => format!("{w}{}{}", word(rng), word(rng)),
        5 => format!("{w}{}", rng.random_range(0..10_000)),
        6 => format!(
            "{w}{}",
            pick(
                rng,
                &["tok", "challenge", "life", "vibes", "lover", "daily"]
            )
        ),
        7 => format!("{}{w}", pick(rng, &["fyp", "my", "best", "real", "insta"])),
        8 => format!("{}{w}{}", pick(rng, FIRST), rng.random_range(0..100)),
        _ => format!("{w}_{}", word(rng)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_unique_where_it_must_be_and_deterministic() {
        let a = Data::generate(&mut StdRng::seed_from_u64(7), 3000);
        let b = Data::generate(&mut StdRng::seed_from_u64(7), 3000);
        assert_eq!(a.users, b.users);
        let names: HashSet<String> = a.users.iter().map(|u| u.name.to_lowercase()).collect();
        assert_eq!(names.len(), 3000);
        let tags: HashSet<&str> = a.tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tags.len(), 3000);
        assert_eq!(a.tags.iter().filter(|t| t.trend > 0.0).count(), 100);
        assert!(a.sounds.iter().all(|s| !words(&s.name).is_empty()));
    }

    /// Both engines find the same hits for the same queries (so the
    /// latencies compare like with like).
    #[test]
    fn the_anchor_and_the_index_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let data = Data::generate(&mut rng, 2000);
        let idx = Indexes::open(&dir.path().join("i"), 1, 15 << 20).unwrap();
        for kind in Kind::ALL {
            idx.upsert(kind, data.docs(kind)).unwrap();
            idx.commit(kind).unwrap();
            let c =
                sqlite_build(&dir.path().join(format!("{}.db", kind.name())), kind, &data).unwrap();
            for qt in QUERY_TYPES {
                for _ in 0..20 {
                    let q = data.query(&mut rng, kind, qt);
                    let ours = idx.search(kind, &q, PAGE, None).unwrap().len();
                    let theirs = sqlite_query(&c, kind, &q).unwrap();
                    assert_eq!(ours, theirs, "{} {qt} {q:?}", kind.name());
                }
            }
        }
    }
}
