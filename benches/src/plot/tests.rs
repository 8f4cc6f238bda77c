//! Every kind of result drawn from a small fixture: the PNG decodes at the
//! SVG's size (× PNG_SCALE) and is not blank, the SVG is XML with the
//! series' labels; and every committed result under benches/results/
//! re-renders, so one the renderer cannot read fails here.

use serde_json::{json, Value};

use super::*;

fn machine() -> Value {
    json!({"description": "Test CPU × 2 logical cores, 4 GiB RAM, no GPU, Debian 12",
           "cpu": "Test CPU", "logical_cores": 2, "memory_gib": 4.0, "os": "Debian 12",
           "ffmpeg": "ffmpeg 5.1", "gpus": []})
}

/// A small result of `kind` and labels its plot must show.
fn fixture(kind: Kind) -> (Value, Vec<&'static str>) {
    let m = machine();
    match kind {
        Kind::Encode => (
            json!({"benchmark": "encode: 1080p source → 4-rung H.264 HLS ladder (CPU)", "machine": m,
                   "source": "lavfi", "source_frames": 60, "backend": "cpu", "placement": "decode=cpu",
                   "gpus": [], "preset": "veryfast", "ladder": ["1080p"],
                   "runs": [{"contender": "engine", "wall_secs": 2.0, "source_fps": 30.0},
                            {"contender": "ffmpeg", "wall_secs": 2.5, "source_fps": 24.0}],
                   "engine_fps_median": 30.0, "ffmpeg_fps_median": 24.0, "ratio": 1.25,
                   "quality": [{"rung": "1080p", "psnr_engine_db": 36.0, "psnr_ffmpeg_db": 35.9,
                                "bytes_engine": 1000000, "bytes_ffmpeg": 1100000}],
                   "ffmpeg_command": "ffmpeg -i x"}),
            vec![
                "appliance (media engine)",
                "ffmpeg CLI (libx264)",
                "source frames / s",
                "PSNR (dB)",
            ],
        ),
        Kind::Live => (
            json!({"latency_basis": {"appliance": "a", "ffmpeg": "b"}, "machine": m, "source": "cam",
                   "ladder": "720p", "preset": "veryfast", "sustained_when": "always",
                   "latency_p95_limit_ms": 4000.0,
                   "rows": [{"contender": "appliance", "channels": 1, "sustained": true, "fps_in": 30.0,
                             "dropped": 0, "segments": 8, "latency_p50_ms": 100.0, "latency_p95_ms": 120.0},
                            {"contender": "ffmpeg", "channels": 1, "sustained": false, "fps_in": 25.0,
                             "dropped": 0, "segments": 8, "latency_p50_ms": 3000.0, "latency_p95_ms": 5000.0}],
                   "max_channels": {"appliance": 1, "ffmpeg": 0}}),
            vec![
                "appliance",
                "ffmpeg -f hls",
                "ffmpeg -f hls p95",
                "concurrent channels",
            ],
        ),
        Kind::Publish => (
            json!({"machine": m, "workload": "uploads", "goal_first_playable_s": 2.0,
                   "rows": [{"input": "h264-10s", "codec": "h264", "seconds": 10, "megabytes": 6.4,
                             "first_playable_s": 0.08, "full_ladder_s": 4.1, "ffmpeg_full_ladder_s": 9.3,
                             "full_ladder_speedup": 2.27, "first_rungs": ["1080p"]}]}),
            vec![
                "appliance: first playable",
                "ffmpeg CLI: whole ladder",
                "seconds (log)",
            ],
        ),
        Kind::Origin => (
            json!({"machine": m, "workload": "wrk", "nginx": "nginx version: nginx/1.22.1",
                   "summary": [{"target": "segment", "connections": 64, "appliance_requests_per_sec": 1900.0,
                                "nginx_requests_per_sec": 1200.0, "ratio": 1.58, "appliance_p99_ms": 61.0,
                                "nginx_p99_ms": 85.0, "goal_ratio": 1.0}]}),
            vec![
                "appliance origin",
                "nginx/1.22.1 (static, sendfile)",
                "GET segment",
            ],
        ),
        Kind::Rank => (
            json!({"machine": m, "device": "cpu", "features": 12,
                   "rows": [{"ranker": "formula", "batch": 1, "candidates_per_sec": 2e7},
                            {"ranker": "formula", "batch": 100, "candidates_per_sec": 5e8},
                            {"ranker": "model", "batch": 1, "candidates_per_sec": 2e5},
                            {"ranker": "model", "batch": 100, "candidates_per_sec": 4e6}]}),
            vec![
                "model: candle MLP",
                "formula: 0.4/0.3/0.2/0.1 (baseline)",
                "candidates / s (log)",
            ],
        ),
        Kind::Retrieval => (
            json!({"machine": m, "dim": 384, "queries": 10,
                   "rows": [{"vectors": 10000, "index": "Flat", "build_secs": 0.1, "recall_at_100": 1.0,
                             "qps_1_thread": 2600.0, "qps_all_threads": 4000.0, "p99_ms": 0.4},
                            {"vectors": 10000, "index": "IVF256,Flat nprobe=8", "build_secs": 0.2,
                             "recall_at_100": 0.93, "qps_1_thread": 21000.0, "qps_all_threads": 44000.0,
                             "p99_ms": 0.1}],
                   "chosen": [[10000, "Flat"]]}),
            vec!["10k vectors", "recall@100", "queries / s (log)"],
        ),
        Kind::Feed => (
            json!({"machine": m, "workload": "50 clients",
                   "rows": [{"videos": 100000, "users": 1000, "index": "IVF316,Flat nprobe=16", "clients": 50,
                             "requests": 1000, "requests_per_sec": 4000.0, "p50_ms": 0.01, "p99_ms": 100.0,
                             "first_page_p50_ms": 50.0, "first_page_p99_ms": 120.0, "setup_secs": 2.0}]}),
            vec![
                "first page p50",
                "first page p99",
                "all pages p99",
                "pages / s",
            ],
        ),
        Kind::FeedHttp => (
            json!({"machine": m, "workload": "open loop", "goal_p99_ms_at_1m": 25.0,
                   "sizes": [{"videos": 10000, "users": 100, "index": "Flat", "setup_secs": 1.0}],
                   "rows": [{"videos": 10000, "offered_rps": 50.0, "p99_ms": 7.8, "first_page_p99_ms": 8.4},
                            {"videos": 10000, "offered_rps": 100.0, "p99_ms": 9.0, "first_page_p99_ms": 11.0}],
                   "before": {"server": "a8466ec (the release before)",
                              "rows": [{"videos": 10000, "offered_rps": 50.0, "p99_ms": 6.0},
                                       {"videos": 10000, "offered_rps": 100.0, "p99_ms": 30.0}]}}),
            vec![
                "10k videos, all pages",
                "10k videos, first pages",
                "before: a8466ec",
                "this release",
            ],
        ),
        Kind::FeedBeforeAfter => (
            json!({"machine": m, "workload": "before/after",
                   "summary_medians": [{"set": "quiet", "videos": 100000,
                                        "before (abc)": {"first_page_p50_ms": 43.0, "first_page_p99_ms": 93.0,
                                                         "requests_per_sec": 5600.0},
                                        "after (def)": {"first_page_p50_ms": 50.0, "first_page_p99_ms": 119.0,
                                                        "requests_per_sec": 4700.0}}],
                   "runs": [{"set": "quiet", "binary": "before (abc)", "videos": 100000,
                             "first_page_p50_ms": 42.0, "first_page_p99_ms": 90.0, "requests_per_sec": 5700.0}]}),
            vec!["before (abc)", "after (def)", "First page p99"],
        ),
        Kind::FeedEval => {
            let m = |hr: f64| json!({"all": {"hr_at_10": hr, "ndcg_at_10": hr / 4.0}});
            (
                json!({"videos": 100, "events": 1000, "ranker": "model",
                       "protocols": [{"protocol": "time_split",
                                      "methods": {"ease": m(0.5), "feed": m(0.6), "feed_formula": m(0.4),
                                                  "random": m(0.05)},
                                      "strongest_baseline": "ease", "feed_hr_lift_over_strongest": 1.2,
                                      "feed_ndcg_lift_over_strongest": 1.3}]}),
                vec![
                    "appliance feed (model ranker)",
                    "appliance feed (formula ranker)",
                    "baselines",
                ],
            )
        }
        Kind::Embed => (
            json!({"machine": m, "model": "all-MiniLM-L6-v2", "candle": "cpu",
                   "torch": {"torch": "2.5", "sentence_transformers": "3.0", "threads": 2,
                             "min_cosine_vs_candle": 0.9999},
                   "torch_missing": null, "texts": 64, "rounds": 2,
                   "rows": [{"batch": 1, "candle_sentences_per_sec": 230.0, "torch_sentences_per_sec": 140.0,
                             "candle_over_torch": 1.64, "candle_runs": [220.0, 240.0],
                             "torch_runs": [139.0, 141.0]}]}),
            vec![
                "candle (appliance)",
                "PyTorch 2.5 (sentence-transformers 3.0, 2 threads)",
                "sentences / s",
            ],
        ),
        Kind::Ingest => (
            json!({"machine": m, "analytics": "embedded", "hot": "memory", "workload": "16 clients",
                   "goal_events_per_sec": 100000, "goal_lag_ms": 5000,
                   "runs": [{"mode": "burst", "target_events_per_sec": null, "secs": 15.0,
                             "events_per_sec": 400000.0, "max_queryable_lag_ms": 2000, "drain_after_load_ms": 300,
                             "series": [{"t_ms": 0, "spool_lag_ms": 0, "queryable_lag_ms": 0},
                                        {"t_ms": 500, "spool_lag_ms": 400, "queryable_lag_ms": 450}]},
                            {"mode": "paced", "target_events_per_sec": 100000, "secs": 30.0,
                             "events_per_sec": 99000.0,
                             "series": [{"t_ms": 0, "spool_lag_ms": 0, "queryable_lag_ms": 0}]}],
                   "before": {"events_per_sec": 160000.0}}),
            vec![
                "burst × 15 s",
                "paced 100k/s × 30 s, shipping",
                "accepted (this report)",
                "before (the report it replaced)",
            ],
        ),
        Kind::Gpukit => (
            json!({"status": "passed",
                   "discovery": {"inventory": {"cpu": {"model": "Xeon"}, "gpus": [{"name": "NVIDIA H200"}]}},
                   "kernels": {"Ok": {"cases": [{"kernel": "k", "max_diff": 0.0, "passed": true}]}},
                   "nvdec": {"Ok": [{"clip": "h264-8bit.h264", "status": "passed", "decode_fps": 527.0,
                                     "scale_ms_per_frame_gpu": 0.07, "scale_ms_per_frame_cpu": 190.0},
                                    {"clip": "h264-10bit.h264", "status": "unsupported", "decode_fps": null,
                                     "scale_ms_per_frame_gpu": null, "scale_ms_per_frame_cpu": null}]}}),
            vec![
                "GPU: NVDEC + fused scale kernel",
                "CPU reference scale",
                "GPU: NVDEC decode",
            ],
        ),
        Kind::Models => (
            json!({"cuda": {"Ok": "cuda:0"}, "sentences": 64,
                   "embed": [{"device": "cpu", "batch": 32, "sentences_per_sec": 1200.0, "rounds": [1200.0]},
                             {"device": "cuda:0", "batch": 32, "sentences_per_sec": 9700.0, "rounds": [9700.0]}],
                   "torch": {"device": "cuda (NVIDIA H200), torch 2.11", "batch": 32, "sentences_per_sec": 7000.0},
                   "rank": [{"device": "cpu", "batch": 100, "candidates_per_sec": 4e6},
                            {"device": "cuda:0", "batch": 100, "candidates_per_sec": 1e6},
                            {"device": "cpu", "batch": 1000, "candidates_per_sec": 3.8e6},
                            {"device": "cuda:0", "batch": 1000, "candidates_per_sec": 1e7}],
                   "passed": true}),
            vec![
                "candle cpu",
                "candle cuda:0",
                "PyTorch cuda (NVIDIA H200), torch 2.11",
            ],
        ),
        Kind::Search => {
            let row = |kind: &str, qt: &str, engine: &str, p99: f64| {
                json!({"kind": kind, "query_type": qt, "engine": engine, "queries": 100,
                       "p50_ms": p99 / 3.0, "p95_ms": p99 / 2.0, "p99_ms": p99, "max_ms": p99 * 2.0,
                       "mean_hits": 12.0})
            };
            (
                json!({"machine": m, "workload": "1000 users, sounds, hashtags",
                       "anchor": "SQLite 3.40.1: prefix ranges and FTS5",
                       "entities_per_kind": 1000, "queries_per_type": 100,
                       "goal_p99_ms_search": 10.0, "tantivy_merge_s": 1.0,
                       "build": [{"kind": "users", "tantivy_build_s": 2.0, "tantivy_bytes": 1e6,
                                  "sqlite_build_s": 1.0, "sqlite_bytes": 2e6}],
                       "summary": [{"kind": "users", "tantivy_p99_ms": 0.9, "sqlite_p99_ms": 40.0,
                                    "speedup_p99": 44.0, "tantivy_max_ms": 2.0, "sqlite_max_ms": 80.0}],
                       "rows": [row("users", "prefix-1", "tantivy", 0.9),
                                row("users", "prefix-1", "sqlite", 40.0),
                                row("users", "miss", "tantivy", 0.05),
                                row("users", "miss", "sqlite", 0.04)]}),
                vec![
                    "tantivy index (the box)",
                    "SQLite (B-tree prefix range / FTS5)",
                    "goal: p99 ≤ 10 ms",
                ],
            )
        }
        Kind::Fingerprints => {
            let variant = |name: &str, p50: f64| json!({"name": name, "queries": 40, "recall_at_1": 0.95, "p50_ms": p50, "p99_ms": p50 * 3.0});
            (
                json!({"machine": m, "sounds": 1000, "songs": 40, "index_build_secs": 0.5,
                       "index_mb": 30.0, "index_bytes_per_sound": 400.0, "raw_fingerprints_mb": 1.5,
                       "process_rss_mb": 80.0,
                       "variants": [variant("re-encoded", 0.4), variant("all three", 0.5)],
                       "lookup_p50_ms": 0.45, "lookup_p99_ms": 1.5, "scan_sample": 200,
                       "scan_us_per_fingerprint": 40.0, "scan_ms_per_lookup": 40.0,
                       "scan_recall_at_1": 1.0, "speedup_p50": 88.0}),
                vec!["index p50", "brute-force scan (extrapolated)", "recall@1"],
            )
        }
    }
}

