//! `appliance bench ingest`: watch events per second accepted over HTTP by
//! a real server (in this process, on loopback) and how long until they
//! are queryable in the analytics rollups, for whichever stores the config
//! names (embedded by default; ClickHouse + Redis with `--config`).
//!
//! Two kinds of run, each on a fresh server, data directory and database:
//! a burst (closed loop: every client sends its next batch as soon as the
//! last was answered) and paced runs (open loop: the clients together send
//! `rate` events/s on a fixed schedule, whatever the server does; a client
//! behind schedule sends at once). Every 500 ms a run samples the age of
//! the oldest undelivered event in the spool and the accept → queryable
//! lag: how long ago the oldest event accepted but not yet counted in the
//! rollups was accepted. After the load it waits until every accepted
//! event is counted (the drain time).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::{App, Handle};
use crate::engagement::{Listener, Scope};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339};
use settings::Config;

pub struct Options {
    pub config: Option<PathBuf>,
    pub clients: usize,
    pub batch: usize,
    /// Length of the closed-loop burst; 0: none.
    pub secs: u64,
    /// Open-loop runs: events/s and seconds.
    pub paced: Vec<(u64, u64)>,
    pub videos: usize,
    pub out: PathBuf,
    /// A previous report kept under `before`, for comparison.
    pub before: Option<PathBuf>,
    /// What else ran on the machine meanwhile.
    pub note: String,
}

#[derive(Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub analytics: String,
    pub hot: String,
    /// `analytics.batch_size`: the most events the shipper sends at once.
    pub ship_batch_size: usize,
    /// The load generator runs in the same process (its threads compete
    /// with the server for the cores), and what else ran.
    pub workload: String,
    pub goal_events_per_sec: u64,
    pub goal_lag_ms: u64,
    pub runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub struct Run {
    /// `burst` (closed loop) or `paced` (open loop at `target_events_per_sec`).
    pub mode: &'static str,
    pub target_events_per_sec: Option<u64>,
    pub clients: usize,
    pub batch: usize,
    pub secs: f64,
    pub requests: u64,
    pub events_accepted: u64,
    pub events_per_sec: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    /// Age of the oldest undelivered event, over the load and the drain.
    pub max_shipping_lag_ms: i64,
    pub p99_shipping_lag_ms: i64,
    /// Accept → queryable in the rollups, over the load and the drain.
    pub max_queryable_lag_ms: i64,
    pub p99_queryable_lag_ms: i64,
    /// From the end of the load until every accepted event is counted.
    pub drain_after_load_ms: u64,
    /// Deliveries to the analytics store, and those sent as retries.
    pub ship_batches: u64,
    pub ship_retries: u64,
    pub series: Vec<Sample>,
}

#[derive(Serialize, Clone, Copy)]
pub struct Sample {
    /// Since the load began.
    pub t_ms: u64,
    pub accepted: u64,
    /// Counted in the rollups.
    pub queryable: u64,
    pub spool_lag_ms: i64,
    pub queryable_lag_ms: i64,
}

