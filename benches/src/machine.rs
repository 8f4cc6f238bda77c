use serde::Serialize;

/// The machine a result was measured on, so results compare like with like.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub description: String,
    pub cpu: String,
    pub logical_cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub ffmpeg: String,
    pub gpus: Vec<String>,
}

impl Machine {
    pub fn current() -> Self {
        let inv = hardware::Inventory::discover();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                })
            })
            .flatten()
            .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| std::env::consts::OS.into());
        let ffmpeg = std::process::Command::new("ffmpeg")
            .arg("-version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "ffmpeg not found".into());
        let gpus: Vec<String> = inv.gpus.iter().map(|g| g.name.clone()).collect();
        let description = format!(
            "{} × {} logical cores, {memory_gib} GiB RAM, {}, {}",
            inv.cpu.model,
            inv.cpu.logical_cores,
            if gpus.is_empty() {
                "no GPU".to_owned()
            } else {
                gpus.join(", ")
            },
            os
        );
        Self {
            description,
            cpu: inv.cpu.model,
            logical_cores: inv.cpu.logical_cores,
            memory_gib,
            os,
            ffmpeg,
            gpus,
        }
    }
}
