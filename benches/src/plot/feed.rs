//! Plots of the feed's benches: `rank` (the model vs the formula),
//! `retrieval` (approximate indexes vs exact search), `feed` (latency in
//! the engine), before/after comparisons of `feed`, and `eval-feed`'s
//! offline evaluation (the feed vs the baselines).

use serde_json::Value;

use super::chart::{
    palette, Axis, Figure, Mark, Panel, Point, Series, ANCHOR, ANCHOR_2, GREY, OURS, OURS_2,
};
use super::{count, list, machine, num, opt_num, text};
use crate::Result;

pub fn rank(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let mut rankers: Vec<&str> = Vec::new();
    for r in rows {
        let k = text(r, "ranker")?;
        if !rankers.contains(&k) {
            rankers.push(k);
        }
    }
    let mut panel = Panel::values(
        "Candidates scored per second by batch size",
        Axis::log("batch size (candidates, log)"),
        Axis::log("candidates / s (log)"),
    );
    for k in rankers {
        let (label, colour) = match k {
            "model" => ("model: candle MLP".to_owned(), OURS),
            "formula" => ("formula: 0.4/0.3/0.2/0.1 (baseline)".to_owned(), ANCHOR),
            other => (other.to_owned(), GREY),
        };
        let mut s = Series::new(label, colour, Mark::Line);
        for r in rows
            .iter()
            .filter(|r| r.get("ranker").and_then(Value::as_str) == Some(k))
        {
            s.push(Point::new(num(r, "batch")?, num(r, "candidates_per_sec")?));
        }
        panel = panel.series(s);
    }
    Ok(Figure {
        title: format!(
            "Ranking throughput on the {}: model vs formula",
            v.get("device").and_then(Value::as_str).unwrap_or("cpu")
        ),
        machine: machine(v),
        panels: vec![panel],
        notes: vec![format!("{} features per candidate", num(v, "features")?)],
    })
}

/// "IVF316,Flat nprobe=16" → "IVF nprobe=16": the same setting at every size.
fn index_family(index: &str) -> String {
    match index.split_once(" nprobe=") {
        Some((_, n)) => format!("IVF nprobe={n}"),
        None => index.to_owned(),
    }
}