pub fn run(o: &Options) -> Result<Report> {
    let before = match &o.before {
        Some(p) => {
            let text = std::fs::read(p).map_err(Error::io("reading", p.display()))?;
            Some(serde_json::from_slice(&text).map_err(|e| {
                Error::Config(format!("{} is not a bench report: {e}", p.display()))
            })?)
        }
        None => None,
    };
    let rt = super::runtime().map_err(Error::io("starting", "the runtime"))?;
    let mut plan: Vec<(&'static str, Option<u64>, u64)> = Vec::new();
    if o.secs > 0 {
        plan.push(("burst", None, o.secs));
    }
    plan.extend(
        o.paced
            .iter()
            .map(|&(rate, secs)| ("paced", Some(rate), secs)),
    );
    let mut runs = Vec::new();
    let (mut analytics, mut hot) = (String::new(), String::new());
    let mut ship_batch_size = 0;
    for (i, (mode, rate, secs)) in plan.into_iter().enumerate() {
        let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
        let mut config = Config::load(o.config.as_deref())?;
        config.storage.data_dir = scratch.path().join("data");
        config.objects.path = None;
        // A fresh database per run, so the rollups count only this run.
        config.analytics.database = format!("appliance_bench_{}_{i}", std::process::id());
        config.limits.feed_per_minute = 0;
        ship_batch_size = config.analytics.batch_size;
        let (r, a, h) = rt.block_on(one_run(config, o, mode, rate, secs))?;
        (analytics, hot) = (a, h);
        runs.push(r);
    }
    Ok(Report {
        machine: benches::Machine::current(),
        analytics,
        hot,
        ship_batch_size,
        workload: format!(
            "{} clients × batches of {} watch events over HTTP/1.1 on loopback, load \
             generator in the same process; {}",
            o.clients, o.batch, o.note
        ),
        goal_events_per_sec: 100_000,
        goal_lag_ms: 5000,
        runs,
        before,
    })
}

/// A server with a creator's videos and one viewer token per client.
struct Bench {
    /// Holds the data directory's lock until the run ends.
    opened: super::serve::Opened,
    creator: String,
    tokens: Vec<String>,
    videos: Vec<String>,
}

async fn server(config: Config, o: &Options) -> Result<Bench> {
    let opened = super::serve::open(config)?;
    let app = opened.app.clone();
    app.engagement.start(&app.config.storage.data_dir).await?;
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
    Ok(Bench {
        opened,
        creator: creator.id,
        tokens,
        videos,
    })
}

async fn one_run(
    config: Config,
    o: &Options,
    mode: &'static str,
    rate: Option<u64>,
    secs: u64,
) -> Result<(Run, String, String)> {
    let Bench {
        opened,
        creator,
        tokens,
        videos,
    } = server(config, o).await?;
    let app: Arc<App> = opened.app.clone();
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
    let (tcp, addr) = super::serve::bind_loopback().await?;
    let http = super::serve::spawn_http(&app, tcp, router, stop_rx.clone());
    eprintln!(
        "ingest: {mode} {} for {secs} s, {} clients × batches of {}, against {} / {} …",
        rate.map_or("closed loop".into(), |r| format!("at {r} events/s")),
        o.clients,
        o.batch,
        app.engagement.analytics.name(),
        app.engagement.hot.name()
    );
    let running = Arc::new(AtomicBool::new(true));
    let url = format!("http://{addr}/api/v1/engagement/watch-batch");
    let started = Instant::now();
    let mut threads: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(c, token)| {
            let client = Client {
                c,
                clients: o.clients,
                batch: o.batch,
                rate,
                url: url.clone(),
                token,
                videos: videos.clone(),
                running: running.clone(),
            };
            std::thread::spawn(move || client.run(started))
        })
        .collect();
    let stats = &app.engagement.stats;
    let accepted = || stats.accepted.load(Ordering::Relaxed);
    let scope = Scope::Creator(creator);
    let mut sampler = Sampler::default();
    let mut next_sample = Duration::ZERO;
    let load = Duration::from_secs(secs);
    let mut lat = Vec::new();
    // When the last client stopped, and what had been accepted by then.
    let mut load_end: Option<(Instant, u64)> = None;
    let drained = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let at = started.elapsed();
        sampler.history.push((at, accepted()));
        if at >= load {
            running.store(false, Ordering::Relaxed);
        }
        if load_end.is_none() && at >= load && threads.iter().all(|t| t.is_finished()) {
            for t in threads.drain(..) {
                lat.extend(t.join().unwrap_or_default());
            }
            load_end = Some((Instant::now(), accepted()));
        }
        if at < next_sample && load_end.is_none() {
            continue;
        }
        let queryable: u64 = app
            .engagement
            .analytics
            .rollups(&scope, 0)
            .await
            .map(|rows| rows.iter().map(|r| r.views).sum())
            .unwrap_or(0);
        let at = started.elapsed();
        if at >= next_sample {
            next_sample = at + Duration::from_millis(500);
            sampler.sample(at, queryable, app.engagement.spool_lag_ms());
        }
        if let Some((end, total)) = load_end {
            if queryable >= total {
                sampler.sample(at, queryable, app.engagement.spool_lag_ms());
                break end.elapsed();
            }
            if end.elapsed() > Duration::from_secs(600) {
                return Err(Error::Task(format!(
                    "only {queryable} of {total} events reached the rollups within 10 minutes"
                )));
            }
        }
    };
    let load_secs = load_end.map_or(secs as f64, |(end, _)| (end - started).as_secs_f64());
    let total = load_end.map_or(0, |(_, n)| n);
    let _ = stop_tx.send(true);
    let _ = http.await;
    for w in workers {
        let _ = w.await;
    }
    lat.sort_by(f64::total_cmp);
    let pct = |f: fn(&Sample) -> i64, p: f64| -> i64 {
        let mut v: Vec<f64> = sampler.series.iter().map(|s| f(s) as f64).collect();
        v.sort_by(f64::total_cmp);
        benches::percentile(&v, p) as i64
    };
    let run = Run {
        mode,
        target_events_per_sec: rate,
        clients: o.clients,
        batch: o.batch,
        secs: load_secs,
        requests: lat.len() as u64,
        events_accepted: total,
        events_per_sec: total as f64 / load_secs,
        request_p50_ms: benches::percentile(&lat, 0.5),
        request_p99_ms: benches::percentile(&lat, 0.99),
        max_shipping_lag_ms: pct(|s| s.spool_lag_ms, 1.0),
        p99_shipping_lag_ms: pct(|s| s.spool_lag_ms, 0.99),
        max_queryable_lag_ms: pct(|s| s.queryable_lag_ms, 1.0),
        p99_queryable_lag_ms: pct(|s| s.queryable_lag_ms, 0.99),
        drain_after_load_ms: drained.as_millis() as u64,
        ship_batches: stats.ship_batches.load(Ordering::Relaxed),
        ship_retries: stats.ship_retries.load(Ordering::Relaxed),
        series: sampler.series,
    };
    let names = (
        app.engagement.analytics.name().to_owned(),
        app.engagement.hot.name().to_owned(),
    );
    drop(opened);
    Ok((run, names.0, names.1))
}

