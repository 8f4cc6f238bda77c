//! `appliance simulate | eval-feed | train-ranker`: the world simulator,
//! the offline evaluation and ranker training, on the real engine.

use std::io::Write;
use std::path::{Path, PathBuf};

use inference::engine::{VideoDoc, Watch};
use inference::eval::{evaluate, EvalConfig};
use inference::sim::{World, WorldConfig, TOPICS};
use inference::{Embedder, Impression, Variant};

use crate::engagement::{AnalyticsStore, PastImpression};
use crate::error::{Error, Result};
use crate::store::catalog as cat;
use settings::Config;

#[derive(serde::Serialize, serde::Deserialize)]
struct VideoLine {
    #[serde(flatten)]
    doc: VideoDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
}

fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, p.display())(e)
}

/// Generates a world and its interaction log into `out`: `videos.jsonl`
/// (one video per line), `events.csv` (`user,video,completion,timestamp`)
/// and `events.jsonl` (full watch events).
pub fn simulate(cfg: &WorldConfig, out: &Path) -> Result<(usize, usize)> {
    std::fs::create_dir_all(out).map_err(io("creating", out))?;
    let mut world = World::generate(cfg);
    let log = world.log(cfg);
    let mut videos = Vec::new();
    for v in &world.videos {
        let line = VideoLine {
            doc: v.doc.clone(),
            topic: Some(TOPICS[v.topic].name.to_string()),
        };
        videos.extend(serde_json::to_vec(&line).unwrap_or_default());
        videos.push(b'\n');
    }
    let p = out.join("videos.jsonl");
    std::fs::write(&p, videos).map_err(io("writing", &p))?;
    let mut csv = String::from("user,video,completion,timestamp\n");
    let mut jsonl = Vec::new();
    for w in &log {
        csv.push_str(&format!(
            "{},{},{:.4},{}\n",
            w.user,
            w.video,
            w.completion(),
            w.ts
        ));
        jsonl.extend(serde_json::to_vec(w).unwrap_or_default());
        jsonl.push(b'\n');
    }
    let p = out.join("events.csv");
    std::fs::write(&p, csv).map_err(io("writing", &p))?;
    let p = out.join("events.jsonl");
    std::fs::write(&p, jsonl).map_err(io("writing", &p))?;
    let p = out.join("curves.svg");
    std::fs::write(&p, super::plot::curves_svg(&log)).map_err(io("writing", &p))?;
    Ok((world.videos.len(), log.len()))
}

pub fn read_videos(path: &Path) -> Result<Vec<VideoDoc>> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str::<VideoLine>(l)
                .map(|v| v.doc)
                .map_err(|e| {
                    Error::Config(format!(
                        "{}:{}: not a video line: {e}",
                        path.display(),
                        n + 1
                    ))
                })
        })
        .collect()
}

