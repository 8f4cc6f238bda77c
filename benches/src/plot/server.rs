//! Plots of the benches that run the server (`appliance::cli::bench_*`):
//! `publish` (vs the ffmpeg CLI), `origin` (vs nginx), `feed --http` (vs
//! the release before, and the goal) and `ingest` (vs the goals and the
//! report before).

use serde_json::Value;

use super::chart::{
    palette, Axis, Figure, Mark, Panel, Point, Series, ANCHOR, ANCHOR_2, GREY, OURS, OURS_2,
};
use super::{count, list, machine, num, opt_num, text};
use crate::Result;

pub fn publish(v: &Value) -> Result<Figure> {
    let mut names = Vec::new();
    let mut first = Series::new("appliance: first playable", OURS_2, Mark::Bar);
    let mut full = Series::new("appliance: whole ladder", OURS, Mark::Bar);
    let mut ffmpeg = Series::new("ffmpeg CLI: whole ladder", ANCHOR, Mark::Bar);
    for (i, r) in list(v, "rows")?.iter().enumerate() {
        let x = i as f64;
        let speedup = opt_num(r, "full_ladder_speedup")
            .map_or(String::new(), |s| format!("\nwhole ×{s:.2} faster"));
        names.push(format!(
            "{}\n{:.0} MB{speedup}",
            text(r, "input")?,
            num(r, "megabytes")?
        ));
        for (series, key) in [
            (&mut first, "first_playable_s"),
            (&mut full, "full_ladder_s"),
            (&mut ffmpeg, "ffmpeg_full_ladder_s"),
        ] {
            if let Some(s) = opt_num(r, key) {
                series.push(Point::new(x, s).text(if s < 10.0 {
                    format!("{s:.2}")
                } else {
                    format!("{s:.0}")
                }));
            }
        }
    }
    let mut panel = Panel::categories(
        "Time from `complete` to playable",
        "upload (size; the appliance's whole ladder vs ffmpeg's)",
        names,
        Axis::log("seconds (log)"),
    )
    .series(first)
    .series(full)
    .series(ffmpeg);
    if let Some(goal) = opt_num(v, "goal_first_playable_s") {
        panel = panel.guide(format!("goal: first playable ≤ {goal} s"), goal, OURS_2);
    }
    Ok(Figure {
        title: "Publishing an upload: appliance (first playable, whole ladder) vs the ffmpeg CLI"
            .into(),
        machine: machine(v),
        panels: vec![panel],
        notes: vec![text(v, "workload")?.to_owned()],
    })
}

