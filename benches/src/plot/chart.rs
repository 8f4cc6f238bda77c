//! The one chart every bench draws with: a title naming the machine, one or
//! more panels (bars by category, or lines over a numeric x, each axis
//! linear or log, with reference lines such as a goal), a legend and notes.
//! Written as a standalone SVG whose text is DejaVu Sans (embedded for the
//! PNG, see `super::png`), so the same report always gives the same bytes.

use std::fmt::Write;

use super::axis::Map;

/// The appliance's series.
pub const OURS: &str = "#1f77b4";
/// A second series of ours (e.g. the first playable rung).
pub const OURS_2: &str = "#2ca02c";
/// The anchor it is compared with (ffmpeg, nginx, PyTorch, a baseline).
pub const ANCHOR: &str = "#d62728";
/// A second anchor, or a result from before a change.
pub const ANCHOR_2: &str = "#ff7f0e";
pub const GREY: &str = "#7f7f7f";
/// Colours for series that are neither ours nor an anchor (catalog sizes,
/// runs), in order.
pub const PALETTE: [&str; 7] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The n-th colour of [`PALETTE`], cycling.
pub fn palette(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Bar,
    Line,
    Dashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// One value: `x` is a category's index on a categorical panel.
#[derive(Debug, Clone)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Every run behind a median, drawn as dots on its bar.
    pub runs: Vec<f64>,
    /// Written over the bar or point.
    pub text: Option<String>,
    /// Drawn hollow (e.g. a load not sustained).
    pub hollow: bool,
}

impl Point {
    pub fn new(x: f64, y: f64) -> Self {
        Self {
            x,
            y,
            runs: Vec::new(),
            text: None,
            hollow: false,
        }
    }

    pub fn runs(mut self, runs: Vec<f64>) -> Self {
        self.runs = runs;
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn hollow(mut self, hollow: bool) -> Self {
        self.hollow = hollow;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    pub mark: Mark,
    pub points: Vec<Point>,
}

impl Series {
    pub fn new(label: impl Into<String>, colour: &'static str, mark: Mark) -> Self {
        Self {
            label: label.into(),
            colour,
            mark,
            points: Vec::new(),
        }
    }

    pub fn point(mut self, p: Point) -> Self {
        self.points.push(p);
        self
    }

    pub fn push(&mut self, p: Point) {
        self.points.push(p);
    }
}

#[derive(Debug, Clone)]
pub struct Axis {
    /// With the unit, e.g. "latency p99 (ms)".
    pub label: String,
    pub scale: Scale,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Linear,
        }
    }

    pub fn log(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Log,
        }
    }
}

/// A horizontal reference line (a goal, a limit), labelled on the plot.
#[derive(Debug, Clone)]
pub struct Guide {
    pub label: String,
    pub y: f64,
    pub colour: &'static str,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x: Axis,
    /// Some: the x axis is these categories (`Point::x` is the index; a
    /// `\n` breaks a name over lines).
    pub categories: Option<Vec<String>>,
    pub y: Axis,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
}

impl Panel {
    /// A panel whose x axis is categories.
    pub fn categories(title: impl Into<String>, x: &str, names: Vec<String>, y: Axis) -> Self {
        Self {
            title: title.into(),
            x: Axis::linear(x),
            categories: Some(names),
            y,
            series: Vec::new(),
            guides: Vec::new(),
        }
    }

    /// A panel whose x axis is numeric.
    pub fn values(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            x,
            categories: None,
            y,
            series: Vec::new(),
            guides: Vec::new(),
        }
    }

    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    pub fn guide(mut self, label: impl Into<String>, y: f64, colour: &'static str) -> Self {
        self.guides.push(Guide {
            label: label.into(),
            y,
            colour,
        });
        self
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    /// The machine the result was measured on.
    pub machine: String,
    pub panels: Vec<Panel>,
    /// Lines under the legend.
    pub notes: Vec<String>,
}

