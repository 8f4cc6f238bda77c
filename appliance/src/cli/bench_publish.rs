//! `appliance bench publish`: how soon an upload plays. Phone-like
//! uploads (1080p30 H.264 High with B-frames, a key frame every 1.5 s,
//! AAC-LC; 10, 60 and 180 s by default) and a HEVC one go through the real
//! server (`appliance serve` from this binary, on loopback, its own data
//! directory and the full 1080/720/480/360 ladder): a chunked upload, then
//! `complete`; the clock starts at `complete`'s answer and the status is
//! polled every 20 ms for the first playable state (`ready`, stage
//! `growing`) and the whole ladder (stage `done`). Side by side in the
//! same run, alternating who goes first, the `ffmpeg` CLI makes the whole
//! ladder in one command (`bench encode`'s command line: same rungs, bit
//! rates and x264 settings), which is what "playable" means for a box that
//! publishes only whole ladders.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

pub struct Options {
    pub out: PathBuf,
    /// Lengths of the H.264 uploads, in seconds.
    pub seconds: Vec<u32>,
    /// Length of the HEVC upload (0: none).
    pub hevc_seconds: u32,
    pub rounds: usize,
    /// Where generated uploads are kept between runs.
    pub cache: PathBuf,
    /// The server's `transcode.early_rung` (uploads that are not remuxed:
    /// lowest rung first in a pass of its own, or one pass for all).
    pub early_rung: bool,
}

#[derive(Serialize, Clone)]
pub struct Run {
    pub input: String,
    pub round: usize,
    /// `appliance` or `ffmpeg`.
    pub who: &'static str,
    /// Seconds from `complete` to the first playable master (for ffmpeg,
    /// its whole run).
    pub first_playable_s: f64,
    pub full_ladder_s: f64,
    /// The rungs the first playable master listed.
    pub first_rungs: Vec<String>,
}

#[derive(Serialize)]
pub struct Row {
    pub input: String,
    pub codec: &'static str,
    pub seconds: u32,
    pub megabytes: f64,
    /// Medians over the rounds.
    pub first_playable_s: f64,
    pub full_ladder_s: f64,
    pub ffmpeg_full_ladder_s: f64,
    /// ffmpeg's whole ladder ÷ ours: above 1, ours is faster.
    pub full_ladder_speedup: f64,
    pub first_rungs: Vec<String>,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub workload: String,
    /// The goal: first playable ≤ 2 s after `complete` for the
    /// 60 s H.264 upload.
    pub goal_first_playable_s: f64,
    pub rows: Vec<Row>,
    pub runs: Vec<Run>,
}

struct Input {
    name: String,
    codec: &'static str,
    seconds: u32,
    path: PathBuf,
}

pub fn run(o: &Options) -> Result<Report> {
    let mut inputs = Vec::new();
    for &s in o.seconds.iter().filter(|&&s| s > 0) {
        inputs.push(make_input(&o.cache, "h264", s)?);
    }
    if o.hevc_seconds > 0 {
        inputs.push(make_input(&o.cache, "hevc", o.hevc_seconds)?);
    }
    let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
    let server = Server::start(scratch.path(), o.early_rung)?;
    let token = server.creator()?;
    let mut runs = Vec::new();
    for input in &inputs {
        let info = media::probe(&input.path, &media::Limits::default())?;
        let plan = media::LadderPlan::new(&info, &[])?;
        let ffmpeg_out = scratch.path().join("ffmpeg");
        let settings = media::backend::EncoderSettings::default();
        let args = benches::encode::ffmpeg_args(
            &input.path,
            &plan,
            &settings,
            hardware::Placement::CPU,
            &ffmpeg_out,
        );
        for round in 1..=o.rounds.max(1) {
            let mut order = ["appliance", "ffmpeg"];
            if round % 2 == 0 {
                order.reverse();
            }
            for who in order {
                let run = if who == "appliance" {
                    server.publish(&token, input)?
                } else {
                    let _ = std::fs::remove_dir_all(&ffmpeg_out);
                    std::fs::create_dir_all(&ffmpeg_out)
                        .map_err(Error::io("creating", ffmpeg_out.display()))?;
                    let t = Instant::now();
                    let out = Command::new("ffmpeg")
                        .args(&args)
                        .output()
                        .map_err(Error::io("running", "ffmpeg"))?;
                    if !out.status.success() {
                        return Err(Error::Task(format!(
                            "ffmpeg failed on {}: {}",
                            input.name,
                            String::from_utf8_lossy(&out.stderr)
                        )));
                    }
                    let secs = t.elapsed().as_secs_f64();
                    (
                        secs,
                        secs,
                        plan.rungs.iter().map(|r| r.name.clone()).collect(),
                    )
                };
                let (first, full, rungs) = run;
                eprintln!(
                    "publish: {} round {round} {who:<9}: first playable {first:6.2} s, full ladder {full:6.2} s ({})",
                    input.name,
                    rungs.join(",")
                );
                runs.push(Run {
                    input: input.name.clone(),
                    round,
                    who,
                    first_playable_s: first,
                    full_ladder_s: full,
                    first_rungs: rungs,
                });
            }
        }
    }
    drop(server);
    let rows = inputs.iter().map(|i| row(i, &runs)).collect();
    Ok(Report {
        machine: benches::Machine::current(),
        workload: format!(
            "uploads: 1080p30 testsrc2 H.264 High (x264 veryfast, B-frames, 5 Mb/s, key frame every 1.5 s) + AAC-LC 128 kb/s, {:?} s; HEVC (x265 ultrafast) {} s. \
             Server: `appliance serve`, 1 worker, rungs 1080/720/480/360, x264 veryfast, early_rung = {}, local object store; chunked upload (1 MiB chunks), clock from `complete`'s 202, status polled every 20 ms. \
             ffmpeg: one command for the whole ladder (bench encode's), its wall time. {} round(s), alternating who goes first.",
            o.seconds, o.hevc_seconds, o.early_rung, o.rounds
        ),
        goal_first_playable_s: 2.0,
        rows,
        runs,
    })
}