/// Reads `events.jsonl` (full events) or a `user,video,completion,timestamp`
/// CSV.
pub fn read_events(path: &Path) -> Result<Vec<Watch>> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        let mut v: Vec<Watch> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::Config(format!(
                        "{}:{}: not a watch event: {e}",
                        path.display(),
                        n + 1
                    ))
                })
            })
            .collect::<Result<_>>()?;
        v.sort_by_key(|w| w.ts);
        return Ok(v);
    }
    inference::eval::parse_log(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Embeds every video's caption, hashtags and sound with the real model.
pub fn embed_docs(
    model_dir: &Path,
    docs: Vec<VideoDoc>,
    quiet: bool,
) -> Result<Vec<(VideoDoc, Vec<f32>)>> {
    let embedder = Embedder::load(model_dir)?;
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(docs.len() as u64).with_message("embedding")
    };
    let mut out = Vec::with_capacity(docs.len());
    for chunk in docs.chunks(64) {
        let texts: Vec<String> = chunk
            .iter()
            .map(|d| inference::embed::video_text(&d.caption, &d.hashtags, d.sound.as_deref()))
            .collect();
        let vecs = embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        out.extend(chunk.iter().cloned().zip(vecs));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

pub struct EvalArgs {
    pub videos: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub ranker: Option<PathBuf>,
    pub model_dir: PathBuf,
    pub out: Option<PathBuf>,
    pub seed: u64,
    pub realistic: bool,
    pub quiet: bool,
}

/// Loads (or simulates) a catalog and log and evaluates the feed.
pub fn eval_feed(a: &EvalArgs) -> Result<inference::eval::Report> {
    let (docs, events) = match (&a.videos, &a.log) {
        (Some(v), Some(l)) => (read_videos(v)?, read_events(l)?),
        (None, None) => {
            let base = if a.realistic {
                WorldConfig::realistic()
            } else {
                WorldConfig::default()
            };
            let cfg = WorldConfig {
                seed: a.seed,
                ..base
            };
            let mut world = World::generate(&cfg);
            let log = world.log(&cfg);
            (world.videos.into_iter().map(|v| v.doc).collect(), log)
        }
        _ => {
            return Err(Error::Config(
                "give both --videos and --log, or neither (to simulate)".into(),
            ))
        }
    };
    let videos = embed_docs(&a.model_dir, docs, a.quiet)?;
    let report = evaluate(
        &videos,
        &events,
        &EvalConfig {
            seed: a.seed,
            ..EvalConfig::default()
        },
        a.ranker.as_deref(),
    )?;
    if let Some(out) = &a.out {
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        std::fs::write(out, json).map_err(io("writing", out))?;
        // The plot beside the JSON: HR@10 per protocol, cohort and method.
        let svg = out.with_extension("svg");
        std::fs::write(&svg, super::plot::svg(&report)).map_err(io("writing", &svg))?;
    }
    Ok(report)
}

/// `train-ranker`: from the box's analytics store (default: its watch
/// events and the impressions of the pages the feed served) or a simulated
/// log (no impressions).
pub fn train_ranker(
    config: &Config,
    from: Option<(PathBuf, PathBuf)>,
    out: Option<PathBuf>,
    quiet: bool,
) -> Result<(PathBuf, inference::rank::TrainReport)> {
    let target = out.unwrap_or_else(|| {
        let r = &config.feed.ranker;
        if r.is_absolute() {
            r.clone()
        } else {
            config.storage.data_dir.join(r)
        }
    });
    let (videos, events, impressions) = match from {
        Some((v, l)) => (
            embed_docs(&config.feed.model_dir, read_videos(&v)?, quiet)?,
            read_events(&l)?,
            Vec::new(),
        ),
        None => {
            // Only the stores, read beside a server that may be running.
            let data = &config.storage.data_dir;
            std::fs::create_dir_all(data).map_err(io("creating", data))?;
            let catalog = crate::store::Catalog::open(&data.join("catalog.db"))?;
            let engagement = crate::engagement::Engagement::new(config, catalog.clone())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Error::io("starting", "runtime"))?;
            rt.block_on(async {
                let videos: Vec<(VideoDoc, Vec<f32>)> = catalog
                    .call(|c| cat::embedded_videos(c))
                    .await?
                    .into_iter()
                    .map(|(row, emb)| (super::doc_of(&row), emb))
                    .collect();
                // The watch history the analytics store holds (events still
                // in a running server's spool join the next training run).
                let mut events = Vec::new();
                engagement
                    .analytics
                    .watch_history(&mut |chunk| {
                        events.extend(chunk.into_iter().map(super::watch_of));
                    })
                    .await?;
                let impressions = stored_impressions(engagement.analytics.as_ref()).await?;
                Ok::<_, Error>((videos, events, impressions))
            })?
        }
    };
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    if !quiet {
        eprintln!(
            "training on {} videos, {} watch events and {} impressions",
            videos.len(),
            events.len(),
            impressions.len()
        );
    }
    let report = inference::eval::train_ranker(&videos, &events, &impressions, &target, 300)?;
    Ok((target, report))
}

/// An impression as training takes it (seconds, a known variant).
pub fn impression_of(i: PastImpression) -> Impression {
    Impression {
        user: i.user,
        video: i.video,
        position: i.position,
        ts: i.ts.div_euclid(1000),
        variant: Variant::parse(&i.variant).unwrap_or(Variant::Control),
    }
}

/// Every impression the analytics store holds: what feeds showed, so that
/// training takes the videos shown and never watched as negatives.
pub async fn stored_impressions(analytics: &dyn AnalyticsStore) -> Result<Vec<Impression>> {
    let mut out = Vec::new();
    analytics
        .impressions(&mut |chunk| out.extend(chunk.into_iter().map(impression_of)))
        .await?;
    Ok(out)
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engagement::{Engagement, Event, Kind, Shown};

    /// `train-ranker` reads the impressions the store holds, and a video
    /// shown and never watched afterwards becomes a negative example
    /// weighted by its position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn training_takes_the_stored_impressions_as_negatives() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().to_path_buf();
        let catalog = crate::store::Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let engagement = Engagement::new(&config, catalog).unwrap();
        let t0 = 1_700_000_000i64;
        let videos: Vec<(VideoDoc, Vec<f32>)> = (0..12)
            .map(|i| {
                let mut emb = vec![0.0f32; inference::DIM];
                emb[i] = 1.0;
                let doc = VideoDoc {
                    id: format!("v{i}"),
                    creator: format!("c{}", i % 3),
                    caption: format!("video {i}"),
                    hashtags: vec![format!("tag{}", i % 4)],
                    sound: None,
                    created_at: t0,
                };
                (doc, emb)
            })
            .collect();
        let mut events = Vec::new();
        for (i, at) in [(0, 100), (1, 200), (2, 300), (3, 400)] {
            let mut w = Event::action(Kind::Watch, format!("w{i}"), &format!("v{i}"), "c", "u");
            w.ts = (t0 + at) * 1000;
            w.watch_ms = 900;
            w.duration_ms = 1000;
            w.completed = true;
            events.push(w);
        }
        let shown = |video: &str, at: i64, position: u32| {
            let s = Shown {
                position,
                ranker: "model".into(),
                variant: "candidate".into(),
                experiment: "exp".into(),
            };
            let id = format!("impression:{video}:{at}");
            Event::impression(id, "u", video, "c", (t0 + at) * 1000, "personalized", s)
        };
        // Skipped: v6 and v7. v2 was watched after it was shown, v1 before
        // (already watched): neither is a negative.
        events.extend([
            shown("v6", 150, 0),
            shown("v2", 150, 1),
            shown("v7", 250, 4),
            shown("v1", 350, 0),
        ]);
        engagement.analytics.ingest(&events).await.unwrap();

        let impressions = stored_impressions(engagement.analytics.as_ref())
            .await
            .unwrap();
        assert_eq!(impressions.len(), 4);
        let v7 = impressions.iter().find(|i| i.video == "v7").unwrap();
        assert_eq!(
            (v7.ts, v7.position, v7.variant),
            (t0 + 250, 4, Variant::Candidate)
        );

        let mut watches = Vec::new();
        engagement
            .analytics
            .watch_history(&mut |c| watches.extend(c.into_iter().map(super::super::watch_of)))
            .await
            .unwrap();
        let without = inference::eval::training_examples(&videos, &watches, &[], 7).unwrap();
        let with = inference::eval::training_examples(&videos, &watches, &impressions, 7).unwrap();
        assert_eq!(with.len(), without.len() + 2, "v6 and v7 are negatives");
        let weight = inference::experiment::examination(4);
        assert!(
            with.iter().any(|e| (e.weight - weight).abs() < 1e-6),
            "the skip at position 4 is weighted by its examination probability"
        );
    }
}
