//! Plots of the media and model benches: `encode` (vs the ffmpeg CLI),
//! `live` (vs `ffmpeg -f hls`), `embed` (vs PyTorch), and the GPU kit's
//! results (vs the CPU reference and PyTorch on the GPU).

use serde_json::Value;

use super::chart::{Axis, Figure, Mark, Panel, Point, Series, ANCHOR, GREY, OURS, OURS_2};
use super::{field, list, machine, num, nums, opt_num, text};
use crate::Result;

/// The real-time floor of a live channel: 97 % of the camera's 30 fps.
const LIVE_FPS_FLOOR: f64 = 0.97 * 30.0;

pub fn encode(v: &Value) -> Result<Figure> {
    let backend = text(v, "backend")?;
    let anchor = if backend == "cpu" {
        "ffmpeg CLI (libx264)".to_owned()
    } else {
        format!("ffmpeg CLI (-hwaccel cuda, {backend})")
    };
    let runs = list(v, "runs")?;
    let fps_of = |who: &str| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.get("contender").and_then(Value::as_str) == Some(who))
            .filter_map(|r| opt_num(r, "source_fps"))
            .collect()
    };
    let (ours_runs, theirs_runs) = (fps_of("engine"), fps_of("ffmpeg"));
    let (ours, theirs) = (num(v, "engine_fps_median")?, num(v, "ffmpeg_fps_median")?);
    let ratio = num(v, "ratio")?;
    let throughput = Panel::categories(
        "Throughput (median of alternating runs; dots: each run)",
        "the whole ladder, one decode",
        vec![format!("appliance ÷ ffmpeg = ×{ratio:.2}")],
        Axis::linear("source frames / s"),
    )
    .series(
        Series::new("appliance (media engine)", OURS, Mark::Bar).point(
            Point::new(0.0, ours)
                .runs(ours_runs)
                .text(format!("{ours:.1}")),
        ),
    )
    .series(
        Series::new(anchor.as_str(), ANCHOR, Mark::Bar).point(
            Point::new(0.0, theirs)
                .runs(theirs_runs)
                .text(format!("{theirs:.1}")),
        ),
    );
    let quality = list(v, "quality")?;
    let mut names = Vec::new();
    let mut ours_q = Series::new("appliance (media engine)", OURS, Mark::Bar);
    let mut theirs_q = Series::new(anchor.as_str(), ANCHOR, Mark::Bar);
    for (i, q) in quality.iter().enumerate() {
        let (a, b) = (num(q, "psnr_engine_db")?, num(q, "psnr_ffmpeg_db")?);
        let mb = |k: &str| opt_num(q, k).unwrap_or(0.0) / 1e6;
        names.push(format!(
            "{}\n{:.2} / {:.2} MB",
            text(q, "rung")?,
            mb("bytes_engine"),
            mb("bytes_ffmpeg")
        ));
        ours_q.push(Point::new(i as f64, a).text(format!("{a:.2}")));
        theirs_q.push(Point::new(i as f64, b).text(format!("{b:.2}")));
    }
    let quality = Panel::categories(
        "Quality: PSNR of each rung vs the source",
        "rung (bytes written: appliance / ffmpeg)",
        names,
        Axis::linear("PSNR (dB)"),
    )
    .series(ours_q)
    .series(theirs_q);
    Ok(Figure {
        title: format!("{}: appliance vs ffmpeg", text(v, "benchmark")?),
        machine: machine(v),
        panels: vec![throughput, quality],
        notes: vec![
            format!(
                "source: {}; preset {}; placement {}",
                text(v, "source")?,
                text(v, "preset")?,
                text(v, "placement")?
            ),
            "ffmpeg: one command doing the same job (its command line is in the JSON)".into(),
        ],
    })
}