/// The SVG's width and height, its text and the PNG's pixels checked.
fn check(plot: &Plot, labels: &[&str]) {
    let doc = roxmltree::Document::parse(&plot.svg).expect("the SVG is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let size = |a: &str| {
        root.attribute(a)
            .and_then(|v| v.parse::<f32>().ok())
            .expect(a)
    };
    let text: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for label in labels {
        assert!(
            text.iter().any(|t| t.contains(label)),
            "{:?}: no text {label:?} in {text:?}",
            plot.kind
        );
    }
    assert!(
        text.iter().any(|t| t.starts_with("machine: ")),
        "the machine is named"
    );

    let decoder = png::Decoder::new(std::io::Cursor::new(&plot.png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!(
        (info.width, info.height),
        (
            (size("width") * PNG_SCALE) as u32,
            (size("height") * PNG_SCALE) as u32
        )
    );
    assert_eq!((plot.width, plot.height), (info.width, info.height));
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let inked = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|c| *c < 200))
        .count();
    let total = (info.width * info.height) as usize;
    assert!(
        inked * 100 > total,
        "{:?}: only {inked} of {total} pixels are drawn",
        plot.kind
    );
    // The ours-colour (#1f77b4) or the anchor's is on it, not just text.
    let coloured = pixels
        .chunks(channels)
        .filter(|p| (p[0] as i32 - p[2] as i32).abs() > 60)
        .count();
    assert!(coloured > 100, "{:?}: no coloured series drawn", plot.kind);
}

