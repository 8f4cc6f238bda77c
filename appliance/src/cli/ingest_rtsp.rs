//! `appliance ingest-rtsp URL --out DIR`: one camera into a live HLS ladder
//! from the command line, with progress on stderr, until `--duration` runs
//! out or SIGINT/SIGTERM; the playlists then end with `EXT-X-ENDLIST`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use media::live::{Channel, ChannelOptions, IngestOptions, LadderConfig};

/// The command's arguments, parsed by clap straight into this struct.
#[derive(clap::Args)]
pub struct Args {
    /// rtsp://[user:password@]host[:port]/path (credentials are never logged).
    pub url: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Rung heights (short side), comma-separated, from 1080,720,480,360.
    #[arg(long, value_delimiter = ',', default_value = "720,480,360")]
    pub rungs: Vec<u32>,
    /// x264 preset for the CPU encoder.
    #[arg(long, default_value = "veryfast")]
    pub preset: String,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Redial when no frame arrives for this long.
    #[arg(long, default_value_t = 10)]
    pub watchdog_secs: u64,
    /// RTP over UDP instead of the RTSP connection.
    #[arg(long)]
    pub udp: bool,
    /// Where decode, scale and encode run: auto | cpu | nvidia (NVDEC takes
    /// the camera's stream and scales every rung on the GPU; NVENC encodes
    /// where the GPU has it).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Keep every segment (listed in each track's recorded.jsonl) so the
    /// stream can become a VOD video; without it old segments are deleted.
    #[arg(long)]
    pub record: bool,
}

pub fn run(a: Args) -> ExitCode {
    let url = match url::Url::parse(&a.url) {
        Ok(u) if u.scheme() == "rtsp" => u,
        Ok(u) => {
            eprintln!("error: {} is not an rtsp:// URL", media::live::redacted(&u));
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: the camera URL does not parse: {e}");
            return ExitCode::from(2);
        }
    };
    if a.watchdog_secs == 0 {
        eprintln!("error: --watchdog-secs must be at least 1");
        return ExitCode::from(2);
    }
    let request = match a.backend.parse::<hardware::BackendRequest>() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let inventory = hardware::Inventory::discover();
    // Held until the command ends: the GPU sessions the channel uses.
    let reservation = match inventory.reserve(request, &media::live::workload(&a.rungs)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = media::live::redacted(&url);
    let mut ingest = IngestOptions::new(url);
    ingest.watchdog = Duration::from_secs(a.watchdog_secs);
    ingest.udp = a.udp;
    let opts = ChannelOptions {
        ingest,
        dir: a.out.clone(),
        ladder: LadderConfig {
            rungs: a.rungs,
            preset: a.preset,
            placement: reservation.placement,
        },
        record: a.record,
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return super::report(&e),
    };
    rt.block_on(async move {
        let channel = match Channel::start(opts) {
            Ok(c) => c,
            Err(e) => return super::report(&e),
        };
        eprintln!(
            "live: pulling {shown} into {} ({})",
            a.out.display(),
            reservation.placement
        );
        let began = Instant::now();
        let deadline = a.duration.map(|s| began + Duration::from_secs(s));
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let (mut last_frames, mut last_bytes) = (0u64, 0u64);
        let mut last_error = None;
        loop {
            let until_deadline = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tick.tick() => {}
                _ = super::serve::shutdown_signal() => break,
                _ = tokio::time::sleep(until_deadline.unwrap_or(Duration::MAX)), if until_deadline.is_some() => break,
            }
            let s = channel.stats().snapshot();
            if s.last_error != last_error {
                if let Some(e) = &s.last_error {
                    eprintln!("live: {e}");
                }
                last_error = s.last_error.clone();
            }
            let fps = (s.frames_in - last_frames) as f64 / 2.0;
            let kbps = (s.bytes_in - last_bytes) as f64 * 8.0 / 2.0 / 1000.0;
            (last_frames, last_bytes) = (s.frames_in, s.bytes_in);
            eprintln!(
                "live: {:?} {} | {fps:.1} fps in, {kbps:.0} kb/s | {} segments, latency {} ms | {} reconnects, {} dropped",
                s.state,
                s.input.as_deref().unwrap_or("-"),
                s.segments,
                s.latency_ms,
                s.reconnects,
                s.dropped
            );
        }
        eprintln!("live: stopping");
        match channel.stop().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::report(&e),
        }
    })
}
