//! Encode throughput: this engine vs the `ffmpeg` CLI doing the equivalent
//! job — one decode, `split`, one libx264 per rung with the same preset,
//! bitrates, VBV and GOP, AAC audio once, HLS fMP4 out — alternately, in one
//! invocation, on one generated 1080p source. Quality is checked with PSNR of
//! every rung against the source (rungs scaled back up to 1080p).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use media::backend::cpu::x264_option_pairs;
use media::backend::EncoderSettings;
use media::{LadderPlan, TranscodeOptions};

use crate::{BenchError, Machine, Result};

pub struct Config {
    /// `cpu` compares with ffmpeg's libx264 ladder; `nvidia` with
    /// `-hwaccel cuda … scale_cuda … h264_nvenc` (or libx264 after
    /// `hwdownload` where the GPU has no NVENC, as the engine's placement).
    pub backend: hardware::BackendRequest,
    pub seconds: u32,
    pub runs: u32,
    pub preset: String,
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub contender: &'static str,
    pub wall_secs: f64,
    pub source_fps: f64,
}

#[derive(Debug, Serialize)]
pub struct RungQuality {
    pub rung: String,
    pub psnr_engine_db: f64,
    pub psnr_ffmpeg_db: f64,
    pub bytes_engine: u64,
    pub bytes_ffmpeg: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub source: String,
    pub source_frames: u64,
    pub backend: String,
    /// Where the engine ran each stage.
    pub placement: String,
    pub gpus: Vec<String>,
    pub preset: String,
    pub ladder: Vec<String>,
    pub runs: Vec<Run>,
    pub engine_fps_median: f64,
    pub ffmpeg_fps_median: f64,
    /// engine ÷ ffmpeg: above 1.0 means this engine is faster.
    pub ratio: f64,
    pub quality: Vec<RungQuality>,
    pub ffmpeg_command: String,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
    move |source| BenchError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| BenchError::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(BenchError::Command {
            command: shown,
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A 1080p30 source with motion, detail and noise (so the encoder works as on
/// camera footage), plus a stereo tone.
fn make_source(path: &Path, seconds: u32) -> Result<String> {
    let desc = format!("lavfi testsrc2 1920x1080 30 fps + temporal noise, {seconds} s, sine audio 48 kHz stereo; libx264 crf 12");
    run_cmd(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size=1920x1080:rate=30:duration={seconds}"),
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
                "-vf",
                "noise=alls=12:allf=t+u,format=yuv420p",
                "-ac",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "fast",
                "-crf",
                "12",
                "-c:a",
                "aac",
                "-b:a",
                "192k",
            ])
            .arg(path),
    )?;
    Ok(desc)
}

/// The `ffmpeg` CLI equivalent of the engine's job for this plan, on the
/// same engines as the engine's `placement`.
pub fn ffmpeg_args(
    source: &Path,
    plan: &LadderPlan,
    settings: &EncoderSettings,
    placement: hardware::Placement,
    out: &Path,
) -> Vec<String> {
    use hardware::Engine;
    let n = plan.rungs.len();
    let gpu_decode = matches!(placement.decode, Engine::Nvidia(_));
    let nvenc = matches!(placement.encode, Engine::Nvidia(_));
    let mut graph = format!(
        "[0:v]fps={}/{},split={n}",
        plan.frame_rate.0, plan.frame_rate.1
    );
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in plan.rungs.iter().enumerate() {
        let (w, h) = (r.width, r.height);
        graph.push_str(&match (gpu_decode, nvenc) {
            (true, true) => format!(";[s{i}]scale_cuda={w}:{h}:format=nv12[v{i}]"),
            (true, false) => format!(
                ";[s{i}]scale_cuda={w}:{h}:format=nv12,hwdownload,format=nv12,format=yuv420p[v{i}]"
            ),
            (false, _) => format!(";[s{i}]scale={w}:{h}:flags=bicubic,format=yuv420p[v{i}]"),
        });
    }
    let mut a: Vec<String> = ["-v", "error", "-y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if gpu_decode {
        a.extend(["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"].map(String::from));
    }
    a.push("-i".into());
    a.push(source.display().to_string());
    a.extend(["-filter_complex".into(), graph]);
    for (i, r) in plan.rungs.iter().enumerate() {
        a.extend(["-map".into(), format!("[v{i}]")]);
        if nvenc {
            // The engine's NVENC settings: VBR at the rung's rate and VBV,
            // IPPP, IDR only on the GOP marks, no scene-cut IDRs.
            let g = plan.gop_frames.to_string();
            for (k, v) in [
                ("c", "h264_nvenc".to_owned()),
                (
                    "preset",
                    format!("p{}", media::backend::nvidia::nvenc_preset_level(settings)),
                ),
                ("tune", "hq".into()),
                ("profile", "high".into()),
                ("rc", "vbr".into()),
                ("b", r.bitrate.to_string()),
                ("maxrate", r.max_bitrate.to_string()),
                ("bufsize", r.buffer_size.to_string()),
                ("g", g.clone()),
                ("bf", "0".into()),
                ("forced-idr", "1".into()),
                ("no-scenecut", "1".into()),
            ] {
                a.extend([format!("-{k}:v:{i}"), v]);
            }
            continue;
        }
        a.extend([format!("-c:v:{i}"), "libx264".into()]);
        for (k, v) in x264_option_pairs(r, plan, settings) {
            let k = match k {
                "b" => "b:v",
                other => other,
            };
            a.extend([format!("-{k}:v:{i}"), v]);
        }
    }
    if nvenc {
        // Force the GOP marks as IDRs as the engine does.
        a.extend([
            "-force_key_frames".into(),
            format!("expr:eq(mod(n,{}),0)", plan.gop_frames),
        ]);
    }
    a.extend(["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2"].map(String::from));
    let var_map: Vec<String> = (0..n)
        .map(|i| format!("v:{i},agroup:aud"))
        .chain(["a:0,agroup:aud".into()])
        .collect();
    a.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            "4",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-master_pl_name",
            "master.m3u8",
        ]
        .map(String::from),
    );
    a.extend(["-var_stream_map".into(), var_map.join(" ")]);
    a.extend([
        "-hls_segment_filename".into(),
        out.join("s%v_%d.m4s").display().to_string(),
    ]);
    a.push(out.join("v%v.m3u8").display().to_string());
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// PSNR (dB, average over frames, Y/U/V weighted as ffmpeg reports) of a
/// rendition against the source, the rendition scaled back to the source size.
fn psnr(rendition: &Path, source: &Path, width: u32, height: u32) -> Result<f64> {
    let stderr = run_cmd(Command::new("ffmpeg").args(["-hide_banner", "-nostats", "-i"]).arg(rendition).arg("-i").arg(source).args([
        "-lavfi",
        &format!("[0:v]scale={width}:{height}:flags=bicubic,setsar=1[d];[1:v]setsar=1[r];[d][r]psnr=shortest=1"),
        "-f", "null", "-",
    ]))?;
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("PSNR"))
        .unwrap_or("");
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("average:"))
        .and_then(|v| v.parse().ok())
        .ok_or(BenchError::Parse {
            what: "PSNR",
            command: "ffmpeg … psnr".into(),
        })
}

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(cfg: &Config) -> Result<Report> {
    let work = tempfile::tempdir().map_err(io_err("creating", Path::new("temp dir")))?;
    let source = work.path().join("source_1080p.mp4");
    let source_desc = make_source(&source, cfg.seconds)?;
    let info = media::probe(&source, &media::Limits::default())?;
    let plan = LadderPlan::new(&info, &[])?;
    let settings = EncoderSettings {
        preset: cfg.preset.clone(),
        ..Default::default()
    };
    let inventory = hardware::Inventory::discover();
    // Encoding throughput, rung for rung with ffmpeg's one command: the
    // source is not made a rung as it is even where it could be, and one
    // decode feeds every rung.
    let opts = TranscodeOptions {
        encoder: settings.clone(),
        backend: cfg.backend,
        remux_source: false,
        early_rung: false,
        ..Default::default()
    };
    // The placement the engine's job will get (a clear error if impossible).
    let placement = inventory
        .reserve(cfg.backend, &media::workload(&info, &plan))?
        .placement;
    // Replaced by the engine's real count on the first run, which always
    // starts with the engine, before any rate is computed from it.
    let mut frames = plan.expected_frames;
    let engine_out = work.path().join("engine");
    let ffmpeg_out = work.path().join("ffmpeg");
    let args = ffmpeg_args(&source, &plan, &settings, placement, &ffmpeg_out);

    let mut runs = Vec::new();
    for i in 0..cfg.runs.max(1) {
        // Alternate who goes first so warm caches and thermal drift favour neither.
        let order: [&'static str; 2] = if i % 2 == 0 {
            ["engine", "ffmpeg"]
        } else {
            ["ffmpeg", "engine"]
        };
        for who in order {
            let t = Instant::now();
            if who == "engine" {
                frames = media::transcode(&source, &engine_out, &opts, &inventory, &|_| {})?.frames;
            } else {
                let _ = std::fs::remove_dir_all(&ffmpeg_out);
                std::fs::create_dir_all(&ffmpeg_out).map_err(io_err("creating", &ffmpeg_out))?;
                run_cmd(Command::new("ffmpeg").args(&args))?;
            }
            let wall = t.elapsed().as_secs_f64();
            eprintln!(
                "run {}: {who:<6} {wall:6.2} s  {:6.1} fps",
                i + 1,
                frames as f64 / wall
            );
            runs.push(Run {
                contender: who,
                wall_secs: wall,
                source_fps: frames as f64 / wall,
            });
        }
    }
    let engine_fps = median(
        runs.iter()
            .filter(|r| r.contender == "engine")
            .map(|r| r.source_fps)
            .collect(),
    );
    let ffmpeg_fps = median(
        runs.iter()
            .filter(|r| r.contender == "ffmpeg")
            .map(|r| r.source_fps)
            .collect(),
    );

    let mut quality = Vec::new();
    for (i, r) in plan.rungs.iter().enumerate() {
        let engine_pl = engine_out.join(&r.name).join(media::playlist::MEDIA);
        let ffmpeg_pl = ffmpeg_out.join(format!("v{i}.m3u8"));
        quality.push(RungQuality {
            rung: r.name.clone(),
            psnr_engine_db: psnr(&engine_pl, &source, plan.display_width, plan.display_height)?,
            psnr_ffmpeg_db: psnr(&ffmpeg_pl, &source, plan.display_width, plan.display_height)?,
            bytes_engine: dir_bytes(&engine_out.join(&r.name), ""),
            bytes_ffmpeg: dir_bytes(&ffmpeg_out, &format!("s{i}_"))
                + dir_bytes(&ffmpeg_out, &format!("init_{i}")),
        });
    }
    let report = Report {
        benchmark: "encode: 1080p source → 4-rung H.264 HLS ladder (CPU)",
        machine: Machine::current(),
        source: source_desc,
        source_frames: frames,
        backend: cfg.backend.to_string(),
        placement: placement.to_string(),
        gpus: inventory.gpus.iter().map(|g| g.name.clone()).collect(),
        preset: cfg.preset.clone(),
        ladder: plan
            .rungs
            .iter()
            .map(|r| {
                format!(
                    "{} {}x{} @ {} kb/s",
                    r.name,
                    r.width,
                    r.height,
                    r.bitrate / 1000
                )
            })
            .collect(),
        engine_fps_median: engine_fps,
        ffmpeg_fps_median: ffmpeg_fps,
        ratio: if ffmpeg_fps > 0.0 {
            engine_fps / ffmpeg_fps
        } else {
            0.0
        },
        runs,
        quality,
        ffmpeg_command: format!("ffmpeg {}", args.join(" ")),
    };
    crate::write_report(&cfg.out, &report)?;
    Ok(report)
}
