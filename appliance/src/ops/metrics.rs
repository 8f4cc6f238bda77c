//! `/metrics`: Prometheus text for the feed, engagement, the job queue and
//! this process's job outcomes, and the GPUs.

use std::sync::atomic::Ordering;

use super::Ops;
use crate::store::catalog as cat;

/// Prometheus text for `/metrics`.
pub(super) async fn render(app: &Ops) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    app.feed.render_metrics(&mut out);
    app.engagement.render_metrics(&mut out);
    app.conns.render(&mut out);
    let counts = app
        .catalog
        .call(|c| cat::job_counts(c))
        .await
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP appliance_jobs Transcode jobs in the catalog, by state."
    );
    let _ = writeln!(out, "# TYPE appliance_jobs gauge");
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "appliance_jobs{{state=\"{state}\"}} {n}");
    }
    let c = &app.videos.counters;
    let _ = writeln!(
        out,
        "# HELP appliance_job_outcomes_total Job attempts ended by this process, by outcome."
    );
    let _ = writeln!(out, "# TYPE appliance_job_outcomes_total counter");
    for (name, v) in [
        ("succeeded", &c.succeeded),
        ("failed", &c.failed),
        ("retried", &c.retried),
        ("cancelled", &c.cancelled),
    ] {
        let _ = writeln!(
            out,
            "appliance_job_outcomes_total{{outcome=\"{name}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let frames = c.frames.load(Ordering::Relaxed);
    let ms = c.transcode_ms.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP appliance_transcode_frames_total Source frames transcoded."
    );
    let _ = writeln!(out, "# TYPE appliance_transcode_frames_total counter");
    let _ = writeln!(out, "appliance_transcode_frames_total {frames}");
    let _ = writeln!(
        out,
        "# HELP appliance_transcode_seconds_total Wall time of successful transcodes."
    );
    let _ = writeln!(out, "# TYPE appliance_transcode_seconds_total counter");
    let _ = writeln!(
        out,
        "appliance_transcode_seconds_total {:.3}",
        ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "# HELP appliance_gpu_fallbacks_total Jobs whose GPU attempt failed and were rerun on the CPU."
    );
    let _ = writeln!(out, "# TYPE appliance_gpu_fallbacks_total counter");
    let _ = writeln!(
        out,
        "appliance_gpu_fallbacks_total {}",
        media::gpu_fallbacks()
    );
    let _ = writeln!(
        out,
        "# HELP appliance_gpu_utilisation_percent GPU engine utilisation (NVML), by GPU and engine."
    );
    let _ = writeln!(out, "# TYPE appliance_gpu_utilisation_percent gauge");
    let nvml = hardware::nvidia::nvml::get().ok();
    for g in &app.inventory.gpus {
        let Some(u) = nvml
            .zip(g.pci_bus_id.as_deref())
            .and_then(|(n, pci)| n.utilisation(pci))
        else {
            continue;
        };
        for (engine, v) in [
            ("sm", u.gpu),
            ("memory", u.memory),
            ("nvenc", u.encoder),
            ("nvdec", u.decoder),
        ] {
            let _ = writeln!(
                out,
                "appliance_gpu_utilisation_percent{{gpu=\"{}\",engine=\"{engine}\"}} {v}",
                g.index
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP appliance_gpu_encode_sessions NVENC sessions held by running jobs, by GPU."
    );
    let _ = writeln!(out, "# TYPE appliance_gpu_encode_sessions gauge");
    for (i, l) in app.inventory.load().iter().enumerate() {
        let _ = writeln!(
            out,
            "appliance_gpu_encode_sessions{{gpu=\"{i}\"}} {}",
            l.encode_sessions
        );
    }
    out.push_str(&app.live.metrics());
    host_metrics(app, &mut out);
    out
}

/// Disk, descriptors and the build: what a fleet alerts on before the box
/// refuses uploads, and which release each box runs.
fn host_metrics(app: &Ops, out: &mut String) {
    use std::fmt::Write;
    let data = &app.config.storage.data_dir;
    if let Ok(d) = super::host::disk_space(data) {
        let _ = writeln!(
            out,
            "# HELP appliance_disk_free_bytes Bytes free for the box under its data dir.\n\
             # TYPE appliance_disk_free_bytes gauge\n\
             appliance_disk_free_bytes {}\n\
             # HELP appliance_disk_size_bytes Size of the file system holding the data dir.\n\
             # TYPE appliance_disk_size_bytes gauge\n\
             appliance_disk_size_bytes {}",
            d.available, d.total
        );
    }
    if let Ok(f) = super::host::fd_usage() {
        let _ = writeln!(
            out,
            "# HELP appliance_open_fds File descriptors this process holds.\n\
             # TYPE appliance_open_fds gauge\n\
             appliance_open_fds {}\n\
             # HELP appliance_max_fds This process's file-descriptor limit (soft).\n\
             # TYPE appliance_max_fds gauge\n\
             appliance_max_fds {}",
            f.open, f.limit
        );
    }
    let _ = writeln!(
        out,
        "# HELP appliance_build_info The running build: version and commit.\n\
         # TYPE appliance_build_info gauge\n\
         appliance_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::BUILD_COMMIT
    );
}
