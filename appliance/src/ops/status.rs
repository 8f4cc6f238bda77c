//! The status page's content (`api::routes::status` renders it).

use std::sync::atomic::Ordering;

use api::wire::*;

use super::Ops;
use crate::feed::LATENCY_BUCKETS_MS;
use crate::store::catalog::{self as cat, rfc3339, JobRow};

/// A catalog job as the API shows it.
pub(super) fn job_of(j: JobRow) -> Job {
    Job {
        id: j.id,
        video_id: j.video_id,
        state: j.state,
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        last_error: j.last_error,
        lease_owner: j.lease_owner,
        lease_expires: j.lease_expires.map(rfc3339),
        run_after: rfc3339(j.run_after),
        created_at: rfc3339(j.created_at),
        updated_at: rfc3339(j.updated_at),
    }
}

pub(super) async fn report(ops: &Ops, admin: bool) -> StatusReport {
    let (started, started_wall) = super::recent::started();
    let counts = ops
        .catalog
        .call(|c| cat::job_counts(c))
        .await
        .unwrap_or_default();
    let jobs = ["queued", "running", "failed", "succeeded", "cancelled"]
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
            ((*s).to_owned(), n)
        })
        .collect();
    let c = &ops.videos.counters;
    let frames = c.frames.load(Ordering::Relaxed);
    let seconds = c.transcode_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let nvml = hardware::nvidia::nvml::get().ok();
    let load = ops.inventory.load();
    let gpus = ops
        .inventory
        .gpus
        .iter()
        .enumerate()
        .map(|(i, g)| GpuLine {
            index: g.index as u32,
            name: g.name.clone(),
            utilisation: nvml
                .zip(g.pci_bus_id.as_deref())
                .and_then(|(n, pci)| n.utilisation(pci))
                .map(|u| [u.gpu, u.memory, u.encoder, u.decoder]),
            encode_sessions: load.get(i).map_or(0, |l| l.encode_sessions),
        })
        .collect();
    let (requests, server_errors) = ops.conns.requests.totals();
    let admin = if admin {
        let rows = ops
            .catalog
            .call(|c| cat::jobs_in_states(c, &["running", "failed"], 100))
            .await
            .unwrap_or_default();
        let (running, failed): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|r| job_of(r.job))
            .partition(|j| j.state == "running");
        Some(AdminDetails {
            running,
            failed,
            recent_errors: super::recent::recent(),
        })
    } else {
        None
    };
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: crate::BUILD_COMMIT.to_owned(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        started_at: rfc3339(
            started_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
        uptime_secs: started.elapsed().as_secs(),
        health: Some(super::readiness::readiness(ops).await),
        jobs,
        transcode: TranscodeLine {
            frames,
            seconds,
            fps: (seconds > 0.0).then(|| frames as f64 / seconds),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            gpu_fallbacks: media::gpu_fallbacks(),
        },
        stages: ops.inventory.stage_report(),
        gpus,
        load: load_average(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        spool_depth: ops.engagement.spool_depth(),
        shipping_lag_secs: ops.engagement.spool_lag_ms() as f64 / 1000.0,
        feed: feed_line(ops),
        live: ops
            .live
            .running()
            .into_iter()
            .map(|(id, state)| LiveLine {
                name: String::new(),
                id,
                state,
            })
            .collect(),
        http: HttpLine {
            open_connections: ops.conns.open.load(Ordering::Relaxed),
            requests,
            server_errors,
            refused: ops.conns.refused.load(Ordering::Relaxed),
        },
        admin,
    }
}

fn feed_line(ops: &Ops) -> FeedLine {
    let s = &ops.feed.stats;
    let counts: Vec<u64> = s
        .latency
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let health = ops.feed.health();
    FeedLine {
        requests: s.requests.load(Ordering::Relaxed),
        fallbacks: s.fallbacks.load(Ordering::Relaxed),
        p50_ms: quantile_bound(&counts, 0.5),
        p99_ms: quantile_bound(&counts, 0.99),
        sources: s.sources(),
        index_videos: health.index_videos,
        ranker: match health.ranker {
            Ok(name) => name.to_owned(),
            Err(e) => format!("unusable: {e}"),
        },
    }
}

/// The upper bound (ms) of the bucket holding quantile `q`; `None` with no
/// samples, or when it falls past the last bound.
fn quantile_bound(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil() as u64;
    let mut cum = 0;
    for (i, n) in counts.iter().enumerate() {
        cum += n;
        if cum >= want {
            return LATENCY_BUCKETS_MS.get(i).copied();
        }
    }
    None
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram_bounds() {
        // Buckets ≤1, ≤2.5, ≤5 … ms; 90 fast pages, 9 at ≤10 ms, 1 slow.
        let mut counts = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
        counts[0] = 90;
        counts[3] = 9;
        counts[LATENCY_BUCKETS_MS.len()] = 1;
        assert_eq!(quantile_bound(&counts, 0.5), Some(1.0));
        assert_eq!(quantile_bound(&counts, 0.99), Some(10.0));
        assert_eq!(quantile_bound(&counts, 1.0), None);
        assert_eq!(quantile_bound(&[0; 3], 0.5), None);
    }
}