pub fn live(v: &Value) -> Result<Figure> {
    let rows = list(v, "rows")?;
    let mut contenders: Vec<&str> = Vec::new();
    for r in rows {
        let c = text(r, "contender")?;
        if !contenders.contains(&c) {
            contenders.push(c);
        }
    }
    let colour = |c: &str| if c == "appliance" { OURS } else { ANCHOR };
    let name = |c: &str| match c {
        "appliance" => "appliance".to_owned(),
        "ffmpeg" => "ffmpeg -f hls".to_owned(),
        other => other.to_owned(),
    };
    let mut fps = Panel::values(
        "Frames taken in per channel (hollow: not sustained)",
        Axis::linear("concurrent channels"),
        Axis::linear("frames / s per channel"),
    )
    .guide("real time: 97 % of 30 fps", LIVE_FPS_FLOOR, GREY);
    let mut latency = Panel::values(
        "Live latency: p50 solid, p95 dashed",
        Axis::linear("concurrent channels"),
        Axis::linear("latency (ms)"),
    );
    if let Some(limit) = opt_num(v, "latency_p95_limit_ms") {
        latency = latency.guide(format!("p95 limit {:.0} s", limit / 1e3), limit, GREY);
    }
    for c in &contenders {
        let mut f = Series::new(name(c), colour(c), Mark::Line);
        let mut p50 = Series::new(name(c), colour(c), Mark::Line);
        let mut p95 = Series::new(format!("{} p95", name(c)), colour(c), Mark::Dashed);
        for r in rows
            .iter()
            .filter(|r| r.get("contender").and_then(Value::as_str) == Some(c))
        {
            let ch = num(r, "channels")?;
            let hollow = !r.get("sustained").and_then(Value::as_bool).unwrap_or(true);
            f.push(Point::new(ch, num(r, "fps_in")?).hollow(hollow));
            p50.push(Point::new(ch, num(r, "latency_p50_ms")?).hollow(hollow));
            p95.push(Point::new(ch, num(r, "latency_p95_ms")?).hollow(hollow));
        }
        fps = fps.series(f);
        latency = latency.series(p50).series(p95);
    }
    let most: Vec<String> = contenders
        .iter()
        .filter_map(|c| {
            v.get("max_channels")
                .and_then(|m| m.get(*c))
                .and_then(Value::as_u64)
                .map(|n| format!("{} {n}", name(c)))
        })
        .collect();
    let mut notes = vec![format!("most channels sustained: {}", most.join(", "))];
    if let Some(basis) = v
        .get("latency_basis")
        .and_then(|b| b.get("ffmpeg"))
        .and_then(Value::as_str)
    {
        notes.push(format!("ffmpeg's latency: {basis}"));
    }
    notes.extend([
        format!("sustained when {}", text(v, "sustained_when")?),
        format!(
            "camera: {}; ladder: {}",
            text(v, "source")?,
            text(v, "ladder")?
        ),
    ]);
    Ok(Figure {
        title: "Live RTSP channels in real time: appliance vs ffmpeg -f hls".into(),
        machine: machine(v),
        panels: vec![fps, latency],
        notes,
    })
}

pub fn embed(v: &Value) -> Result<Figure> {
    let torch = match v.get("torch").filter(|t| !t.is_null()) {
        Some(t) => format!(
            "PyTorch {} (sentence-transformers {}, {} threads)",
            text(t, "torch")?,
            text(t, "sentence_transformers")?,
            t.get("threads").and_then(Value::as_u64).unwrap_or(0)
        ),
        None => "PyTorch: not run".to_owned(),
    };
    let mut names = Vec::new();
    let mut ours = Series::new("candle (appliance)", OURS, Mark::Bar);
    let mut theirs = Series::new(torch, ANCHOR, Mark::Bar);
    for (i, r) in list(v, "rows")?.iter().enumerate() {
        let x = i as f64;
        let c = num(r, "candle_sentences_per_sec")?;
        names.push(match opt_num(r, "candle_over_torch") {
            Some(ratio) => format!("batch {}\ncandle ÷ PyTorch ×{ratio:.2}", num(r, "batch")?),
            None => format!("batch {}", num(r, "batch")?),
        });
        ours.push(
            Point::new(x, c)
                .runs(nums(r, "candle_runs"))
                .text(format!("{c:.0}")),
        );
        if let Some(t) = opt_num(r, "torch_sentences_per_sec") {
            theirs.push(
                Point::new(x, t)
                    .runs(nums(r, "torch_runs"))
                    .text(format!("{t:.0}")),
            );
        }
    }
    let panel = Panel::categories(
        "Sentences embedded per second (median; dots: each round)",
        "batch size",
        names,
        Axis::linear("sentences / s"),
    )
    .series(ours)
    .series(theirs);
    let mut notes = vec![format!(
        "{} texts, {} alternating rounds; model: {}",
        num(v, "texts")?,
        num(v, "rounds")?,
        text(v, "model")?
    )];
    if let Some(m) = v.get("torch_missing").and_then(Value::as_str) {
        notes.push(format!("PyTorch not run: {m}"));
    }
    Ok(Figure {
        title: "Sentence embeddings (all-MiniLM-L6-v2): candle vs PyTorch".into(),
        machine: machine(v),
        panels: vec![panel],
        notes,
    })
}

