//! The plotting room every bench shares: a result's JSON in, its plot out
//! as SVG and PNG beside it (same stem). Every `appliance bench …` writes
//! through [`crate::write_report`], and `appliance bench plot FILE.json…`
//! re-renders a committed result through [`replot`]; both read the report
//! as JSON, so a plot is always of what the JSON says.
//!
//! The kind of result is told from its fields ([`detect`]); each kind
//! becomes a [`chart::Figure`] (ours vs the anchor it is measured against,
//! axes with units, a title naming the machine, a legend), drawn as SVG by
//! [`chart`] and rasterised by `resvg` with DejaVu Sans embedded in the
//! binary (the `dejavu` crate), so no system font is needed and the PNG has
//! the same text on every host.

mod axis;
pub mod chart;
mod engine;
mod feed;
mod fingerprints;
mod search;
mod server;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::{BenchError, Result};
use chart::Figure;

/// The PNG is drawn at this many pixels per SVG unit.
pub const PNG_SCALE: f32 = 2.0;

/// Every kind of result the renderer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Encode,
    Live,
    Publish,
    Origin,
    Rank,
    Retrieval,
    Feed,
    FeedHttp,
    FeedBeforeAfter,
    FeedEval,
    Embed,
    Ingest,
    Gpukit,
    Models,
    Search,
    Fingerprints,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::Encode,
        Kind::Live,
        Kind::Publish,
        Kind::Origin,
        Kind::Rank,
        Kind::Retrieval,
        Kind::Feed,
        Kind::FeedHttp,
        Kind::FeedBeforeAfter,
        Kind::FeedEval,
        Kind::Embed,
        Kind::Ingest,
        Kind::Gpukit,
        Kind::Models,
        Kind::Search,
        Kind::Fingerprints,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Encode => "encode",
            Kind::Live => "live",
            Kind::Publish => "publish",
            Kind::Origin => "origin",
            Kind::Rank => "rank",
            Kind::Retrieval => "retrieval",
            Kind::Feed => "feed",
            Kind::FeedHttp => "feed --http",
            Kind::FeedBeforeAfter => "feed before/after",
            Kind::FeedEval => "eval-feed",
            Kind::Embed => "embed",
            Kind::Ingest => "ingest",
            Kind::Gpukit => "gpukit",
            Kind::Models => "gpukit models",
            Kind::Search => "search",
            Kind::Fingerprints => "fingerprints",
        }
    }

    fn figure(self, v: &Value) -> Result<Figure> {
        match self {
            Kind::Encode => engine::encode(v),
            Kind::Live => engine::live(v),
            Kind::Publish => server::publish(v),
            Kind::Origin => server::origin(v),
            Kind::Rank => feed::rank(v),
            Kind::Retrieval => feed::retrieval(v),
            Kind::Feed => feed::feed(v),
            Kind::FeedHttp => server::feed_http(v),
            Kind::FeedBeforeAfter => feed::before_after(v),
            Kind::FeedEval => feed::eval(v),
            Kind::Embed => engine::embed(v),
            Kind::Ingest => server::ingest(v),
            Kind::Gpukit => engine::gpukit(v),
            Kind::Models => engine::models(v),
            Kind::Search => search::search(v),
            Kind::Fingerprints => fingerprints::fingerprints(v),
        }
    }
}

/// Which kind of result `v` is, from the fields only that kind has.
pub fn detect(v: &Value) -> Option<Kind> {
    let has = |k: &str| v.get(k).is_some();
    let row = |k: &str| {
        v.get("rows")
            .and_then(|r| r.get(0))
            .is_some_and(|r| r.get(k).is_some())
    };
    let kind = if has("goal_p99_ms_search") {
        Kind::Search
    } else if has("scan_ms_per_lookup") {
        Kind::Fingerprints
    } else if has("engine_fps_median") {
        Kind::Encode
    } else if has("latency_basis") || row("latency_p95_ms") {
        Kind::Live
    } else if has("goal_first_playable_s") || row("ffmpeg_full_ladder_s") {
        Kind::Publish
    } else if v
        .get("summary")
        .and_then(|s| s.get(0))
        .is_some_and(|s| s.get("nginx_requests_per_sec").is_some())
    {
        Kind::Origin
    } else if row("candidates_per_sec") {
        Kind::Rank
    } else if row("recall_at_100") {
        Kind::Retrieval
    } else if has("goal_p99_ms_at_1m") || row("offered_rps") {
        Kind::FeedHttp
    } else if has("summary_medians") {
        Kind::FeedBeforeAfter
    } else if row("first_page_p99_ms") {
        Kind::Feed
    } else if has("protocols") {
        Kind::FeedEval
    } else if row("candle_sentences_per_sec") {
        Kind::Embed
    } else if has("goal_lag_ms") {
        Kind::Ingest
    } else if has("kernels") && has("nvdec") {
        Kind::Gpukit
    } else if has("embed") && has("rank") {
        Kind::Models
    } else {
        return None;
    };
    Some(kind)
}