const HEADER: f64 = 70.0;
const PANEL_TOP: f64 = 26.0;
const PANEL_LEFT: f64 = 84.0;
const PANEL_RIGHT: f64 = 18.0;
/// Under the plot: tick labels (one line, or one per line of the longest
/// category name) and the axis label.
fn panel_bottom(lines: usize) -> f64 {
    36.0 + 13.0 * lines as f64
}
const LINE: f64 = 18.0;
/// A white outline under text drawn over data, so lines never hide it.
const HALO: &str =
    r#"stroke="white" stroke-width="3" stroke-linejoin="round" paint-order="stroke""#;
/// Lines with more points than this are drawn without markers.
const MARKERS_UP_TO: usize = 12;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About how wide `s` is in DejaVu Sans at `size` px (a little over, so
/// what is laid out by it never overlaps).
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' | '(' | ')' => 0.36,
            'f' | 'r' | 't' | 'I' | '-' | '/' => 0.45,
            'm' | 'w' | 'M' | 'W' | '%' | '×' | '—' => 0.95,
            'A'..='Z' => 0.72,
            _ => 0.64,
        })
        .sum::<f64>()
        * size
}

/// `s` broken at spaces into lines no wider than `width` px at `size`.
pub fn wrap(s: &str, width: f64, size: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split(' ') {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line} {word}"), size) <= width => {
                line.push(' ');
                line.push_str(word);
            }
            Some(_) | None => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A number as a short label: 1.5k, 20M, 0.25, 1200.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (d, suffix) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    let s = if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{suffix}")
}

struct Layout {
    width: f64,
    cols: usize,
    cell_w: f64,
    plot_w: f64,
    plot_h: f64,
}

impl Figure {
    fn layout(&self) -> Layout {
        let cols = self.panels.len().clamp(1, 2);
        let width = if cols == 1 { 860.0 } else { 1000.0 };
        let cell_w = (width - 20.0) / cols as f64;
        Layout {
            width,
            cols,
            cell_w,
            plot_w: cell_w - PANEL_LEFT - PANEL_RIGHT,
            plot_h: if cols == 1 { 320.0 } else { 250.0 },
        }
    }

    /// The figure as a standalone SVG document.
    pub fn svg(&self) -> String {
        let l = self.layout();
        let mut body = String::new();
        let mut y: f64 = 30.0;
        for line in wrap(&self.title, l.width - 40.0, 17.0) {
            let _ = write!(
                body,
                r#"<text x="20" y="{y:.0}" font-size="17" font-weight="bold">{}</text>"#,
                escape(&line)
            );
            y += 21.0;
        }
        for line in wrap(&format!("machine: {}", self.machine), l.width - 40.0, 12.0) {
            let _ = write!(
                body,
                r##"<text x="20" y="{:.0}" fill="#444">{}</text>"##,
                y - 2.0,
                escape(&line)
            );
            y += 16.0;
        }
        let top = y.max(HEADER) - 4.0;
        let lines = self
            .panels
            .iter()
            .filter_map(|p| p.categories.as_ref())
            .flatten()
            .map(|n| n.split('\n').count())
            .max()
            .unwrap_or(1);
        let bottom = panel_bottom(lines);
        let cell_h = PANEL_TOP + l.plot_h + bottom;
        for (i, panel) in self.panels.iter().enumerate() {
            let (col, row) = (i % l.cols, i / l.cols);
            let x0 = 10.0 + col as f64 * l.cell_w + PANEL_LEFT;
            let y0 = top + row as f64 * cell_h + PANEL_TOP;
            draw_panel(&mut body, panel, (x0, y0), (l.plot_w, l.plot_h), bottom);
        }
        let rows = self.panels.len().div_ceil(l.cols);
        let mut y = top + rows as f64 * cell_h + 6.0;
        y = legend(&mut body, &self.panels, l.width, y);
        for note in &self.notes {
            for line in wrap(note, l.width - 40.0, 11.0) {
                let _ = write!(
                    body,
                    r##"<text x="20" y="{:.0}" font-size="11" fill="#444">{}</text>"##,
                    y + 12.0,
                    escape(&line)
                );
                y += 15.0;
            }
        }
        let height = (y + 14.0).ceil();
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>{body}</svg>
"#,
            w = l.width
        )
    }
}

