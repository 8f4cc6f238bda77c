//! The embed bench's plot: sentences/s per batch size, candle and PyTorch
//! side by side (medians; every round as a dot on its bar), the
//! candle/PyTorch ratio above each pair. A standalone SVG written by hand,
//! like the other benches' plots (no fonts to measure, the same bytes for
//! the same report).

use std::fmt::Write;

use super::EmbedReport;

const LEFT: f64 = 80.0;
const TOP: f64 = 70.0;
const PANEL_W: f64 = 560.0;
const PANEL_H: f64 = 300.0;
const CANDLE: &str = "#1f77b4";
const TORCH: &str = "#d62728";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round top for the y axis: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    let mag = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * mag)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * mag)
}

pub fn svg(report: &EmbedReport) -> String {
    let max = report
        .rows
        .iter()
        .flat_map(|r| r.candle_runs.iter().chain(&r.torch_runs))
        .fold(1.0f64, |a, b| a.max(*b));
    let ymax = nice_max(max * 1.1);
    let y = |v: f64| TOP + PANEL_H - v / ymax * PANEL_H;
    let (width, height) = (LEFT + PANEL_W + 170.0, TOP + PANEL_H + 90.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="26" font-size="16">Sentence embeddings per second, all-MiniLM-L6-v2 on the CPU</text><text x="{LEFT}" y="46" fill="#555">{}</text>"##,
        escape(&report.machine.description),
    );
    for k in 0..=5 {
        let v = ymax * f64::from(k) / 5.0;
        let (right, yv) = (LEFT + PANEL_W, y(v));
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{right}" y1="{yv:.1}" y2="{yv:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            LEFT - 6.0,
            yv + 4.0
        );
    }
    let group_w = PANEL_W / report.rows.len().max(1) as f64;
    let bar_w = (group_w - 30.0) / 2.0;
    for (g, row) in report.rows.iter().enumerate() {
        let x0 = LEFT + g as f64 * group_w + 15.0;
        let bars = [
            (
                "candle",
                CANDLE,
                Some(row.candle_sentences_per_sec),
                &row.candle_runs,
            ),
            (
                "PyTorch",
                TORCH,
                row.torch_sentences_per_sec,
                &row.torch_runs,
            ),
        ];
        for (b, (name, colour, median, runs)) in bars.into_iter().enumerate() {
            let Some(v) = median else { continue };
            let x = x0 + b as f64 * bar_w;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{name}, batch {}: {v:.1}/s</title></rect>"##,
                y(v),
                bar_w - 2.0,
                TOP + PANEL_H - y(v),
                row.batch
            );
            for r in runs {
                let _ = write!(
                    out,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="white" stroke="black"/>"##,
                    x + bar_w / 2.0 - 1.0,
                    y(*r)
                );
            }
        }
        let cx = x0 + bar_w;
        let _ = write!(
            out,
            r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">batch {}</text>"##,
            TOP + PANEL_H + 18.0,
            row.batch
        );
        if let Some(ratio) = row.candle_over_torch {
            let top = row
                .candle_sentences_per_sec
                .max(row.torch_sentences_per_sec.unwrap_or(0.0));
            let _ = write!(
                out,
                r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">×{ratio:.2}</text>"##,
                y(top) - 8.0
            );
        }
    }
    let (bottom, right) = (TOP + PANEL_H, LEFT + PANEL_W);
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="black"/><line x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="black"/><text x="20" y="{:.1}" transform="rotate(-90 20 {:.1})" text-anchor="middle">sentences / s</text>"##,
        TOP + PANEL_H / 2.0,
        TOP + PANEL_H / 2.0
    );
    let torch_label = match &report.torch {
        Some(t) => format!(
            "PyTorch {} (sentence-transformers {}, {} threads)",
            t.torch, t.sentence_transformers, t.threads
        ),
        None => "PyTorch: not run (see torch_missing)".to_string(),
    };
    let legend = [
        ("candle (appliance)", CANDLE),
        (torch_label.as_str(), TORCH),
    ];
    for (i, (name, colour)) in legend.iter().enumerate() {
        let (lx, ly) = (LEFT + 10.0, height - 52.0 + i as f64 * 18.0);
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"##,
            lx + 18.0,
            ly + 10.0,
            escape(name)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" fill="#555">×: candle ÷ PyTorch; bars: median of {} alternating rounds (dots) over {} texts</text>"##,
        LEFT + 10.0,
        height - 6.0,
        report.rounds,
        report.texts
    );
    out.push_str("</svg>\n");
    out
}