/// A plot drawn: the SVG document and the PNG (RGBA) of it.
pub struct Plot {
    pub kind: Kind,
    pub svg: String,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Draws the plot of a result (any kind [`detect`] knows).
pub fn render(v: &Value) -> Result<Plot> {
    let kind = detect(v).ok_or_else(|| {
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        plot_error(format!(
            "not a bench result this renderer knows (top-level fields: {})",
            keys.join(", ")
        ))
    })?;
    let svg = kind.figure(v)?.svg();
    let (png, width, height) = png(&svg)?;
    Ok(Plot {
        kind,
        svg,
        png,
        width,
        height,
    })
}

/// The `.svg` and `.png` beside `json` (same stem).
pub fn paths_beside(json: &Path) -> [PathBuf; 2] {
    [json.with_extension("svg"), json.with_extension("png")]
}

/// Draws the plot of `v` and writes it beside `json`, `.svg` and `.png`.
pub fn write_beside(json: &Path, v: &Value) -> Result<Plot> {
    let plot = render(v)?;
    let [svg, png] = paths_beside(json);
    write(&svg, plot.svg.as_bytes())?;
    write(&png, &plot.png)?;
    Ok(plot)
}

/// `appliance bench plot`: reads a result's JSON and writes its plot beside
/// it.
pub fn replot(json: &Path) -> Result<Plot> {
    let text = std::fs::read_to_string(json).map_err(|source| BenchError::Io {
        op: "reading",
        path: json.display().to_string(),
        source,
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| plot_error(format!("{}: not JSON: {e}", json.display())))?;
    write_beside(json, &v).map_err(|e| plot_error(format!("{}: {e}", json.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| BenchError::Io {
        op: "writing",
        path: path.display().to_string(),
        source,
    })
}

fn plot_error(m: impl Into<String>) -> BenchError {
    BenchError::Plot(m.into())
}

/// The embedded font, loaded once.
fn fonts() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        db.load_font_data(dejavu::sans::bold().to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// Rasterises an SVG at [`PNG_SCALE`]: the PNG's bytes, width and height.
pub fn png(svg: &str) -> Result<(Vec<u8>, u32, u32)> {
    use resvg::{tiny_skia, usvg};
    let opt = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb: fonts(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| plot_error(format!("SVG: {e}")))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * PNG_SCALE).round() as u32,
        (size.height() * PNG_SCALE).round() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| plot_error(format!("cannot draw a {w}×{h} image")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
        &mut pixmap.as_mut(),
    );
    let png = pixmap
        .encode_png()
        .map_err(|e| plot_error(format!("PNG: {e}")))?;
    Ok((png, w, h))
}

// Reading a report's fields, saying which one is missing.

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value> {
    v.get(key)
        .ok_or_else(|| plot_error(format!("the field `{key}` is missing")))
}

fn num(v: &Value, key: &str) -> Result<f64> {
    field(v, key)?
        .as_f64()
        .ok_or_else(|| plot_error(format!("`{key}` is not a number")))
}

/// A number that may be null or absent.
fn opt_num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| plot_error(format!("`{key}` is not a string")))
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    field(v, key)?
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| plot_error(format!("`{key}` is not a list")))
}

fn nums(v: &Value, key: &str) -> Vec<f64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The machine a result names (`machine.description`), or what it says of
/// its hardware otherwise.
fn machine(v: &Value) -> String {
    v.get("machine")
        .and_then(|m| m.get("description"))
        .and_then(Value::as_str)
        .map_or_else(|| "not recorded in this result".to_owned(), str::to_owned)
}

/// `n` as "10k", "1M" for a catalog size.
fn count(n: f64) -> String {
    chart::si(n)
}