/// Every series label once (first colour and mark it came with), flowed in
/// rows under the panels; returns the y below it.
fn legend(out: &mut String, panels: &[Panel], width: f64, y: f64) -> f64 {
    let mut seen: Vec<(&str, &str, Mark)> = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if !seen.iter().any(|(l, _, m)| *l == s.label && *m == s.mark) {
            seen.push((&s.label, s.colour, s.mark));
        }
    }
    let (mut x, mut y) = (20.0, y + LINE);
    for (label, colour, mark) in seen {
        let w = 30.0 + text_width(label, 12.0) + 18.0;
        if x > 20.0 && x + w > width - 10.0 {
            (x, y) = (20.0, y + LINE);
        }
        match mark {
            Mark::Bar => {
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{:.1}" width="22" height="11" fill="{colour}"/>"#,
                    y - 10.0
                );
            }
            Mark::Line | Mark::Dashed => {
                let dash = if mark == Mark::Dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                };
                let _ = write!(
                    out,
                    r#"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash}/><circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    x + 22.0,
                    y - 4.5,
                    y - 4.5,
                    x + 11.0,
                    y - 4.5
                );
            }
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            x + 30.0,
            escape(label)
        );
        x += w;
    }
    y + 6.0
}

fn draw_panel(out: &mut String, p: &Panel, (x0, y0): (f64, f64), (w, h): (f64, f64), bottom: f64) {
    let fit = (w + PANEL_RIGHT - 4.0) / text_width(&p.title, 13.0);
    let _ = write!(
        out,
        r#"<text x="{x0:.1}" y="{:.1}" font-size="{:.1}" font-weight="bold">{}</text>"#,
        y0 - 9.0,
        (13.0 * fit.min(1.0)).max(9.0),
        escape(&p.title)
    );
    let bars = p.series.iter().any(|s| s.mark == Mark::Bar);
    let texts = p
        .series
        .iter()
        .flat_map(|s| &s.points)
        .any(|pt| pt.text.is_some());
    let ys: Vec<f64> = p
        .series
        .iter()
        .flat_map(|s| &s.points)
        .flat_map(|pt| std::iter::once(pt.y).chain(pt.runs.iter().copied()))
        .chain(p.guides.iter().map(|g| g.y))
        .collect();
    let ymap = Map::new(p.y.scale, &ys, bars, if texts { 0.12 } else { 0.0 });
    let py = |v: f64| y0 + h - ymap.frac(v) * h;
    // Grid and y ticks.
    for &t in &ymap.ticks {
        let yt = py(t);
        let _ = write!(
            out,
            r##"<line x1="{x0:.1}" x2="{:.1}" y1="{yt:.1}" y2="{yt:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            x0 + w,
            x0 - 6.0,
            yt + 4.0,
            si(t)
        );
    }
    let cy = y0 + h / 2.0;
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{cy:.1}" transform="rotate(-90 {:.1} {cy:.1})" text-anchor="middle">{}</text>"#,
        x0 - PANEL_LEFT + 22.0,
        x0 - PANEL_LEFT + 22.0,
        escape(&p.y.label)
    );
    // The x axis: slots for categories, or a numeric scale.
    let xmap = match &p.categories {
        Some(names) => {
            let slot = w / names.len().max(1) as f64;
            for (i, name) in names.iter().enumerate() {
                let cx = x0 + slot * (i as f64 + 0.5);
                for (k, line) in name.split('\n').enumerate() {
                    let size = if text_width(line, 11.0) > slot - 4.0 {
                        (11.0 * (slot - 4.0) / text_width(line, 11.0)).max(7.0)
                    } else {
                        11.0
                    };
                    let _ = write!(
                        out,
                        r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="{size:.1}">{}</text>"#,
                        y0 + h + 16.0 + 13.0 * k as f64,
                        escape(line)
                    );
                }
            }
            None
        }
        None => {
            let xs: Vec<f64> = p
                .series
                .iter()
                .flat_map(|s| &s.points)
                .map(|pt| pt.x)
                .collect();
            let m = Map::new(p.x.scale, &xs, false, 0.0);
            for &t in &m.ticks {
                let xt = x0 + m.frac(t) * w;
                let _ = write!(
                    out,
                    r##"<line x1="{xt:.1}" x2="{xt:.1}" y1="{y0:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="{xt:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
                    y0 + h,
                    y0 + h + 16.0,
                    si(t)
                );
            }
            Some(m)
        }
    };
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        x0 + w / 2.0,
        y0 + h + bottom - 12.0,
        escape(&p.x.label)
    );
    let px = |v: f64| match (&xmap, &p.categories) {
        (Some(m), _) => x0 + m.frac(v) * w,
        (None, Some(names)) => x0 + w / names.len().max(1) as f64 * (v + 0.5),
        (None, None) => x0,
    };
    // Bars: in each category, side by side, only the series that have one.
    if let Some(names) = &p.categories {
        let slot = w / names.len().max(1) as f64;
        for i in 0..names.len() {
            let here: Vec<(&Series, &Point)> = p
                .series
                .iter()
                .filter(|s| s.mark == Mark::Bar)
                .filter_map(|s| {
                    s.points
                        .iter()
                        .find(|pt| pt.x as usize == i && pt.y.is_finite())
                        .map(|pt| (s, pt))
                })
                .collect();
            let bw = (slot * 0.8 / here.len().max(1) as f64).min(70.0);
            let start = x0 + slot * (i as f64 + 0.5) - bw * here.len() as f64 / 2.0;
            for (k, (s, pt)) in here.into_iter().enumerate() {
                let x = start + bw * k as f64;
                let (top, base) = (py(pt.y), py(ymap.lo.max(0.0)));
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    x + 1.0,
                    top.min(base),
                    (bw - 2.0).max(1.0),
                    (base - top).abs(),
                    s.colour,
                    escape(&s.label),
                    si(pt.y)
                );
                for r in &pt.runs {
                    let _ = write!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="white" stroke="black"/>"#,
                        x + bw / 2.0,
                        py(*r)
                    );
                }
                if let Some(t) = &pt.text {
                    let size = if text_width(t, 10.0) > bw + 8.0 {
                        (10.0 * (bw + 8.0) / text_width(t, 10.0)).max(7.0)
                    } else {
                        10.0
                    };
                    let above = pt.runs.iter().map(|r| py(*r) - 3.0).fold(top, f64::min);
                    let _ = write!(
                        out,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{size:.1}" {HALO}>{}</text>"#,
                        x + bw / 2.0,
                        above - 4.0,
                        escape(t)
                    );
                }
            }
        }
    }
    // Lines, with a marker on every point.
    for s in p.series.iter().filter(|s| s.mark != Mark::Bar) {
        let pts: Vec<(f64, f64, &Point)> = s
            .points
            .iter()
            .filter(|pt| pt.y.is_finite() && pt.x.is_finite())
            .map(|pt| (px(pt.x), py(pt.y), pt))
            .collect();
        let dash = if s.mark == Mark::Dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let line: Vec<String> = pts
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            line.join(" "),
            s.colour
        );
        if pts.len() <= MARKERS_UP_TO {
            for (x, y, pt) in &pts {
                let fill = if pt.hollow { "white" } else { s.colour };
                let _ = write!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{fill}" stroke="{}" stroke-width="1.5"/>"#,
                    s.colour
                );
                if let Some(t) = &pt.text {
                    let _ = write!(
                        out,
                        r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="10" {HALO}>{}</text>"#,
                        y - 7.0,
                        escape(t)
                    );
                }
            }
        }
    }
    for g in &p.guides {
        let yg = py(g.y);
        // Under its line when the line runs along the top of the plot.
        let label_y = if yg - y0 < 16.0 { yg + 13.0 } else { yg - 4.0 };
        let _ = write!(
            out,
            r#"<line x1="{x0:.1}" x2="{:.1}" y1="{yg:.1}" y2="{yg:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="{}" {HALO}>{}</text>"#,
            x0 + w,
            g.colour,
            x0 + w - 4.0,
            label_y,
            g.colour,
            escape(&g.label)
        );
    }
    let _ = write!(
        out,
        r#"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="black"/>"#
    );
}
