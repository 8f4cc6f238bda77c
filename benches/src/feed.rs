//! Recommendation benchmarks on synthetic catalogs whose embeddings cluster
//! like real topics do (a mixture of Gaussians on the unit sphere), so the
//! recall an IVF index reaches here is representative rather than the
//! worst case of uniform noise.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inference::engine::{Engine, EngineConfig, FeedKind, VideoDoc, Watch};
use inference::index::{exact_top_k, IndexKind, VectorIndex};
use inference::rank::{Features, Ranker, FEATURES};
use inference::DIM;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::{BenchError, Machine, Result};

/// `n` unit vectors around `clusters` centres, and the cluster of each.
pub fn clustered(n: usize, clusters: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!());
    let centres: Vec<f32> = (0..clusters * DIM)
        .map(|_| normal.sample(&mut rng))
        .collect();
    let mut out = Vec::with_capacity(n * DIM);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        let start = out.len();
        out.extend(
            centres[c * DIM..(c + 1) * DIM]
                .iter()
                .map(|x| x + 0.9 * normal.sample(&mut rng)),
        );
        inference::embed::normalize(&mut out[start..]);
        labels.push(c);
    }
    (out, labels)
}

/// What `users` synthetic viewers watched, by catalog index: two in three
/// from one home topic, the rest from anywhere (`labels` from
/// [`clustered`]).
pub fn user_watches(labels: &[usize], users: usize, per_user: usize, seed: u64) -> Vec<Vec<usize>> {
    let clusters = labels.iter().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters];
    for (i, &c) in labels.iter().enumerate() {
        members[c].push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..users)
        .map(|_| {
            let home = &members[labels[rng.random_range(0..labels.len())]];
            (0..per_user)
                .map(|k| {
                    if k % 3 == 0 {
                        rng.random_range(0..labels.len())
                    } else {
                        home[rng.random_range(0..home.len())]
                    }
                })
                .collect()
        })
        .collect()
}

/// Taste vectors of `n` synthetic viewers (the normalised mean of 30
/// watches, as the engine keeps them), row-major.
pub fn user_queries(vecs: &[f32], labels: &[usize], n: usize, seed: u64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * DIM);
    for watched in user_watches(labels, n, 30, seed) {
        let mut q = vec![0.0f32; DIM];
        for v in watched {
            q.iter_mut()
                .zip(&vecs[v * DIM..(v + 1) * DIM])
                .for_each(|(a, b)| *a += b);
        }
        inference::embed::normalize(&mut q);
        out.extend(q);
    }
    out
}

// -------------------------------------------------------------- retrieval

#[derive(Debug, Serialize)]
pub struct RetrievalRow {
    pub vectors: usize,
    pub index: String,
    pub build_secs: f64,
    pub recall_at_100: f64,
    pub qps_1_thread: f64,
    pub qps_all_threads: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct RetrievalReport {
    pub machine: Machine,
    pub dim: usize,
    pub queries: usize,
    pub rows: Vec<RetrievalRow>,
    /// What `IndexKind::for_size` picks at each size.
    pub chosen: Vec<(usize, String)>,
}

pub fn retrieval(sizes: &[usize], out: &Path) -> Result<RetrievalReport> {
    let queries = 200;
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("retrieval: {n} vectors");
        let (vecs, labels) = clustered(n, (n / 500).clamp(20, 2000), 1);
        let ids: Vec<u64> = (0..n as u64).collect();
        // Queries are what the feed asks: viewers' taste vectors, the mean
        // of what they watched (mostly one topic, some anything), which sit
        // between cells rather than on a catalog vector.
        let qv = user_queries(&vecs, &labels, queries, 2);
        let truth: Vec<Vec<u64>> = (0..queries)
            .map(|q| exact_top_k(&vecs, DIM, &qv[q * DIM..(q + 1) * DIM], 100))
            .collect();
        let nlist = match IndexKind::for_size(n.max(inference::index::FLAT_LIMIT)) {
            IndexKind::Ivf { nlist, .. } => nlist,
            IndexKind::Flat => 256,
        };
        // Each structure is built once and probed at several nprobe
        // (nprobe only changes the search).
        let structures: Vec<Vec<IndexKind>> = vec![
            vec![IndexKind::Flat],
            [8, 16, 32, 64]
                .map(|nprobe| IndexKind::Ivf { nlist, nprobe })
                .to_vec(),
        ];
        for kinds in structures {
            let mut built: Option<VectorIndex> = None;
            for kind in kinds {
                let t = Instant::now();
                let idx = match built.take() {
                    Some(prev) => {
                        prev.set_nprobe(kind);
                        prev
                    }
                    None => {
                        let i = VectorIndex::unloaded("bench", DIM);
                        i.rebuild(&ids, &vecs, Some(kind))?;
                        i
                    }
                };
                let build_secs = t.elapsed().as_secs_f64();
                let mut hits = 0usize;
                let mut lat = Vec::with_capacity(queries);
                let t = Instant::now();
                for (q, want) in truth.iter().enumerate() {
                    let s = Instant::now();
                    let got = idx.search(&qv[q * DIM..(q + 1) * DIM], 100)?;
                    lat.push(s.elapsed().as_secs_f64() * 1000.0);
                    hits += got.iter().filter(|h| want.contains(&h.id)).count();
                }
                let qps1 = queries as f64 / t.elapsed().as_secs_f64();
                let idx = Arc::new(idx);
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let t = Instant::now();
                std::thread::scope(|s| {
                    for th in 0..threads {
                        let idx = idx.clone();
                        let qv = &qv;
                        s.spawn(move || {
                            for q in (th..queries).step_by(threads) {
                                let _ = idx.search(&qv[q * DIM..(q + 1) * DIM], 100);
                            }
                        });
                    }
                });
                let qps_all = queries as f64 / t.elapsed().as_secs_f64();
                lat.sort_by(f64::total_cmp);
                rows.push(RetrievalRow {
                    vectors: n,
                    index: kind.describe(),
                    build_secs,
                    recall_at_100: hits as f64 / (queries * 100) as f64,
                    qps_1_thread: qps1,
                    qps_all_threads: qps_all,
                    p99_ms: crate::percentile(&lat, 0.99),
                });
                eprintln!("  {:?}", rows.last());
                built = Arc::try_unwrap(idx).ok();
            }
        }
    }
    let report = RetrievalReport {
        machine: Machine::current(),
        dim: DIM,
        queries,
        chosen: sizes
            .iter()
            .map(|&n| (n, IndexKind::for_size(n).describe()))
            .collect(),
        rows,
    };
    crate::write_report(out, &report)?;
    Ok(report)
}

