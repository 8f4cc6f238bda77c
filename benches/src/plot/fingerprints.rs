//! The plot of `appliance bench fingerprints`: per degraded-query kind,
//! the sounds index's p50/p99 lookup latency (index candidates + their
//! verification) beside a brute-force `match_fingerprints` scan of every
//! fingerprint (log axis), and recall@1 per kind; memory in the notes.

use serde_json::Value;

use super::chart::{Axis, Figure, Mark, Panel, Point, Series, ANCHOR, OURS, OURS_2};
use super::{count, list, machine, num, text};
use crate::Result;

pub fn fingerprints(v: &Value) -> Result<Figure> {
    let variants = list(v, "variants")?;
    let scan = num(v, "scan_ms_per_lookup")?;
    let mut names = Vec::new();
    let mut p50 = Series::new("index p50", OURS, Mark::Bar);
    let mut p99 = Series::new("index p99", OURS_2, Mark::Bar);
    let mut brute = Series::new("brute-force scan (extrapolated)", ANCHOR, Mark::Bar);
    let mut recall = Series::new("index recall@1", OURS, Mark::Bar);
    for (i, r) in variants.iter().enumerate() {
        let x = i as f64;
        names.push(text(r, "name")?.to_owned());
        let (a, b) = (num(r, "p50_ms")?, num(r, "p99_ms")?);
        p50.push(Point::new(x, a).text(format!("{a:.2}")));
        p99.push(Point::new(x, b).text(format!("{b:.2}")));
        brute.push(Point::new(x, scan).text(format!("{scan:.0}")));
        let rc = num(r, "recall_at_1")?;
        recall.push(Point::new(x, rc).text(format!("{rc:.2}")));
    }
    let latency = Panel::categories(
        format!(
            "lookup at {}: p50 {:.2} ms, p99 {:.2} ms; scan {:.0} ms (×{:.0})",
            count(num(v, "sounds")?),
            num(v, "lookup_p50_ms")?,
            num(v, "lookup_p99_ms")?,
            scan,
            num(v, "speedup_p50")?
        ),
        "degraded query",
        names.clone(),
        Axis::log("latency per lookup, ms (log)"),
    )
    .series(p50)
    .series(p99)
    .series(brute);
    let recall = Panel::categories(
        "recall@1 of the degraded songs",
        "degraded query",
        names,
        Axis::linear("recall@1"),
    )
    .series(recall);
    Ok(Figure {
        title: format!(
            "Audio fingerprint lookups among {} sounds: inverted index vs brute-force match_fingerprints",
            count(num(v, "sounds")?)
        ),
        machine: machine(v),
        panels: vec![latency, recall],
        notes: vec![
            format!(
                "index: {:.0} MB ({:.0} B per sound; the fingerprints themselves: {:.0} MB), built in {:.1} s; process RSS {:.0} MB",
                num(v, "index_mb")?,
                num(v, "index_bytes_per_sound")?,
                num(v, "raw_fingerprints_mb")?,
                num(v, "index_build_secs")?,
                num(v, "process_rss_mb")?
            ),
            format!(
                "scan: {:.1} µs per fingerprint over a sample of {}, recall@1 {:.2}",
                num(v, "scan_us_per_fingerprint")?,
                count(num(v, "scan_sample")?),
                num(v, "scan_recall_at_1")?
            ),
        ],
    })
}
