//! The live bench's plot, as a standalone SVG written by hand: channels vs
//! frames/s taken in (left) and vs latency (right; p50 solid, p95 dashed),
//! one colour per contender; a filled marker is a sustained row, a hollow
//! one is not. Dashed grey lines: the real-time floor (97 % of 30 fps) and
//! the latency p95 ceiling.

use std::fmt::Write;

use super::{LiveReport, Row, FPS, LATENCY_P95_LIMIT_MS};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 456.0;
const TOP: f64 = 76.0;
const PANEL_W: f64 = 390.0;
const PANEL_H: f64 = 290.0;
const LEFTS: [f64; 2] = [80.0, 570.0];
const COLOURS: [(&str, &str); 2] = [("appliance", "#1f77b4"), ("ffmpeg", "#d62728")];

/// Grid lines for `lo..hi`: a 1-2-5 step and the range widened to it.
fn ticks(lo: f64, hi: f64) -> (f64, f64, f64) {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel {
    left: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * PANEL_W
    }

    fn py(&self, y: f64) -> f64 {
        TOP + PANEL_H - (y - self.y.0) / (self.y.1 - self.y.0) * PANEL_H
    }
}

/// Axes, grid and titles of one panel; returns it for placing points.
fn axes(
    out: &mut String,
    left: f64,
    channels: usize,
    (lo, hi): (f64, f64),
    title: &str,
    y_title: &str,
) -> Panel {
    let (lo, hi, step) = ticks(lo, hi);
    let p = Panel {
        left,
        x: (0.5, channels as f64 + 0.5),
        y: (lo, hi),
    };
    let (right, bottom) = (left + PANEL_W, TOP + PANEL_H);
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"##,
        left + PANEL_W / 2.0,
        TOP - 14.0,
        escape(title)
    );
    let mut y = lo;
    while y <= hi + step / 2.0 {
        let py = p.py(y);
        let _ = writeln!(
            out,
            r##"<line x1="{left:.1}" y1="{py:.1}" x2="{right:.1}" y2="{py:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            left - 6.0,
            py + 4.0,
            label(y, step)
        );
        y += step;
    }
    for n in 1..=channels {
        let px = p.px(n as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{bottom:.1}" x2="{px:.1}" y2="{:.1}" stroke="#888"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" font-size="11">{n}</text>"##,
            bottom + 4.0,
            bottom + 17.0
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left:.1}" y="{TOP:.1}" width="{PANEL_W:.1}" height="{PANEL_H:.1}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">channels</text>"##,
        left + PANEL_W / 2.0,
        bottom + 34.0
    );
    let _ = writeln!(
        out,
        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" font-size="12">{}</text>"##,
        left - 52.0,
        TOP + PANEL_H / 2.0,
        escape(y_title)
    );
    p
}

/// A dashed grey reference line across a panel, labelled under its left
/// end.
fn reference(out: &mut String, p: &Panel, y: f64, text: &str) {
    let py = p.py(y);
    let _ = writeln!(
        out,
        r##"<line x1="{:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#777" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
        p.left,
        p.left + PANEL_W,
        p.left + 6.0,
        py + 14.0,
        escape(text)
    );
}

/// One contender's values as a line with markers (filled when sustained).
fn series(
    out: &mut String,
    p: &Panel,
    rows: &[&Row],
    value: impl Fn(&Row) -> f64,
    colour: &str,
    dashed: bool,
) {
    let points: Vec<String> = rows
        .iter()
        .map(|r| format!("{:.1},{:.1}", p.px(r.channels as f64), p.py(value(r))))
        .collect();
    let dash = if dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    };
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
        points.join(" ")
    );
    for r in rows {
        let fill = if r.sustained { colour } else { "white" };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{fill}" stroke="{colour}" stroke-width="1.5"/>"#,
            p.px(r.channels as f64),
            p.py(value(r))
        );
    }
}

