//! `eval-feed`'s plot: one panel per protocol, HR@10 per cohort of
//! training history (and over all users), one bar per method, the feed's
//! bars first and darkest. A standalone SVG written by hand (no fonts to
//! measure, the same bytes for the same report).

use std::fmt::Write;

use inference::eval::{Report, COHORTS};

const PANEL_W: f64 = 620.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 60.0;
const GAP: f64 = 100.0;
/// Drawing order and colour of each method.
const METHODS: [(&str, &str); 7] = [
    ("feed", "#08306b"),
    ("feed_formula", "#4292c6"),
    ("popularity", "#d62728"),
    ("popularity_recent", "#ff9896"),
    ("item_knn", "#2ca02c"),
    ("ease", "#9467bd"),
    ("random", "#bdbdbd"),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG for `report`.
pub fn svg(report: &Report) -> String {
    let groups: Vec<&str> = std::iter::once("all").chain(COHORTS).collect();
    let panels = report.protocols.len().max(1) as f64;
    let width = LEFT + PANEL_W + 180.0;
    let height = TOP + panels * (PANEL_H + GAP);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="28" font-size="16">Feed vs baselines: HR@10 by training history ({} videos, {} events, ranker: {})</text>"##,
        report.videos,
        report.events,
        escape(report.ranker)
    );
    for (p, proto) in report.protocols.iter().enumerate() {
        let top = TOP + p as f64 * (PANEL_H + GAP);
        let max = proto
            .methods
            .values()
            .flat_map(|m| {
                std::iter::once(m.all.hr_at_10).chain(m.cohorts.values().map(|c| c.hr_at_10))
            })
            .fold(0.05f64, f64::max);
        let ymax = (max * 10.0).ceil() / 10.0;
        let y = |v: f64| top + PANEL_H - v / ymax * PANEL_H;
        let _ = write!(
            out,
            r##"<text x="{LEFT}" y="{}" font-size="14">{:?} — {} users; strongest baseline: {} (feed ×{:.2} on HR@10)</text>"##,
            top - 12.0,
            proto.protocol,
            proto.users,
            escape(proto.strongest_baseline),
            proto.feed_hr_lift_over_strongest
        );
        for k in 0..=5 {
            let v = ymax * f64::from(k) / 5.0;
            let (right, yv, lx, ly) = (LEFT + PANEL_W, y(v), LEFT - 6.0, y(v) + 4.0);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{right}" y1="{yv:.1}" y2="{yv:.1}" stroke="#e0e0e0"/><text x="{lx}" y="{ly:.1}" text-anchor="end">{v:.2}</text>"##
            );
        }
        let group_w = PANEL_W / groups.len() as f64;
        let bar_w = (group_w - 16.0) / METHODS.len() as f64;
        for (g, group) in groups.iter().enumerate() {
            let x0 = LEFT + g as f64 * group_w + 8.0;
            let users = if *group == "all" {
                proto.users
            } else {
                proto.users_per_cohort.get(group).copied().unwrap_or(0)
            };
            let (cx, ly) = (x0 + (group_w - 16.0) / 2.0, top + PANEL_H + 16.0);
            let what = if *group == "all" {
                "all users".to_owned()
            } else {
                format!("{} events", escape(group))
            };
            let _ = write!(
                out,
                r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{what}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{users} users</text>"##,
                ly + 14.0
            );
            for (m, (name, colour)) in METHODS.iter().enumerate() {
                let Some(result) = proto.methods.get(name) else {
                    continue;
                };
                let v = if *group == "all" {
                    result.all.hr_at_10
                } else {
                    result.cohorts.get(group).map_or(0.0, |c| c.hr_at_10)
                };
                let _ = write!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{name}: {v:.3}</title></rect>"##,
                    x0 + m as f64 * bar_w,
                    y(v),
                    (bar_w - 1.0).max(1.0),
                    top + PANEL_H - y(v)
                );
            }
        }
        let (bottom, right) = (top + PANEL_H, LEFT + PANEL_W);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{top}" y2="{bottom}" stroke="black"/><line x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="black"/>"##
        );
    }
    for (m, (name, colour)) in METHODS.iter().enumerate() {
        let ly = TOP + 10.0 + m as f64 * 20.0;
        let lx = LEFT + PANEL_W + 20.0;
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{name}</text>"##,
            lx + 18.0,
            ly + 10.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A log's shape: events per video and per user against their rank, both
/// axes logarithmic (a long tail is a falling straight-ish line).
pub fn curves_svg(log: &[inference::engine::Watch]) -> String {
    use std::collections::HashMap;
    let mut per_video: HashMap<&str, usize> = HashMap::new();
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for w in log {
        *per_video.entry(&w.video).or_default() += 1;
        *per_user.entry(&w.user).or_default() += 1;
    }
    let sorted = |m: HashMap<&str, usize>| {
        let mut v: Vec<usize> = m.into_values().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    };
    let series = [
        (
            "events per video (item popularity)",
            "#d62728",
            sorted(per_video),
        ),
        ("events per user (activity)", "#1f77b4", sorted(per_user)),
    ];
    let (w, h, left, top) = (560.0, 320.0, 70.0, 50.0);
    let max_rank = series.iter().map(|s| s.2.len()).max().unwrap_or(1).max(2) as f64;
    let max_count = series
        .iter()
        .filter_map(|s| s.2.first().copied())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let x = |rank: f64| left + rank.log10() / max_rank.log10() * w;
    let y = |count: f64| top + h - count.log10() / max_count.log10() * h;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="28" font-size="15">Rank vs events, log–log ({} events)</text>"##,
        left + w + 40.0,
        top + h + 60.0,
        log.len()
    );
    let mut decade = 1.0;
    while decade <= max_count {
        let yy = y(decade);
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{decade}</text>"##,
            left + w,
            left - 6.0,
            yy + 4.0
        );
        decade *= 10.0;
    }
    let mut decade = 1.0;
    while decade <= max_rank {
        let xx = x(decade);
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#e0e0e0"/><text x="{xx:.1}" y="{}" text-anchor="middle">{decade}</text>"##,
            top + h,
            top + h + 16.0
        );
        decade *= 10.0;
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle">rank</text>"##,
        left + w / 2.0,
        top + h + 36.0
    );
    for (i, (name, colour, counts)) in series.iter().enumerate() {
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(r, c)| format!("{:.1},{:.1}", x(r as f64 + 1.0), y(*c as f64)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><rect x="{}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{name}: {} of them, median {}</text>"##,
            points.join(" "),
            left + 20.0,
            top + h - 50.0 + i as f64 * 20.0,
            left + 38.0,
            top + h - 40.0 + i as f64 * 20.0,
            counts.len(),
            counts.get(counts.len() / 2).copied().unwrap_or(0)
        );
    }
    out.push_str("</svg>\n");
    out
}