fn row(input: &Input, runs: &[Run]) -> Row {
    let of = |who: &str, f: fn(&Run) -> f64| {
        median(
            runs.iter()
                .filter(|r| r.input == input.name && r.who == who)
                .map(f)
                .collect(),
        )
    };
    let full = of("appliance", |r| r.full_ladder_s);
    let ffmpeg = of("ffmpeg", |r| r.full_ladder_s);
    Row {
        input: input.name.clone(),
        codec: input.codec,
        seconds: input.seconds,
        megabytes: std::fs::metadata(&input.path).map_or(0.0, |m| m.len() as f64 / 1e6),
        first_playable_s: of("appliance", |r| r.first_playable_s),
        full_ladder_s: full,
        ffmpeg_full_ladder_s: ffmpeg,
        full_ladder_speedup: if full > 0.0 { ffmpeg / full } else { 0.0 },
        first_rungs: runs
            .iter()
            .find(|r| r.input == input.name && r.who == "appliance")
            .map(|r| r.first_rungs.clone())
            .unwrap_or_default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A phone-like upload, made once and kept in `cache`.
fn make_input(cache: &Path, codec: &'static str, seconds: u32) -> Result<Input> {
    std::fs::create_dir_all(cache).map_err(Error::io("creating", cache.display()))?;
    let name = format!("{codec}-{seconds}s");
    let path = cache.join(format!("{name}.mp4"));
    if !path.is_file() {
        let tmp = cache.join(format!("{name}.partial.mp4"));
        let video: &[&str] = if codec == "hevc" {
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "log-level=error:keyint=45:min-keyint=45:scenecut=0",
            ]
        } else {
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "high",
                "-g",
                "45",
                "-keyint_min",
                "45",
                "-sc_threshold",
                "0",
            ]
        };
        eprintln!("publish: generating {}", path.display());
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size=1920x1080:rate=30:duration={seconds}"
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=330:duration={seconds}"))
            .args(video)
            .args([
                "-pix_fmt", "yuv420p", "-b:v", "5M", "-maxrate", "6M", "-bufsize", "10M",
            ])
            .args([
                "-c:a",
                "aac",
                "-ac",
                "2",
                "-b:a",
                "128k",
                "-movflags",
                "+faststart",
            ])
            .arg(&tmp)
            .output()
            .map_err(Error::io("running", "ffmpeg"))?;
        if !out.status.success() {
            return Err(Error::Task(format!(
                "generating {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming", tmp.display()))?;
    }
    Ok(Input {
        name,
        codec,
        seconds,
        path,
    })
}

/// `appliance serve` from this binary, on loopback.
struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
    config: PathBuf,
}

impl Server {
    fn start(dir: &Path, early_rung: bool) -> Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(Error::io("creating", data.display()))?;
        let config = dir.join("appliance.toml");
        // The model and player of the checkout the bench runs from (a
        // config's relative paths are its own folder's, here a scratch one).
        let here =
            std::env::current_dir().map_err(Error::io("finding", "the working directory"))?;
        let defaults = settings::Config::default();
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[jobs]\nworkers = 1\n[transcode]\nrungs = [1080, 720, 480, 360]\nearly_rung = {early_rung}\n[player]\nhls_js = {:?}\n[feed]\nmodel_dir = {:?}\n",
                data.display().to_string(),
                here.join(&defaults.player.hls_js).display().to_string(),
                here.join(&defaults.feed.model_dir).display().to_string(),
            ),
        )
        .map_err(Error::io("writing", config.display()))?;
        let exe = std::env::current_exe().map_err(Error::io("finding", "this binary"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("server.log"))
                    .map_err(Error::io("creating", "server.log"))?,
            ))
            .spawn()
            .map_err(Error::io("starting", "appliance serve"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let base = loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(Error::io("reading", "the server's output"))?;
            if n == 0 {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                return Err(Error::Task(format!("the server exited:\n{log}")));
            }
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in reader.lines() {});
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Self {
            child,
            base,
            agent,
            config,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A creator's bearer token (registered through the API).
    fn creator(&self) -> Result<String> {
        let v = self.send(
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "benchcreator", "password": "bench password 1", "role": "creator"})),
            &[],
        )?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Task(format!("register answered {v}")))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        raw: &[u8],
    ) -> Result<Value> {
        let url = self.url(path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let resp = if let Some(b) = body {
            let req = req
                .header("content-type", "application/json")
                .body(b.to_string().into_bytes())
                .map_err(|e| Error::Task(e.to_string()))?;
            self.agent.run(req)
        } else {
            let req = req
                .header("content-type", "application/octet-stream")
                .body(raw.to_vec())
                .map_err(|e| Error::Task(e.to_string()))?;
            self.agent.run(req)
        }
        .map_err(|e| Error::Task(format!("{method} {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| Error::Task(format!("{method} {url}: {e}")))?;
        if status >= 300 {
            return Err(Error::Task(format!("{method} {url}: {status} {text}")));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Uploads `input` in chunks, completes it, and times first playable
    /// and the whole ladder from `complete`'s answer.
    fn publish(&self, token: &str, input: &Input) -> Result<(f64, f64, Vec<String>)> {
        let bytes =
            std::fs::read(&input.path).map_err(Error::io("reading", input.path.display()))?;
        let init = self.send(
            "POST",
            "/api/v1/uploads/init",
            Some(token),
            Some(json!({"filename": format!("{}.mp4", input.name), "fileSize": bytes.len(), "mimeType": "video/mp4"})),
            &[],
        )?;
        let id = init["uploadId"]
            .as_str()
            .ok_or_else(|| Error::Task(format!("init answered {init}")))?
            .to_owned();
        let chunk = init["chunkSize"].as_u64().unwrap_or(1 << 20).max(1) as usize;
        for (n, part) in bytes.chunks(chunk).enumerate() {
            self.send(
                "PUT",
                &format!("/api/v1/uploads/{id}/chunks/{n}"),
                Some(token),
                None,
                part,
            )?;
        }
        let done = self.send(
            "POST",
            &format!("/api/v1/uploads/{id}/complete"),
            Some(token),
            Some(json!({"title": input.name, "visibility": "public"})),
            &[],
        )?;
        let started = Instant::now();
        let video = done["videoId"]
            .as_str()
            .ok_or_else(|| Error::Task(format!("complete answered {done}")))?
            .to_owned();
        let mut first: Option<(f64, Vec<String>)> = None;
        loop {
            let s = self.send(
                "GET",
                &format!("/api/v1/videos/{video}/status"),
                Some(token),
                None,
                &[],
            )?;
            let at = started.elapsed().as_secs_f64();
            if s["status"] == "failed" {
                return Err(Error::Task(format!("{} failed: {s}", input.name)));
            }
            if s["status"] == "ready" {
                let rungs: Vec<String> = s["liveRungs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let first = first.get_or_insert((at, rungs));
                if s["stage"] != "growing" {
                    return Ok((first.0, at, first.1.clone()));
                }
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err(Error::Task(format!(
                    "{} not done after an hour: {s}",
                    input.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.config;
    }
}