/// The report's plot as an SVG document.
pub fn svg(report: &LiveReport) -> String {
    let channels = report
        .rows
        .iter()
        .map(|r| r.channels)
        .max()
        .unwrap_or(1)
        .max(1);
    let by = |name: &str| -> Vec<&Row> {
        let mut rows: Vec<&Row> = report.rows.iter().filter(|r| r.contender == name).collect();
        rows.sort_by_key(|r| r.channels);
        rows
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"##
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{:.1}" y="20" text-anchor="middle" font-size="15" font-weight="bold">Live channels per box: the appliance vs ffmpeg (x264 {})</text><text x="{:.1}" y="38" text-anchor="middle" font-size="12" fill="#555">{}</text>"##,
        WIDTH / 2.0,
        escape(&report.preset),
        WIDTH / 2.0,
        escape(&report.ladder)
    );

    let fps_max = report.rows.iter().map(|r| r.fps_in).fold(FPS, f64::max) * 1.1;
    let fps = axes(
        &mut out,
        LEFTS[0],
        channels,
        (0.0, fps_max),
        "Frames/s taken in, per channel",
        "fps in (mean per channel)",
    );
    reference(&mut out, &fps, 0.97 * FPS, "97 % of 30 fps");

    let values = report
        .rows
        .iter()
        .flat_map(|r| [r.latency_p50_ms, r.latency_p95_ms]);
    let lat_lo = values.clone().fold(0.0, f64::min);
    let lat_hi = values.fold(LATENCY_P95_LIMIT_MS, f64::max) * 1.05;
    let latency = axes(
        &mut out,
        LEFTS[1],
        channels,
        (lat_lo, lat_hi),
        "Live latency (p50 solid, p95 dashed)",
        "ms after the segment's last frame",
    );
    reference(
        &mut out,
        &latency,
        LATENCY_P95_LIMIT_MS,
        "p95 limit: 2 × target duration",
    );

    for (name, colour) in COLOURS {
        let rows = by(name);
        if rows.is_empty() {
            continue;
        }
        series(&mut out, &fps, &rows, |r| r.fps_in, colour, false);
        series(
            &mut out,
            &latency,
            &rows,
            |r| r.latency_p95_ms,
            colour,
            true,
        );
        series(
            &mut out,
            &latency,
            &rows,
            |r| r.latency_p50_ms,
            colour,
            false,
        );
    }

    let legend_y = HEIGHT - 22.0;
    let mut x = LEFTS[0];
    for (name, colour) in COLOURS {
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="2"/><circle cx="{:.1}" cy="{legend_y:.1}" r="3.5" fill="{colour}"/><text x="{:.1}" y="{:.1}">{name}</text>"##,
            x + 28.0,
            x + 14.0,
            x + 34.0,
            legend_y + 4.0
        );
        x += 130.0;
    }
    let _ = writeln!(
        out,
        r##"<text x="{x:.1}" y="{:.1}" font-size="12" fill="#555">filled: sustained; hollow: not sustained</text>"##,
        legend_y + 4.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Machine;
    use std::collections::HashMap;

    fn row(contender: &str, channels: usize, p50: f64, sustained: bool) -> Row {
        Row {
            contender: contender.into(),
            channels,
            sustained,
            fps_in: 29.9,
            dropped: 0,
            segments: 8,
            latency_p50_ms: p50,
            latency_p95_ms: p50 + 10.0,
        }
    }

    fn report(rows: Vec<Row>) -> LiveReport {
        LiveReport {
            latency_basis: HashMap::new(),
            machine: Machine {
                description: String::new(),
                cpu: String::new(),
                logical_cores: 2,
                memory_gib: 1.0,
                os: String::new(),
                ffmpeg: String::new(),
                gpus: Vec::new(),
            },
            source: "test".into(),
            ladder: "720p/480p/360p <&>".into(),
            preset: "veryfast".into(),
            sustained_when: String::new(),
            latency_p95_limit_ms: LATENCY_P95_LIMIT_MS,
            rows,
            max_channels: HashMap::new(),
        }
    }

    #[test]
    fn the_plot_has_a_line_per_contender_and_measure() {
        let svg = svg(&report(vec![
            row("appliance", 1, 100.0, true),
            row("ffmpeg", 1, -750.0, true),
            row("appliance", 2, 110.0, true),
            row("ffmpeg", 2, -380.0, false),
        ]));
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        // fps, latency p95 and p50 for each of the two contenders.
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(
            svg.contains(r##"fill="white" stroke="#d62728""##),
            "hollow marker"
        );
        assert!(svg.contains("&lt;&amp;&gt;") && !svg.contains("<&>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn the_plot_of_no_rows_is_still_a_document() {
        let svg = svg(&report(Vec::new()));
        assert!(svg.contains("</svg>") && !svg.contains("NaN"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 33.0), (0.0, 40.0, 10.0));
        assert_eq!(ticks(-760.0, 4200.0), (-1000.0, 5000.0, 1000.0));
    }
}