#[test]
fn every_kind_draws_its_fixture_as_svg_and_png() {
    for kind in Kind::ALL {
        let (v, labels) = fixture(kind);
        assert_eq!(detect(&v), Some(kind), "{kind:?} is told from its fields");
        let plot = render(&v).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(plot.kind, kind);
        check(&plot, &labels);
    }
}

#[test]
fn the_plot_is_written_beside_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/encode-test.json");
    let (v, _) = fixture(Kind::Encode);
    let [svg, png] = crate::write_report(&out, &v).unwrap();
    assert_eq!(svg, dir.path().join("sub/encode-test.svg"));
    assert_eq!(png, dir.path().join("sub/encode-test.png"));
    assert!(out.is_file() && svg.is_file() && png.is_file());
    // Redrawn from the JSON alone, it is the same picture.
    let first = std::fs::read(&png).unwrap();
    replot(&out).unwrap();
    assert_eq!(std::fs::read(&png).unwrap(), first);
}

#[test]
fn a_result_it_cannot_read_is_an_error_naming_its_fields() {
    let e = render(&json!({"hello": 1, "world": []}))
        .err()
        .expect("an error");
    assert!(e.to_string().contains("hello, world"), "{e}");
    // A known kind with a field missing says which.
    let mut v = fixture(Kind::Encode).0;
    v.as_object_mut().unwrap().remove("quality");
    let e = render(&v).err().expect("an error");
    assert!(e.to_string().contains("`quality`"), "{e}");
}

/// What `appliance bench plot benches/results/*.json` does, into a scratch
/// folder: every committed result must re-render.
#[test]
fn every_committed_result_replots() {
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::copy(&path, &copy).unwrap();
        let plot = replot(&copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&plot, &[]);
        let [svg, png] = paths_beside(&copy);
        assert!(svg.is_file() && png.is_file());
        n += 1;
    }
    assert!(n > 0, "no results under {}", results.display());
}

#[test]
fn numbers_are_labelled_short() {
    use super::chart::si;
    assert_eq!(si(0.0), "0");
    assert_eq!(si(0.25), "0.25");
    assert_eq!(si(1200.0), "1200");
    assert_eq!(si(12_500.0), "12.5k");
    assert_eq!(si(20_000_000.0), "20M");
    assert_eq!(si(-2000.0), "-2000");
}
