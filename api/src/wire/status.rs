//! The status page's content (`GET /`): what an operator glances at —
//! health per dependency, jobs, live channels, hardware and placement,
//! load, encode speed, the event spool, the feed — and, behind an admin
//! login, failed jobs with their reasons and the recent errors.

use serde::Serialize;

use super::{Health, Job};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub version: String,
    pub commit: String,
    pub host: String,
    pub started_at: String,
    pub uptime_secs: u64,
    pub health: Option<Health>,
    /// Jobs in the catalog by state (`queued`, `running`, `failed`, …).
    pub jobs: Vec<(String, u64)>,
    pub transcode: TranscodeLine,
    /// Where each stage runs (`decode GPU 0 (…) via NVDEC`).
    pub stages: Vec<String>,
    pub gpus: Vec<GpuLine>,
    /// 1, 5 and 15-minute load averages, and the CPUs they compare to.
    pub load: [f64; 3],
    pub cpus: usize,
    pub spool_depth: u64,
    pub shipping_lag_secs: f64,
    pub feed: FeedLine,
    pub live: Vec<LiveLine>,
    pub http: HttpLine,
    /// Present only for an admin.
    pub admin: Option<AdminDetails>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscodeLine {
    pub frames: u64,
    pub seconds: f64,
    /// Source frames per second of wall time over this process's jobs.
    pub fps: Option<f64>,
    pub succeeded: u64,
    pub failed: u64,
    pub gpu_fallbacks: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuLine {
    pub index: u32,
    pub name: String,
    /// SM, memory, NVENC and NVDEC utilisation, percent (NVML), when known.
    pub utilisation: Option<[u32; 4]>,
    pub encode_sessions: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedLine {
    pub requests: u64,
    pub fallbacks: u64,
    /// Upper bounds of the histogram buckets holding the median and the
    /// 99th percentile, milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Pages by where they came from (`personal`, `trending`, …).
    pub sources: Vec<(String, u64)>,
    pub index_videos: usize,
    pub ranker: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveLine {
    pub id: String,
    pub name: String,
    pub state: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpLine {
    pub open_connections: u64,
    pub requests: u64,
    pub server_errors: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminDetails {
    pub running: Vec<Job>,
    pub failed: Vec<Job>,
    pub recent_errors: Vec<LogLine>,
}

/// One warning or error the process logged.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub at: String,
    pub level: String,
    pub target: String,
    pub message: String,
}
