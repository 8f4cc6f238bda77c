//! The plot of `appliance bench search`: per kind (users, sounds,
//! hashtags), the p99 latency of each query type for the box's tantivy
//! index and for the SQLite anchor on the same data and queries, on a log
//! axis with the goal; the build time and size of both in the notes.

use serde_json::Value;

use super::chart::{Axis, Figure, Mark, Panel, Point, Series, ANCHOR, GREY, OURS};
use super::{count, list, machine, num, opt_num, text};
use crate::Result;

pub fn search(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let goal = opt_num(v, "goal_p99_ms_search");
    let mut panels = Vec::new();
    for s in list(v, "summary")? {
        let kind = text(s, "kind")?;
        let mut types: Vec<&str> = Vec::new();
        for r in rows
            .iter()
            .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        {
            let t = text(r, "query_type")?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        let mut ours = Series::new("tantivy index (the box)", OURS, Mark::Bar);
        let mut theirs = Series::new("SQLite (B-tree prefix range / FTS5)", ANCHOR, Mark::Bar);
        let mut names = Vec::new();
        for (i, t) in types.iter().enumerate() {
            let x = i as f64;
            let find = |engine: &str| {
                rows.iter().find(|r| {
                    r.get("kind").and_then(Value::as_str) == Some(kind)
                        && r.get("query_type").and_then(Value::as_str) == Some(*t)
                        && r.get("engine").and_then(Value::as_str) == Some(engine)
                })
            };
            let (Some(a), Some(b)) = (find("tantivy"), find("sqlite")) else {
                continue;
            };
            let (pa, pb) = (num(a, "p99_ms")?, num(b, "p99_ms")?);
            names.push(format!("{t}\n×{:.1}", pb / pa.max(1e-9)));
            ours.push(Point::new(x, pa).text(ms(pa)));
            theirs.push(Point::new(x, pb).text(ms(pb)));
        }
        let mut panel = Panel::categories(
            format!(
                "{kind}: p99 {} vs {} ms",
                ms(num(s, "tantivy_p99_ms")?),
                ms(num(s, "sqlite_p99_ms")?)
            ),
            "query type (SQLite p99 ÷ index p99)",
            names,
            Axis::log("p99 latency, ms (log)"),
        )
        .series(ours)
        .series(theirs);
        if let Some(g) = goal {
            panel = panel.guide(format!("goal: p99 ≤ {g} ms"), g, GREY);
        }
        panels.push(panel);
    }
    let mut notes = vec![
        text(v, "workload")?.to_owned(),
        text(v, "anchor")?.to_owned(),
    ];
    for b in list(v, "build")? {
        notes.push(format!(
            "{}: index built in {:.0} s, {}B on disk; SQLite in {:.0} s, {}B",
            text(b, "kind")?,
            num(b, "tantivy_build_s")?,
            count(num(b, "tantivy_bytes")?),
            num(b, "sqlite_build_s")?,
            count(num(b, "sqlite_bytes")?)
        ));
    }
    Ok(Figure {
        title: format!(
            "Search at {} entities per kind: the box's tantivy index vs SQLite, same data and queries",
            count(num(v, "entities_per_kind")?)
        ),
        machine: machine(v),
        panels,
        notes,
    })
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.2}")
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}
