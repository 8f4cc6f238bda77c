//! `appliance bench fingerprints`: the sounds index (`sounds::index` +
//! `sounds::matcher`) at a million fingerprints, against the anchor of a
//! brute-force `match_fingerprints` scan.
//!
//! Real audio: `songs` synthetic songs made with the ffmpeg CLI (chords
//! changing every quarter second, notes picked by a seed; 30 s each),
//! fingerprinted by `media::fingerprint_file` as reference tracks are, and
//! four degraded copies of each, also made by ffmpeg: re-encoded (MP3 at
//! 64 kb/s), quieter (−3 dB), shifted (2 s of silence first), and all
//! three at once. The index holds the originals plus distractors up to
//! `sounds` entries: each distractor is a 30–60 s stretch of a real song's
//! items, cut at a random item and XOR-ed with a random mask (real
//! fingerprints' temporal structure, keys no song has), made again from
//! its number whenever verification needs it (the catalog's read, in the
//! server), so the bench never holds a million full fingerprints.
//!
//! A lookup is what a vet does: index candidates, then `matcher::verify`
//! of each; recall@1 is the share of degraded queries whose best verified
//! match is their song. The anchor scans `match_fingerprints` over a
//! sample of entries; its time per entry × `sounds` is the scan's cost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sounds::index::Index;
use crate::sounds::matcher;

pub struct Options {
    pub sounds: usize,
    pub songs: usize,
    pub scan_sample: usize,
    pub out: PathBuf,
    pub cache: PathBuf,
}

#[derive(Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub queries: usize,
    pub recall_at_1: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub sounds: usize,
    pub songs: usize,
    pub index_build_secs: f64,
    pub index_mb: f64,
    pub index_bytes_per_sound: f64,
    /// The items those sounds' fingerprints hold (what a flat copy of them
    /// in memory would take).
    pub raw_fingerprints_mb: f64,
    pub process_rss_mb: f64,
    pub variants: Vec<Variant>,
    pub lookup_p50_ms: f64,
    pub lookup_p99_ms: f64,
    pub scan_sample: usize,
    pub scan_us_per_fingerprint: f64,
    /// `scan_us_per_fingerprint` × `sounds`: one brute-force lookup.
    pub scan_ms_per_lookup: f64,
    pub scan_recall_at_1: f64,
    /// Brute-force lookup ÷ index lookup (p50).
    pub speedup_p50: f64,
}

fn song_expr(seed: usize) -> String {
    // A pseudo-random note (0–11) per quarter second, its sequence
    // picked by the seed (no two seeds' melodies are shifts of each other).
    let note = format!(
        "mod(floor(abs(sin(floor(t*4)*{:.3}))*1000),12)",
        1.37 + 0.71 * seed as f64
    );
    let f = |shift: u32| format!("{}*pow(2,({note}+{shift})/12)", 220 + 20 * (seed % 7));
    format!(
        "0.3*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})+0.2*sin(2*PI*t*{})*(1+0.5*sin(2*PI*t*{}))",
        f(0),
        f(4),
        f(7),
        1 + seed % 4
    )
}

const VARIANTS: [(&str, &[&str]); 4] = [
    ("re-encoded", &["-c:a", "libmp3lame", "-b:a", "64k"]),
    ("quieter", &["-af", "volume=-3dB"]),
    ("shifted", &["-af", "adelay=2000|2000"]),
    (
        "all three",
        &[
            "-af",
            "volume=-3dB,adelay=2000|2000",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
        ],
    ),
];

fn ffmpeg(args: &[&str], out: &Path) -> Result<()> {
    if out.is_file() {
        return Ok(());
    }
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .map_err(Error::io("running", "ffmpeg"))?
        .success();
    if ok {
        Ok(())
    } else {
        Err(Error::Task(format!(
            "ffmpeg failed making {}",
            out.display()
        )))
    }
}

