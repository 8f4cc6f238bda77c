//! `appliance bench ingest`: watch events per second accepted over HTTP by
//! a real server (in this process, on loopback) and the lag until they are
//! queryable in the analytics rollups, for whichever stores the config
//! names (embedded by default; ClickHouse + Redis with `--config`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::Handle;
use crate::engagement::{Listener, Scope};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339};
use settings::Config;

pub struct Options {
    pub config: Option<PathBuf>,
    pub clients: usize,
    pub batch: usize,
    pub secs: u64,
    pub videos: usize,
    pub out: PathBuf,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub analytics: String,
    pub hot: String,
    pub clients: usize,
    pub batch: usize,
    pub secs: f64,
    pub requests: u64,
    pub events_accepted: u64,
    pub events_per_sec: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    /// Largest age of the oldest undelivered event seen while loading.
    pub max_shipping_lag_ms: i64,
    /// From the last accepted event to every event counted in the rollups.
    pub drain_after_load_ms: u64,
    pub goal_events_per_sec: u64,
    pub goal_lag_ms: u64,
}

pub fn run(o: &Options) -> Result<Report> {
    let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
    let mut config = Config::load(o.config.as_deref())?;
    config.storage.data_dir = scratch.path().join("data");
    config.objects.path = None;
    // A fresh database per run, so the rollups count only this run.
    config.analytics.database = format!("appliance_bench_{}", std::process::id());
    config.limits.feed_per_minute = 0;
    let rt = super::runtime().map_err(Error::io("starting", "the runtime"))?;
    let report = rt.block_on(run_in(config, o));
    drop(scratch);
    report
}

async fn run_in(config: Config, o: &Options) -> Result<Report> {
    let opened = super::serve::open(config)?;
    let app = opened.app.clone();
    app.engagement.start(&app.config.storage.data_dir).await?;
    // Users with tokens, and videos to watch (catalog rows are enough).
    let creator = app
        .accounts
        .create_user("benchcreator", "bench-password-1", api::wire::Role::Creator)
        .await?;
    let mut tokens = Vec::new();
    for i in 0..o.clients {
        let u = app
            .accounts
            .create_user(
                &format!("benchviewer{i}"),
                "bench-password-1",
                api::wire::Role::Viewer,
            )
            .await?;
        tokens.push(app.accounts.issue_token(&u).await?.token);
    }
    let mut videos = Vec::new();
    for i in 0..o.videos {
        let row = cat::VideoRow::bench(&format!("{:032x}", i + 1), &creator.id);
        videos.push(row.id.clone());
        app.catalog
            .call(move |c| cat::insert_video(c, &row))
            .await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener: Arc<dyn Listener> = app.recommender.clone();
    let workers = app.engagement.spawn(listener, stop_rx.clone());
    let router = api::router(
        Handle(app.clone()),
        api::RouterConfig {
            origin: api::OriginPolicy {
                playlist_max_age: Duration::from_secs(1),
                not_found_max_age: Duration::from_secs(1),
            },
            limits: api::BodyLimits {
                json: 1 << 20,
                chunk: 1 << 20,
                single_shot: 1 << 20,
            },
            hls_js: None,
        },
    );
    let (listener, addr) = super::serve::bind_loopback().await?;
    let server = super::serve::spawn_http(&app, listener, router, stop_rx.clone());

    eprintln!(
        "ingest: {} clients × batches of {} for {} s against {} / {} …",
        o.clients,
        o.batch,
        o.secs,
        app.engagement.analytics.name(),
        app.engagement.hot.name()
    );
    let running = Arc::new(AtomicBool::new(true));
    let accepted = Arc::new(AtomicU64::new(0));
    let url = format!("http://{addr}/api/v1/engagement/watch-batch");
    let started = Instant::now();
    let mut threads = Vec::new();
    for (c, token) in tokens.into_iter().enumerate() {
        let (running, accepted, url, videos, batch) = (
            running.clone(),
            accepted.clone(),
            url.clone(),
            videos.clone(),
            o.batch,
        );
        threads.push(std::thread::spawn(move || -> Vec<f64> {
            let agent = ureq::Agent::new_with_defaults();
            let mut lat = Vec::new();
            let mut n = 0usize;
            let ts = rfc3339(now_ms());
            while running.load(Ordering::Relaxed) {
                let events: Vec<serde_json::Value> = (0..batch)
                    .map(|_| {
                        n += 1;
                        serde_json::json!({
                            "eventId": format!("c{c}-{n}"), "videoId": videos[(c * 31 + n) % videos.len()],
                            "watchMs": 900 + n % 600, "durationMs": 1500, "completed": n.is_multiple_of(2),
                            "source": "fyp", "timestamp": ts,
                        })
                    })
                    .collect();
                let body = serde_json::json!({ "events": events }).to_string();
                let t = Instant::now();
                let r = agent
                    .post(&url)
                    .header("authorization", &format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .send(&body);
                if matches!(&r, Ok(resp) if resp.status() == 202) {
                    accepted.fetch_add(batch as u64, Ordering::Relaxed);
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lat
        }));
    }
    let mut max_lag = 0i64;
    while started.elapsed() < Duration::from_secs(o.secs) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        max_lag = max_lag.max(app.engagement.spool_lag_ms());
    }
    running.store(false, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in threads {
        lat.extend(t.join().unwrap_or_default());
    }
    let load_secs = started.elapsed().as_secs_f64();
    let load_end = Instant::now();
    let total = accepted.load(Ordering::Relaxed);
    // Until every accepted event is counted in the rollups.
    let scope = Scope::Creator(creator.id.clone());
    let drained = loop {
        max_lag = max_lag.max(app.engagement.spool_lag_ms());
        let views: u64 = app
            .engagement
            .analytics
            .rollups(&scope, 0)
            .await
            .map(|rows| rows.iter().map(|r| r.views).sum())
            .unwrap_or(0);
        if views >= total {
            break load_end.elapsed();
        }
        if load_end.elapsed() > Duration::from_secs(600) {
            return Err(Error::Task(format!(
                "only {views} of {total} events reached the rollups within 10 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop_tx.send(true);
    let _ = server.await;
    for w in workers {
        let _ = w.await;
    }
    lat.sort_by(f64::total_cmp);
    Ok(Report {
        machine: benches::Machine::current(),
        analytics: app.engagement.analytics.name().into(),
        hot: app.engagement.hot.name().into(),
        clients: o.clients,
        batch: o.batch,
        secs: load_secs,
        requests: lat.len() as u64,
        events_accepted: total,
        events_per_sec: total as f64 / load_secs,
        request_p50_ms: benches::percentile(&lat, 0.5),
        request_p99_ms: benches::percentile(&lat, 0.99),
        max_shipping_lag_ms: max_lag,
        drain_after_load_ms: drained.as_millis() as u64,
        goal_events_per_sec: 100_000,
        goal_lag_ms: 5000,
    })
}