pub fn origin(v: &Value) -> Result<Figure> {
    let summary = list(v, "summary")?;
    let mut targets: Vec<&str> = Vec::new();
    for s in summary {
        let t = text(s, "target")?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let nginx = v
        .get("nginx")
        .and_then(Value::as_str)
        .map_or("nginx".to_owned(), |n| {
            n.trim_start_matches("nginx version: ").to_owned()
        });
    let mut panels = Vec::new();
    for t in targets {
        let mut names = Vec::new();
        let mut ours = Series::new("appliance origin", OURS, Mark::Bar);
        let mut theirs = Series::new(format!("{nginx} (static, sendfile)"), ANCHOR, Mark::Bar);
        for (i, s) in summary
            .iter()
            .filter(|s| s.get("target").and_then(Value::as_str) == Some(t))
            .enumerate()
        {
            let x = i as f64;
            let (a, b) = (
                num(s, "appliance_requests_per_sec")?,
                num(s, "nginx_requests_per_sec")?,
            );
            names.push(format!(
                "{} connections\n×{:.2} (goal ≥ {})\np99 {:.0} / {:.0} ms",
                num(s, "connections")?,
                a / b.max(1e-9),
                opt_num(s, "goal_ratio").unwrap_or(1.0),
                opt_num(s, "appliance_p99_ms").unwrap_or(f64::NAN),
                opt_num(s, "nginx_p99_ms").unwrap_or(f64::NAN)
            ));
            ours.push(Point::new(x, a).text(format!("{a:.0}")));
            theirs.push(Point::new(x, b).text(format!("{b:.0}")));
        }
        panels.push(
            Panel::categories(
                format!("GET {t}"),
                "wrk connections (appliance ÷ nginx; p99 appliance / nginx)",
                names,
                Axis::linear("requests / s (median of rounds)"),
            )
            .series(ours)
            .series(theirs),
        );
    }
    Ok(Figure {
        title: "HLS origin: appliance vs nginx serving the same files".into(),
        machine: machine(v),
        panels,
        notes: vec![text(v, "workload")?.to_owned()],
    })
}

/// p99 (solid) and first-page p99 (dashed) by offered rate per catalog
/// size, with the goal; and, when the report keeps the release before, the
/// largest catalog's p99 before and after.
pub fn feed_http(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let mut rates: Vec<f64> = rows
        .iter()
        .filter_map(|r| opt_num(r, "offered_rps"))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let names: Vec<String> = rates.iter().map(|r| format!("{r}/s")).collect();
    let slot = |rate: f64| rates.iter().position(|r| *r == rate).unwrap_or(0) as f64;
    let mut sizes: Vec<f64> = Vec::new();
    for r in rows {
        let n = num(r, "videos")?;
        if !sizes.contains(&n) {
            sizes.push(n);
        }
    }
    let mut latency = Panel::categories(
        "p99 latency by offered rate (solid: all pages, dashed: first pages)",
        "offered page requests / s (open loop)",
        names.clone(),
        Axis::log("latency p99 (ms, log)"),
    );
    if let Some(goal) = opt_num(v, "goal_p99_ms_at_1m") {
        latency = latency.guide(format!("goal: p99 ≤ {goal} ms at 1M videos"), goal, GREY);
    }
    for (i, n) in sizes.iter().enumerate() {
        let mut all = Series::new(
            format!("{} videos, all pages", count(*n)),
            palette(i),
            Mark::Line,
        );
        let mut first = Series::new(
            format!("{} videos, first pages", count(*n)),
            palette(i),
            Mark::Dashed,
        );
        for r in rows.iter().filter(|r| opt_num(r, "videos") == Some(*n)) {
            let x = slot(num(r, "offered_rps")?);
            all.push(Point::new(x, num(r, "p99_ms")?));
            first.push(Point::new(x, num(r, "first_page_p99_ms")?));
        }
        latency = latency.series(all).series(first);
    }
    let largest = sizes.iter().copied().fold(0.0, f64::max);
    let before_rows = v
        .get("before")
        .and_then(|b| b.get("rows"))
        .and_then(Value::as_array)
        .filter(|b| !b.is_empty());
    let second = match before_rows {
        Some(before) => {
            let server = v
                .get("before")
                .and_then(|b| b.get("server"))
                .and_then(Value::as_str)
                .unwrap_or("the release before");
            let short = server.split(" (").next().unwrap_or(server);
            let mut then = Series::new(format!("before: {short}"), ANCHOR_2, Mark::Bar);
            let mut now = Series::new("this release", OURS, Mark::Bar);
            for (series, rows) in [(&mut then, before.as_slice()), (&mut now, rows)] {
                for r in rows
                    .iter()
                    .filter(|r| opt_num(r, "videos") == Some(largest))
                {
                    let p = num(r, "p99_ms")?;
                    series
                        .push(Point::new(slot(num(r, "offered_rps")?), p).text(format!("{p:.0}")));
                }
            }
            Panel::categories(
                format!("{} videos: p99 before vs after", count(largest)),
                "offered page requests / s",
                names,
                Axis::log("latency p99, all pages (ms, log)"),
            )
            .series(then)
            .series(now)
        }
        None => {
            let mut cpu = Series::new("server CPU per page", OURS, Mark::Bar);
            for r in rows
                .iter()
                .filter(|r| opt_num(r, "videos") == Some(largest))
            {
                if let Some(c) = opt_num(r, "server_cpu_ms_per_page") {
                    cpu.push(Point::new(slot(num(r, "offered_rps")?), c).text(format!("{c:.2}")));
                }
            }
            Panel::categories(
                format!("{} videos: server CPU per page", count(largest)),
                "offered page requests / s",
                names,
                Axis::linear("CPU (ms / page)"),
            )
            .series(cpu)
        }
    };
    let mut notes = vec![text(v, "workload")?.to_owned()];
    if let Some(server) = v
        .get("before")
        .and_then(|b| b.get("server"))
        .and_then(Value::as_str)
    {
        notes.push(format!("before: {server}"));
    }
    Ok(Figure {
        title: "For-you pages over HTTP through the server, open loop".into(),
        machine: machine(v),
        panels: vec![latency, second],
        notes,
    })
}

fn run_label(r: &Value) -> String {
    let secs = opt_num(r, "secs").unwrap_or(0.0);
    match opt_num(r, "target_events_per_sec") {
        Some(rate) => format!("paced {}/s × {secs:.0} s", count(rate)),
        None => format!(
            "{} × {secs:.0} s",
            r.get("mode").and_then(Value::as_str).unwrap_or("burst")
        ),
    }
}

/// The accept → queryable lag over time per run (the shipping lag dashed)
/// with the lag goal, and events/s accepted per run against the goal and
/// the report before.
pub fn ingest(v: &Value) -> Result<Figure> {
    let runs = list(v, "runs")?;
    let goal_lag = num(v, "goal_lag_ms")? / 1e3;
    let mut lag = Panel::values(
        "Accept → queryable lag (solid); oldest unshipped event (dashed)",
        Axis::linear("time since the run began (s)"),
        Axis::linear("lag (s)"),
    )
    .guide(format!("goal: ≤ {goal_lag} s"), goal_lag, GREY);
    let mut names = Vec::new();
    let mut accepted = Series::new("accepted (this report)", OURS, Mark::Bar);
    let mut offered = Series::new("offered (paced runs)", OURS_2, Mark::Bar);
    let mut before = Series::new("before (the report it replaced)", ANCHOR_2, Mark::Bar);
    for (i, r) in runs.iter().enumerate() {
        let label = run_label(r);
        // Not the bars' colours (blue, green, orange): runs are another thing.
        let mut q = Series::new(label.as_str(), palette(i + 3), Mark::Line);
        let mut s = Series::new(format!("{label}, shipping"), palette(i + 3), Mark::Dashed);
        for p in list(r, "series")? {
            let t = num(p, "t_ms")? / 1e3;
            q.push(Point::new(t, num(p, "queryable_lag_ms")? / 1e3));
            s.push(Point::new(t, num(p, "spool_lag_ms")? / 1e3));
        }
        lag = lag.series(q).series(s);
        let x = i as f64;
        let e = num(r, "events_per_sec")?;
        names.push(format!(
            "{label}\nlag max {:.1} s, drain {:.1} s",
            opt_num(r, "max_queryable_lag_ms").unwrap_or(0.0) / 1e3,
            opt_num(r, "drain_after_load_ms").unwrap_or(0.0) / 1e3
        ));
        accepted.push(Point::new(x, e).text(count(e)));
        if let Some(t) = opt_num(r, "target_events_per_sec") {
            offered.push(Point::new(x, t).text(count(t)));
        }
    }
    // The report before keeps its burst's numbers at the top level.
    if let (Some(b), Some(x)) = (
        v.get("before").filter(|b| b.is_object()),
        runs.iter()
            .position(|r| r.get("mode").and_then(Value::as_str) == Some("burst")),
    ) {
        if let Some(e) = opt_num(b, "events_per_sec") {
            before.push(Point::new(x as f64, e).text(count(e)));
        }
    }
    let mut rate = Panel::categories(
        "Watch events accepted per second over HTTP",
        "run",
        names,
        Axis::linear("events / s"),
    )
    .series(accepted)
    .series(offered)
    .series(before);
    if let Some(goal) = opt_num(v, "goal_events_per_sec") {
        rate = rate.guide(format!("goal: {}/s", count(goal)), goal, GREY);
    }
    Ok(Figure {
        title: format!(
            "Engagement ingest: {} analytics + {} hot store",
            text(v, "analytics")?,
            text(v, "hot")?
        ),
        machine: machine(v),
        panels: vec![lag, rate],
        notes: vec![text(v, "workload")?.to_owned()],
    })
}