// ------------------------------------------------------------------- rank

#[derive(Debug, Serialize)]
pub struct RankRow {
    pub ranker: String,
    pub batch: usize,
    pub candidates_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct RankReport {
    pub machine: Machine,
    /// Where the model ran: `cpu`, or `cuda:0` in a `gpu` build (set
    /// `APPLIANCE_MODELS_ON=cpu` for the CPU side of a GPU host).
    pub device: &'static str,
    pub features: usize,
    pub rows: Vec<RankRow>,
}

pub fn rank(out: &Path) -> Result<RankReport> {
    let mut rng = StdRng::seed_from_u64(3);
    let examples: Vec<inference::rank::Example> = (0..5000)
        .map(|_| {
            let mut f = [0.0f32; FEATURES];
            f.iter_mut().for_each(|x| *x = rng.random());
            inference::rank::Example {
                positive: f[0] + f[1] > 1.0,
                features: f,
                weight: 1.0,
            }
        })
        .collect();
    let dir = tempfile::tempdir().map_err(|source| BenchError::Io {
        op: "creating",
        path: "temp dir".into(),
        source,
    })?;
    let path = dir.path().join("ranker.safetensors");
    inference::rank::train(&examples, 50, &path)?;
    let rankers = [
        ("formula", Ranker::Formula),
        ("model", Ranker::Model(inference::RankModel::load(&path)?)),
    ];
    let mut rows = Vec::new();
    for (name, ranker) in &rankers {
        for batch in [1usize, 10, 100, 1000, 5000] {
            let feats: Vec<Features> = examples
                .iter()
                .cycle()
                .take(batch)
                .map(|e| e.features)
                .collect();
            let target = Duration::from_millis(700);
            let t = Instant::now();
            let mut scored = 0usize;
            while t.elapsed() < target {
                scored += ranker.score(&feats)?.len();
            }
            rows.push(RankRow {
                ranker: name.to_string(),
                batch,
                candidates_per_sec: scored as f64 / t.elapsed().as_secs_f64(),
            });
            eprintln!("  {:?}", rows.last());
        }
    }
    let report = RankReport {
        machine: Machine::current(),
        device: inference::device::describe(&inference::device::models()),
        features: FEATURES,
        rows,
    };
    crate::write_report(out, &report)?;
    Ok(report)
}

// ------------------------------------------------------------------- feed

#[derive(Debug, Serialize)]
pub struct FeedRow {
    pub videos: usize,
    pub users: usize,
    pub index: String,
    pub clients: usize,
    pub requests: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// First pages only: retrieval + ranking + re-rank for a new session.
    pub first_page_p50_ms: f64,
    pub first_page_p99_ms: f64,
    pub setup_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct FeedReport {
    pub machine: Machine,
    pub workload: String,
    pub rows: Vec<FeedRow>,
}

/// An engine with `n` synthetic videos and `users` users with 30 watches
/// each, as the server would have after warm-up.
pub fn synthetic_engine(n: usize, users: usize, seed: u64) -> Result<Engine> {
    let clusters = (n / 500).clamp(20, 2000);
    let (vecs, labels) = clustered(n, clusters, seed);
    let engine = Engine::new(EngineConfig::default());
    let now = 1_767_225_600i64;
    let mut rng = StdRng::seed_from_u64(seed + 1);
    for i in 0..n {
        let c = labels[i];
        engine.load_video(
            VideoDoc {
                id: format!("v{i:07}"),
                creator: format!("c{}", rng.random_range(0..n / 10 + 1)),
                caption: format!("video {i} about topic {c}"),
                hashtags: vec![format!("topic{c}"), format!("t{}", c % 50)],
                sound: Some(format!("s{}", c % 300)),
                created_at: now - rng.random_range(0..30 * 86_400),
            },
            vecs[i * DIM..(i + 1) * DIM].to_vec(),
        )?;
    }
    engine.rebuild_video_index(None)?;
    for (u, watched) in user_watches(&labels, users, 30, seed + 2)
        .into_iter()
        .enumerate()
    {
        for (k, v) in watched.into_iter().enumerate() {
            let k = k as i64;
            engine.record_watch(
                &Watch {
                    user: format!("u{u}"),
                    video: format!("v{v:07}"),
                    watch_ms: rng.random_range(1_000..20_000),
                    duration_ms: 20_000,
                    completed: rng.random::<f32>() < 0.4,
                    liked: rng.random::<f32>() < 0.1,
                    shared: false,
                    ts: now - 86_400 + k * 60,
                },
                false,
            );
        }
    }
    engine.rebuild_user_index()?;
    engine.refresh(now)?;
    Ok(engine)
}

/// `clients` threads each scroll sessions of `pages` pages (the first page
/// computes, the rest are cut from the session) for `secs` seconds.
pub fn feed(
    sizes: &[usize],
    clients: usize,
    pages: usize,
    secs: u64,
    out: &Path,
) -> Result<FeedReport> {
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("feed: building a {n}-video engine");
        let t = Instant::now();
        let users = 10_000;
        let engine = Arc::new(synthetic_engine(n, users, 9)?);
        let setup_secs = t.elapsed().as_secs_f64();
        let now = 1_767_225_600i64;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let results: Vec<(Vec<f64>, Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let engine = engine.clone();
                    s.spawn(move || {
                        let mut all = Vec::new();
                        let mut first = Vec::new();
                        let mut rng = StdRng::seed_from_u64(c as u64);
                        while Instant::now() < deadline {
                            let user = format!("u{}", rng.random_range(0..users));
                            let mut cursor: Option<String> = None;
                            for p in 0..pages {
                                let t = Instant::now();
                                let page = engine.feed(
                                    FeedKind::ForYou,
                                    Some(&user),
                                    10,
                                    cursor.as_deref(),
                                    now,
                                );
                                let ms = t.elapsed().as_secs_f64() * 1000.0;
                                all.push(ms);
                                if p == 0 {
                                    first.push(ms);
                                }
                                match page {
                                    Ok(page) => cursor = page.next_cursor,
                                    Err(e) => {
                                        eprintln!("feed error: {e}");
                                        break;
                                    }
                                }
                            }
                        }
                        (all, first)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut all: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
        let mut first: Vec<f64> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
        all.sort_by(f64::total_cmp);
        first.sort_by(f64::total_cmp);
        rows.push(FeedRow {
            videos: n,
            users,
            index: engine
                .videos_index
                .kind()
                .map(|k| k.describe())
                .unwrap_or_default(),
            clients,
            requests: all.len(),
            requests_per_sec: all.len() as f64 / secs as f64,
            p50_ms: crate::percentile(&all, 0.5),
            p99_ms: crate::percentile(&all, 0.99),
            first_page_p50_ms: crate::percentile(&first, 0.5),
            first_page_p99_ms: crate::percentile(&first, 0.99),
            setup_secs,
        });
        eprintln!("  {:?}", rows.last());
    }
    let report = FeedReport {
        machine: Machine::current(),
        workload: format!(
            "{clients} closed-loop client threads in-process; each scrolls sessions of {pages} pages of 10 \
             (page 1 retrieves and ranks ~300–500 candidates, later pages come from the session); 10k users with 30 watches each"
        ),
        rows,
    };
    crate::write_report(out, &report)?;
    Ok(report)
}