/// One load-generating client: its own user, connection and event ids.
struct Client {
    c: usize,
    clients: usize,
    batch: usize,
    /// Events/s of all clients together; `None`: closed loop.
    rate: Option<u64>,
    url: String,
    token: String,
    videos: Vec<String>,
    running: Arc<AtomicBool>,
}

impl Client {
    /// Sends batches until told to stop; the latencies of accepted ones.
    fn run(self, started: Instant) -> Vec<f64> {
        let agent = ureq::Agent::new_with_defaults();
        let auth = format!("Bearer {}", self.token);
        let ts = rfc3339(now_ms());
        let mut lat = Vec::new();
        let mut body = String::with_capacity(self.batch * 200);
        let mut n = 0usize;
        for k in 0usize.. {
            if !self.running.load(Ordering::Relaxed) {
                break;
            }
            if let Some(rate) = self.rate {
                // Batch k of client c goes out at its slot in the common
                // schedule, whether or not the server kept up.
                let slot = (k * self.clients + self.c) as f64 * self.batch as f64 / rate as f64;
                let due = started + Duration::from_secs_f64(slot);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                    if !self.running.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            // Written by hand: building `serde_json::Value`s cost the
            // generator (which shares the cores with the server) a third
            // of the machine.
            body.clear();
            body.push_str("{\"events\":[");
            for i in 0..self.batch {
                n += 1;
                let video = &self.videos[(self.c * 31 + n) % self.videos.len()];
                let _ = write!(
                    body,
                    "{}{{\"eventId\":\"c{}-{n}\",\"videoId\":\"{video}\",\"watchMs\":{},\
                     \"durationMs\":1500,\"completed\":{},\"source\":\"fyp\",\"timestamp\":\"{ts}\"}}",
                    if i == 0 { "" } else { "," },
                    self.c,
                    900 + n % 600,
                    n.is_multiple_of(2),
                );
            }
            body.push_str("]}");
            let t = Instant::now();
            let r = agent
                .post(&self.url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(&body);
            if matches!(&r, Ok(resp) if resp.status() == 202) {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        lat
    }
}

/// The run's time series.
#[derive(Default)]
struct Sampler {
    /// (since start, events accepted), every 50 ms.
    history: Vec<(Duration, u64)>,
    series: Vec<Sample>,
}

impl Sampler {
    /// When the `nth` accepted event (1-based) was accepted, interpolated
    /// between the 50 ms readings of the counter.
    fn accepted_at(&self, nth: u64) -> Option<Duration> {
        let i = self.history.iter().position(|&(_, n)| n >= nth)?;
        let (t1, n1) = self.history[i];
        let Some(&(t0, n0)) = i.checked_sub(1).map(|j| &self.history[j]) else {
            return Some(t1);
        };
        let f = (nth - n0) as f64 / (n1 - n0).max(1) as f64;
        Some(t0 + (t1 - t0).mul_f64(f.clamp(0.0, 1.0)))
    }

    fn sample(&mut self, at: Duration, queryable: u64, spool_lag_ms: i64) {
        let accepted = self.history.last().map_or(0, |&(_, n)| n);
        // The oldest event not yet counted is the (queryable + 1)th: the
        // shipper delivers in the order the spool accepted.
        let queryable_lag_ms = if queryable < accepted {
            self.accepted_at(queryable + 1)
                .map_or(0, |t| at.saturating_sub(t).as_millis() as i64)
        } else {
            0
        };
        self.series.push(Sample {
            t_ms: at.as_millis() as u64,
            accepted,
            queryable,
            spool_lag_ms,
            queryable_lag_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queryable_lag_is_the_age_of_the_oldest_uncounted_event() {
        let ms = Duration::from_millis;
        let mut s = Sampler {
            history: vec![(ms(0), 0), (ms(50), 100), (ms(100), 200), (ms(150), 200)],
            ..Sampler::default()
        };
        // Events 1..=100 arrived over the first 50 ms; the 51st at 25 ms.
        s.sample(ms(150), 50, 7);
        assert_eq!(s.series[0].queryable_lag_ms, 124);
        assert_eq!(s.series[0].accepted, 200);
        // All counted: no lag.
        s.sample(ms(150), 200, 0);
        assert_eq!(s.series[1].queryable_lag_ms, 0);
        assert_eq!(s.accepted_at(201), None);
    }
}