pub fn retrieval(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let mut families: Vec<String> = Vec::new();
    let mut sizes: Vec<f64> = Vec::new();
    for r in rows {
        let f = index_family(text(r, "index")?);
        if !families.contains(&f) {
            families.push(f);
        }
        let n = num(r, "vectors")?;
        if !sizes.contains(&n) {
            sizes.push(n);
        }
    }
    let names: Vec<String> = families
        .iter()
        .map(|f| {
            if f == "Flat" {
                "Flat\n(exact)".to_owned()
            } else {
                f.replace(' ', "\n")
            }
        })
        .collect();
    let mut qps = Panel::categories(
        "Queries per second, all threads",
        "index (exact search is the anchor)",
        names.clone(),
        Axis::log("queries / s (log)"),
    );
    let mut recall = Panel::categories(
        "Recall@100 against exact search",
        "index",
        names,
        Axis::linear("recall@100"),
    );
    for (i, n) in sizes.iter().enumerate() {
        let label = format!("{} vectors", count(*n));
        let mut q = Series::new(label.as_str(), palette(i), Mark::Bar);
        let mut r = Series::new(label.as_str(), palette(i), Mark::Bar);
        for row in rows.iter().filter(|r| opt_num(r, "vectors") == Some(*n)) {
            let x = families
                .iter()
                .position(|f| *f == index_family(text(row, "index").unwrap_or("")))
                .unwrap_or(0) as f64;
            q.push(Point::new(x, num(row, "qps_all_threads")?));
            r.push(Point::new(x, num(row, "recall_at_100")?));
        }
        qps = qps.series(q);
        recall = recall.series(r);
    }
    let chosen: Vec<String> = v
        .get("chosen")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|p| {
                    Some(format!(
                        "{} → {}",
                        count(p.get(0)?.as_f64()?),
                        p.get(1)?.as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut notes = vec![format!(
        "{}-d clustered synthetic vectors, {} queries",
        num(v, "dim")?,
        num(v, "queries")?
    )];
    if !chosen.is_empty() {
        notes.push(format!("the index the feed uses: {}", chosen.join(", ")));
    }
    Ok(Figure {
        title: "Retrieval: approximate (IVF) vs exact search (Flat), FAISS".into(),
        machine: machine(v),
        panels: vec![qps, recall],
        notes,
    })
}

pub fn feed(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let mut names = Vec::new();
    let mut p50 = Series::new("first page p50", OURS_2, Mark::Bar);
    let mut p99 = Series::new("first page p99", OURS, Mark::Bar);
    let mut all99 = Series::new("all pages p99", GREY, Mark::Bar);
    let mut rps = Series::new("pages / s", OURS, Mark::Bar);
    for (i, r) in rows.iter().enumerate() {
        let x = i as f64;
        names.push(format!(
            "{} videos\n{}",
            count(num(r, "videos")?),
            text(r, "index")?
        ));
        let (a, b, c) = (
            num(r, "first_page_p50_ms")?,
            num(r, "first_page_p99_ms")?,
            num(r, "p99_ms")?,
        );
        p50.push(Point::new(x, a).text(format!("{a:.0}")));
        p99.push(Point::new(x, b).text(format!("{b:.0}")));
        all99.push(Point::new(x, c).text(format!("{c:.0}")));
        let q = num(r, "requests_per_sec")?;
        rps.push(Point::new(x, q).text(format!("{q:.0}")));
    }
    let latency = Panel::categories(
        "Feed page latency in the engine",
        "catalog size and index",
        names.clone(),
        Axis::linear("latency (ms)"),
    )
    .series(p50)
    .series(p99)
    .series(all99);
    let throughput = Panel::categories(
        "Pages served per second",
        "catalog size and index",
        names,
        Axis::linear("pages / s"),
    )
    .series(rps);
    let clients = rows
        .first()
        .and_then(|r| opt_num(r, "clients"))
        .unwrap_or(0.0);
    Ok(Figure {
        title: format!("For-you feed in the engine: {clients} concurrent clients, closed loop"),
        machine: machine(v),
        panels: vec![latency, throughput],
        notes: vec![text(v, "workload")?.to_owned()],
    })
}

/// Two builds of `feed` compared (`summary_medians`: a `before…` and an
/// `after…` object per set and catalog size; every run as a dot).
pub fn before_after(v: &Value) -> Result<Figure> {
    let summary = list(v, "summary_medians")?;
    let runs = v
        .get("runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut sets: Vec<&str> = Vec::new();
    let (mut before_key, mut after_key) = (String::from("before"), String::from("after"));
    for s in summary {
        let set = s.get("set").and_then(Value::as_str).unwrap_or("");
        if !sets.contains(&set) {
            sets.push(set);
        }
        if let Some(o) = s.as_object() {
            for k in o.iter().filter(|(_, x)| x.is_object()).map(|(k, _)| k) {
                if k.starts_with("before") {
                    before_key.clone_from(k);
                } else if k.starts_with("after") {
                    after_key.clone_from(k);
                }
            }
        }
    }
    let metrics = [
        ("first_page_p50_ms", "First page p50", "latency (ms)"),
        ("first_page_p99_ms", "First page p99", "latency (ms)"),
        ("requests_per_sec", "Pages served per second", "pages / s"),
    ];
    let mut names = Vec::new();
    for s in summary {
        let set = s.get("set").and_then(Value::as_str).unwrap_or("");
        let i = sets.iter().position(|x| *x == set).unwrap_or(0) + 1;
        names.push(format!("set {i}\n{} videos", count(num(s, "videos")?)));
    }
    let mut panels = Vec::new();
    for (key, title, unit) in metrics {
        let mut before = Series::new(before_key.as_str(), ANCHOR_2, Mark::Bar);
        let mut after = Series::new(after_key.as_str(), OURS, Mark::Bar);
        for (i, s) in summary.iter().enumerate() {
            let x = i as f64;
            let set = s.get("set").and_then(Value::as_str).unwrap_or("");
            let videos = opt_num(s, "videos");
            let dots = |binary: &str| -> Vec<f64> {
                runs.iter()
                    .filter(|r| {
                        r.get("set").and_then(Value::as_str).unwrap_or("") == set
                            && opt_num(r, "videos") == videos
                            && r.get("binary").and_then(Value::as_str) == Some(binary)
                    })
                    .filter_map(|r| opt_num(r, key))
                    .collect()
            };
            for (series, k) in [(&mut before, &before_key), (&mut after, &after_key)] {
                if let Some(m) = s.get(k.as_str()).and_then(|o| opt_num(o, key)) {
                    series.push(Point::new(x, m).runs(dots(k)).text(format!("{m:.0}")));
                }
            }
        }
        panels.push(
            Panel::categories(
                title,
                "set and catalog size",
                names.clone(),
                Axis::linear(unit),
            )
            .series(before)
            .series(after),
        );
    }
    let mut notes: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| format!("set {}: {s}", i + 1))
        .collect();
    notes.push(text(v, "workload")?.to_owned());
    Ok(Figure {
        title: format!("For-you feed in the engine, before vs after: {before_key} vs {after_key}"),
        machine: machine(v),
        panels,
        notes,
    })
}

/// `eval-feed`: hit rate and NDCG at 10 of the feed and of each baseline,
/// per protocol.
pub fn eval(v: &Value) -> Result<Figure> {
    let ranker = v.get("ranker").and_then(Value::as_str).unwrap_or("model");
    let mut panels = Vec::new();
    let mut notes = Vec::new();
    for p in list(v, "protocols")? {
        let protocol = text(p, "protocol")?;
        let methods = super::field(p, "methods")?
            .as_object()
            .ok_or_else(|| super::plot_error("`methods` is not an object"))?;
        // The feed first, then the baselines in the report's order.
        let mut order: Vec<&String> = methods.keys().filter(|k| k.starts_with("feed")).collect();
        order.extend(methods.keys().filter(|k| !k.starts_with("feed")));
        for (metric, label) in [("hr_at_10", "HR@10"), ("ndcg_at_10", "NDCG@10")] {
            let mut feed =
                Series::new(format!("appliance feed ({ranker} ranker)"), OURS, Mark::Bar);
            let mut formula = Series::new("appliance feed (formula ranker)", OURS_2, Mark::Bar);
            let mut base = Series::new("baselines", ANCHOR, Mark::Bar);
            for (i, m) in order.iter().enumerate() {
                let Some(value) = methods[m.as_str()]
                    .get("all")
                    .and_then(|a| opt_num(a, metric))
                else {
                    continue;
                };
                let pt = Point::new(i as f64, value).text(format!("{value:.3}"));
                match m.as_str() {
                    "feed" => feed.push(pt),
                    "feed_formula" => formula.push(pt),
                    _ => base.push(pt),
                }
            }
            panels.push(
                Panel::categories(
                    format!("{label}, {}", protocol.replace('_', " ")),
                    "method",
                    order.iter().map(|m| m.replace('_', "\n")).collect(),
                    Axis::linear(format!("{label} (all users)")),
                )
                .series(feed)
                .series(formula)
                .series(base),
            );
        }
        if let (Ok(strongest), Some(hr), Some(ndcg)) = (
            text(p, "strongest_baseline"),
            opt_num(p, "feed_hr_lift_over_strongest"),
            opt_num(p, "feed_ndcg_lift_over_strongest"),
        ) {
            notes.push(format!(
                "{protocol}: strongest baseline {strongest}; the feed's HR@10 ×{hr:.2}, NDCG@10 ×{ndcg:.2} of it"
            ));
        }
    }
    Ok(Figure {
        title: format!(
            "Feed offline evaluation: {} videos, {} watch events; the feed vs baselines",
            num(v, "videos")?,
            num(v, "events")?
        ),
        machine: machine(v),
        panels,
        notes,
    })
}