fn print(path: &Path) -> Result<Vec<u32>> {
    Ok(media::fingerprint_file(path)?
        .ok_or_else(|| Error::Task(format!("{} has no audio", path.display())))?
        .items)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Distractor `j`: a stretch of a real song's items, XOR-ed.
fn distractor(j: usize, pool: &[Vec<u32>]) -> Vec<u32> {
    let mut r = Rng((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let base = &pool[r.next() as usize % pool.len()];
    let start = r.next() as usize % base.len();
    let len = 242 + r.next() as usize % 243;
    let mask = (r.next() as u32) | 0x8000_0000;
    (0..len)
        .map(|i| base[(start + i) % base.len()] ^ mask)
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(o: &Options) -> Result<Report> {
    std::fs::create_dir_all(&o.cache).map_err(Error::io("creating", o.cache.display()))?;
    // Songs and their degraded copies (cached between runs).
    let mut originals = Vec::new();
    let mut queries: Vec<Vec<(usize, Vec<u32>)>> = vec![Vec::new(); VARIANTS.len()];
    for s in 0..o.songs {
        let wav = o.cache.join(format!("song{s}.wav"));
        let src = format!("aevalsrc='{}':s=44100:d=30", song_expr(s));
        ffmpeg(&["-f", "lavfi", "-i", &src], &wav)?;
        originals.push(print(&wav)?);
        let wav_s = wav.display().to_string();
        for (v, (name, args)) in VARIANTS.iter().enumerate() {
            let ext = if args.contains(&"libmp3lame") {
                "mp3"
            } else {
                "wav"
            };
            let out = o
                .cache
                .join(format!("song{s}-{}.{ext}", name.replace(' ', "-")));
            let mut a = vec!["-i", wav_s.as_str()];
            a.extend_from_slice(args);
            ffmpeg(&a, &out)?;
            queries[v].push((s, print(&out)?));
        }
    }
    eprintln!(
        "{} songs fingerprinted; building the index of {}",
        o.songs, o.sounds
    );
    // The index: songs first (entries 0..songs), then distractors.
    let started = Instant::now();
    let mut index = Index::new();
    let mut raw_items = 0usize;
    for items in &originals {
        index.insert(items);
        raw_items += items.len();
    }
    for j in o.songs..o.sounds {
        let items = distractor(j, &originals);
        raw_items += items.len();
        index.insert(&items);
    }
    index.shrink();
    let build = started.elapsed().as_secs_f64();
    let entry = |e: u32| -> Vec<u32> {
        let e = e as usize;
        if e < originals.len() {
            originals[e].clone()
        } else {
            distractor(e, &originals)
        }
    };
    // One untimed round first: the postings' pages are touched once, as
    // in a server that has been answering for a while.
    for (_, q) in queries.iter().flatten() {
        let _ = index.candidates(q, 8);
    }
    // Lookups: candidates, then verification of each.
    let mut variants = Vec::new();
    let mut all_ms = Vec::new();
    for (v, (name, _)) in VARIANTS.iter().enumerate() {
        let mut ms = Vec::new();
        let mut hits = 0;
        for (song, q) in &queries[v] {
            let t = Instant::now();
            let best = index
                .candidates(q, 8)
                .into_iter()
                .filter_map(|c| Some((c.entry, matcher::verify(q, &entry(c.entry))?)))
                .max_by(|a, b| a.1.confidence.total_cmp(&b.1.confidence));
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if best.is_some_and(|(e, _)| e as usize == *song) {
                hits += 1;
            }
        }
        all_ms.extend_from_slice(&ms);
        ms.sort_by(f64::total_cmp);
        variants.push(Variant {
            name,
            queries: ms.len(),
            recall_at_1: hits as f64 / ms.len().max(1) as f64,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
        });
    }
    all_ms.sort_by(f64::total_cmp);
    // The anchor: match_fingerprints over a sample (the true song in it).
    let sample: Vec<Vec<u32>> = (0..o.scan_sample)
        .map(|i| entry((o.songs + i * (o.sounds - o.songs).max(1) / o.scan_sample) as u32))
        .collect();
    let config = media::fingerprint::config();
    let combined = &queries[VARIANTS.len() - 1];
    let mut scan_hits = 0;
    let t = Instant::now();
    let mut compared = 0usize;
    for (song, q) in combined {
        let mut best: Option<(bool, f64)> = None;
        for (is_song, fp) in
            std::iter::once((true, &originals[*song])).chain(sample.iter().map(|f| (false, f)))
        {
            compared += 1;
            if let Ok(segs) = rusty_chromaprint::match_fingerprints(q, fp, &config) {
                if let Some(s) = segs.iter().max_by_key(|s| s.items_count) {
                    let score = s.items_count as f64 * (32.0 - s.score);
                    if best.is_none_or(|b| score > b.1) {
                        best = Some((is_song, score));
                    }
                }
            }
        }
        if best.is_some_and(|b| b.0) {
            scan_hits += 1;
        }
    }
    let scan_us = t.elapsed().as_secs_f64() * 1e6 / compared.max(1) as f64;
    let scan_ms = scan_us * o.sounds as f64 / 1000.0;
    let p50 = percentile(&all_ms, 0.5);
    let index_bytes = index.memory_bytes() as f64;
    Ok(Report {
        machine: benches::Machine::current(),
        sounds: o.sounds,
        songs: o.songs,
        index_build_secs: build,
        index_mb: index_bytes / 1e6,
        index_bytes_per_sound: index_bytes / o.sounds as f64,
        raw_fingerprints_mb: raw_items as f64 * 4.0 / 1e6,
        process_rss_mb: rss_mb(),
        variants,
        lookup_p50_ms: p50,
        lookup_p99_ms: percentile(&all_ms, 0.99),
        scan_sample: o.scan_sample,
        scan_us_per_fingerprint: scan_us,
        scan_ms_per_lookup: scan_ms,
        scan_recall_at_1: scan_hits as f64 / combined.len().max(1) as f64,
        speedup_p50: scan_ms / p50.max(1e-9),
    })
}