/// The GPU kit: NVDEC + the fused scale kernel against the CPU reference
/// scale, and the decode rate, per clip.
pub fn gpukit(v: &Value) -> Result<Figure> {
    let clips = field(field(v, "nvdec")?, "Ok")
        .ok()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = Vec::new();
    let mut gpu = Series::new("GPU: NVDEC + fused scale kernel", OURS, Mark::Bar);
    let mut cpu = Series::new("CPU reference scale", ANCHOR, Mark::Bar);
    let mut fps = Series::new("GPU: NVDEC decode", OURS_2, Mark::Bar);
    for (i, c) in clips.iter().enumerate() {
        let x = i as f64;
        let status = text(c, "status")?;
        names.push(format!("{}\n{status}", text(c, "clip")?));
        if let Some(g) = opt_num(c, "scale_ms_per_frame_gpu") {
            gpu.push(Point::new(x, g).text(format!("{g:.2}")));
        }
        if let Some(r) = opt_num(c, "scale_ms_per_frame_cpu") {
            cpu.push(Point::new(x, r).text(format!("{r:.0}")));
        }
        if let Some(f) = opt_num(c, "decode_fps") {
            fps.push(Point::new(x, f).text(format!("{f:.0}")));
        }
    }
    let scale = Panel::categories(
        "Scaling each frame into every rung",
        "clip (NVDEC status)",
        names.clone(),
        Axis::log("ms per frame (log)"),
    )
    .series(gpu)
    .series(cpu);
    let decode = Panel::categories(
        "Decode rate",
        "clip (NVDEC status)",
        names,
        Axis::linear("frames / s"),
    )
    .series(fps);
    let inventory = field(field(v, "discovery")?, "inventory")?;
    let gpus: Vec<&str> = list(inventory, "gpus")?
        .iter()
        .filter_map(|g| g.get("name").and_then(Value::as_str))
        .collect();
    let cpu_model = inventory
        .get("cpu")
        .and_then(|c| c.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("CPU not recorded");
    let cases = field(v, "kernels")
        .ok()
        .and_then(|k| k.get("Ok"))
        .and_then(|k| k.get("cases"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let passed = cases
        .iter()
        .filter(|c| c.get("passed").and_then(Value::as_bool) == Some(true))
        .count();
    let worst = cases
        .iter()
        .filter_map(|c| opt_num(c, "max_diff"))
        .fold(0.0, f64::max);
    Ok(Figure {
        title: format!(
            "GPU bring-up kit ({}): NVDEC + CUDA kernels vs the CPU reference",
            text(v, "status")?
        ),
        machine: format!("{} + {}", gpus.join(", "), cpu_model),
        panels: vec![scale, decode],
        notes: vec![format!(
            "kernels: {passed} of {} cases within tolerance of their CPU reference (largest difference {worst})",
            cases.len()
        )],
    })
}

/// The models on the GPU: candle CPU vs CUDA vs PyTorch on the GPU, and
/// the ranker's candidates/s by batch on each device.
pub fn models(v: &Value) -> Result<Figure> {
    let mut names = Vec::new();
    let mut embed = Vec::new();
    for (i, e) in list(v, "embed")?.iter().enumerate() {
        let device = text(e, "device")?;
        let s = num(e, "sentences_per_sec")?;
        names.push(format!("candle {device}\nbatch {}", num(e, "batch")?));
        let colour = if device == "cpu" { OURS_2 } else { OURS };
        embed.push(
            Series::new(format!("candle {device}"), colour, Mark::Bar).point(
                Point::new(i as f64, s)
                    .runs(nums(e, "rounds"))
                    .text(format!("{s:.0}")),
            ),
        );
    }
    let mut torch_device = String::new();
    if let Some(t) = v.get("torch").filter(|t| !t.is_null()) {
        let s = num(t, "sentences_per_sec")?;
        torch_device = text(t, "device")?.to_owned();
        names.push(format!("PyTorch\nbatch {}", num(t, "batch")?));
        embed.push(
            Series::new(format!("PyTorch {torch_device}"), ANCHOR, Mark::Bar)
                .point(Point::new(names.len() as f64 - 1.0, s).text(format!("{s:.0}"))),
        );
    }
    let mut sentences = Panel::categories(
        "Sentence embeddings (all-MiniLM-L6-v2)",
        "implementation and device",
        names,
        Axis::linear("sentences / s"),
    );
    sentences.series = embed;
    let mut rank = Panel::values(
        "Ranker (MLP) throughput",
        Axis::log("batch size (log)"),
        Axis::log("candidates / s (log)"),
    );
    let rows = list(v, "rank")?;
    let mut devices: Vec<&str> = Vec::new();
    for r in rows {
        let d = text(r, "device")?;
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    for d in devices {
        let colour = if d == "cpu" { OURS_2 } else { OURS };
        let mut s = Series::new(format!("candle {d}"), colour, Mark::Line);
        for r in rows
            .iter()
            .filter(|r| r.get("device").and_then(Value::as_str) == Some(d))
        {
            s.push(Point::new(num(r, "batch")?, num(r, "candidates_per_sec")?));
        }
        rank = rank.series(s);
    }
    let cuda = v
        .get("cuda")
        .and_then(|c| c.get("Ok"))
        .and_then(Value::as_str)
        .unwrap_or("no CUDA device");
    let mut notes = vec![format!(
        "{} sentences; smallest cosine CUDA vs CPU: {}",
        num(v, "sentences")?,
        opt_num(v, "cuda_vs_cpu_min_cosine").map_or("not measured".into(), |c| format!("{c:.6}"))
    )];
    if v.get("passed").and_then(Value::as_bool) == Some(false) {
        notes.push("the check did not pass".into());
    }
    Ok(Figure {
        title: "Models on the GPU: candle (CPU, CUDA) vs PyTorch".into(),
        machine: if torch_device.is_empty() {
            cuda.to_owned()
        } else {
            format!("{cuda}; {torch_device}")
        },
        panels: vec![sentences, rank],
        notes,
    })
}
