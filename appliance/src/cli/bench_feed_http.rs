//! `appliance bench feed --http`: the for-you feed measured where viewers
//! meet it — over HTTP, through the real server (in this process, on
//! loopback) with its token check, rate limiter, engine, metadata and
//! durable impressions — under open-loop load.
//!
//! Open loop, as wrk2 does it: each scrolling client has a fixed send
//! schedule (the offered rate split between the clients) and every latency
//! is counted from when the request was *due*, not from when a late client
//! got round to sending it, so a server that falls behind shows it in the
//! tail instead of slowing the generator down (coordinated omission).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::app::App;
use crate::engagement::{Event, Kind};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms};
use settings::Config;

pub struct Options {
    pub config: Option<PathBuf>,
    pub sizes: Vec<usize>,
    /// Offered page requests per second, all clients together.
    pub rates: Vec<f64>,
    pub clients: usize,
    pub pages: usize,
    pub users: usize,
    pub secs: u64,
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub videos: usize,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Pages that start a session (retrieval + ranking + re-rank).
    pub first_pages: usize,
    pub first_page_p50_ms: f64,
    pub first_page_p99_ms: f64,
    pub first_page_p999_ms: f64,
    /// CPU the server spent (every thread but the load generator's) per
    /// page served, averaged over the run.
    pub server_cpu_ms_per_page: f64,
    /// Pages by the `source` the server answered (`personalized`,
    /// `cold_start`, `trending_fallback` …): a fast page that fell back is
    /// not a feed.
    pub sources: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct Size {
    pub videos: usize,
    pub users: usize,
    pub index: String,
    pub setup_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: benches::Machine,
    pub workload: String,
    pub goal_p99_ms_at_1m: f64,
    pub sizes: Vec<Size>,
    pub rows: Vec<Row>,
}

pub fn run(o: &Options) -> Result<Report> {
    if o.clients == 0 || o.pages == 0 || o.users == 0 || o.rates.iter().any(|r| *r <= 0.0) {
        return Err(Error::Config(
            "bench feed --http: clients, pages, users and every rate must be positive".into(),
        ));
    }
    let rt = super::runtime().map_err(Error::io("starting", "the runtime"))?;
    let mut sizes = Vec::new();
    let mut rows = Vec::new();
    for &n in &o.sizes {
        let (size, mut r) = rt.block_on(one_size(o, n))?;
        sizes.push(size);
        rows.append(&mut r);
    }
    Ok(Report {
        machine: benches::Machine::current(),
        workload: format!(
            "open loop over HTTP/1.1 keep-alive on loopback: {} scrolling clients, each on a fixed \
             schedule (offered rate / clients), sessions of {} for-you pages of 10 (page 1 \
             retrieves and ranks, later pages follow the cursor), a random one of {} signed-in \
             viewers with 30 watches each per session; latency from when each request was due; \
             {} s per rate after a discarded warm-up; embedded stores; the server runs in the \
             bench's process, the load generator on threads of its own (excluded from server CPU)",
            o.clients, o.pages, o.users, o.secs
        ),
        goal_p99_ms_at_1m: 25.0,
        sizes,
        rows,
    })
}

async fn one_size(o: &Options, n: usize) -> Result<(Size, Vec<Row>)> {
    let scratch = tempfile::tempdir().map_err(Error::io("creating", "a scratch directory"))?;
    let mut config = Config::load(o.config.as_deref())?;
    config.storage.data_dir = scratch.path().join("data");
    config.objects.path = None;
    config.analytics.database = format!("appliance_feedbench_{}", std::process::id());
    config.limits.feed_per_minute = 0;
    let t = Instant::now();
    let opened = super::serve::open(config)?;
    let app = opened.app.clone();
    app.engagement.start(&app.config.storage.data_dir).await?;
    eprintln!("feed --http: seeding {n} videos and {} viewers", o.users);
    let (tokens, labels) = seed(&app, n, o.users).await?;
    app.recommender
        .warm_up(&app.catalog, app.engagement.analytics.as_ref(), &[])
        .await?;
    let recommender = app.recommender.clone();
    let engine = app.recommender.engine.clone();
    let users = o.users;
    tokio::task::spawn_blocking(move || -> Result<()> {
        recommender.record(&watch_history(&labels, users));
        engine.rebuild_user_index()?;
        engine.refresh(now_ms() / 1000)?;
        Ok(())
    })
    .await??;
    let size = Size {
        videos: n,
        users: o.users,
        index: app
            .recommender
            .engine
            .videos_index
            .kind()
            .map(|k| k.describe())
            .unwrap_or_default(),
        setup_secs: t.elapsed().as_secs_f64(),
    };
    eprintln!("  ready in {:.1} s ({})", size.setup_secs, size.index);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = app.spawn(stop_rx.clone());
    let router = super::serve::router_for(&app, None);
    let (listener, addr) = super::serve::bind_loopback().await?;
    let server = super::serve::spawn_http(&app, listener, router, stop_rx);
    let url = format!("http://{addr}/api/v1/feed/for-you?limit=10");
    let tokens = Arc::new(tokens);
    let mut rows = Vec::new();
    // Connections, the allocator and the caches warm up at the lowest rate.
    let lowest = o.rates.iter().copied().fold(f64::INFINITY, f64::min);
    let warm = Load {
        url: url.clone(),
        tokens: tokens.clone(),
        clients: o.clients,
        pages: o.pages,
        rate: lowest,
        secs: 3,
        seed: 0,
    };
    tokio::task::spawn_blocking(move || warm.run()).await?;
    for (i, &rate) in o.rates.iter().enumerate() {
        let load = Load {
            url: url.clone(),
            tokens: tokens.clone(),
            clients: o.clients,
            pages: o.pages,
            rate,
            secs: o.secs,
            seed: 1 + i as u64,
        };
        let cpu_before = process_cpu_ms();
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || load.run()).await?;
        let wall = started.elapsed().as_secs_f64();
        let server_cpu = (process_cpu_ms() - cpu_before - done.loadgen_cpu_ms).max(0.0);
        let row = done.row(n, rate, wall, server_cpu);
        eprintln!(
            "  {n} videos, {rate} req/s offered: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, \
             p999 {:.2} ms; first pages p99 {:.2} ms; {:.2} ms CPU/page; {:?}",
            row.achieved_rps,
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            row.first_page_p99_ms,
            row.server_cpu_ms_per_page,
            row.sources
        );
        rows.push(row);
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    for w in workers {
        let _ = w.await;
    }
    drop(opened);
    drop(app);
    drop(scratch);
    Ok((size, rows))
}

/// A catalog of `n` ready public videos whose embeddings cluster like
/// topics (hashtags and sounds follow the topic), creators owning 50 each,
/// and `users` viewers with a bearer token each (returned, raw, with each
/// video's topic).
async fn seed(app: &App, n: usize, users: usize) -> Result<(Vec<(String, String)>, Vec<usize>)> {
    let clusters = (n / 500).clamp(20, 2000);
    let (vecs, labels) = benches::feed::clustered(n, clusters, 9);
    let topics = labels.clone();
    let creators = (n / 50).max(1);
    let now = now_ms();
    app.catalog
        .call(move |c| {
            let tx = c
                .transaction()
                .map_err(Error::catalog("seeding the bench catalog"))?;
            // Nobody signs in with these: the hash can never match.
            for i in 0..creators {
                cat::insert_user(
                    &tx,
                    &bench_user(&format!("benchcreator{i}"), "creator", now),
                )?;
            }
            let mut rng = StdRng::seed_from_u64(10);
            for i in 0..n {
                let topic = topics[i];
                let mut row = cat::VideoRow::bench(
                    &format!("{:032x}", i + 1),
                    &format!("benchcreator{}", rng.random_range(0..creators)),
                );
                row.title = format!("video {i} about topic {topic}");
                row.hashtags = vec![format!("topic{topic}"), format!("t{}", topic % 50)];
                row.sound_id = Some(format!("s{}", topic % 300));
                row.created_at = now - rng.random_range(0..30 * 86_400_000);
                cat::insert_video(&tx, &row)?;
                cat::store_embedding(
                    &tx,
                    &row.id,
                    "bench",
                    &vecs[i * inference::DIM..(i + 1) * inference::DIM],
                )?;
            }
            tx.commit()
                .map_err(Error::catalog("seeding the bench catalog"))
        })
        .await?;
    let tokens: Vec<(String, String)> = (0..users)
        .map(|i| {
            (
                format!("benchviewer{i}"),
                format!("{:064x}", 0xfeed_0000_u64 + i as u64),
            )
        })
        .collect();
    let rows = tokens.clone();
    let expires = now + 86_400_000;
    app.catalog
        .call(move |c| {
            let tx = c
                .transaction()
                .map_err(Error::catalog("seeding the bench viewers"))?;
            for (name, token) in &rows {
                cat::insert_user(&tx, &bench_user(name, "viewer", now))?;
                cat::insert_token(
                    &tx,
                    &crate::store::sha256_hex(token.as_bytes()),
                    name,
                    expires,
                )?;
            }
            tx.commit()
                .map_err(Error::catalog("seeding the bench viewers"))?;
            // A box that has been running has its log folded into the
            // database; a fresh gigabyte of it would be copied back during
            // the measurement instead.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(Error::catalog("checkpointing the bench catalog"))
        })
        .await?;
    Ok((tokens, labels))
}

fn bench_user(name: &str, role: &str, now: i64) -> cat::UserRow {
    cat::UserRow {
        id: name.to_owned(),
        username: name.to_owned(),
        password_hash: "!".into(),
        role: role.into(),
        created_at: now,
    }
}

/// Thirty watches per viewer, two in three from a home topic, taught to
/// the feed as events arriving live would.
fn watch_history(labels: &[usize], users: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(11);
    let now = now_ms();
    let mut out = Vec::with_capacity(users * 30);
    for (u, watched) in benches::feed::user_watches(labels, users, 30, 12)
        .into_iter()
        .enumerate()
    {
        let user = format!("benchviewer{u}");
        for (k, v) in watched.into_iter().enumerate() {
            let mut e = Event::action(Kind::Watch, format!("w{u}-{k}"), "", "", &user);
            e.video = format!("{:032x}", v + 1);
            e.ts = now - 86_400_000 + k as i64 * 60_000;
            e.watch_ms = rng.random_range(1_000..20_000);
            e.duration_ms = 20_000;
            e.completed = rng.random::<f32>() < 0.4;
            e.liked = rng.random::<f32>() < 0.1;
            out.push(e);
        }
    }
    out
}

/// One rate's worth of scrolling.
struct Load {
    url: String,
    tokens: Arc<Vec<(String, String)>>,
    clients: usize,
    pages: usize,
    rate: f64,
    secs: u64,
    seed: u64,
}

#[derive(Default)]
struct Samples {
    all: Vec<f64>,
    first: Vec<f64>,
    errors: usize,
    sources: BTreeMap<String, usize>,
    loadgen_cpu_ms: f64,
}

impl Load {
    fn run(self) -> Samples {
        let interval = Duration::from_secs_f64(self.clients as f64 / self.rate);
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs(self.secs);
        let me = Arc::new(self);
        let handles: Vec<_> = (0..me.clients)
            .map(|c| {
                let me = me.clone();
                // Clients spread evenly over one interval.
                let first = start + interval.mul_f64(c as f64 / me.clients as f64);
                std::thread::Builder::new()
                    .name(format!("loadgen-{c}"))
                    .spawn(move || me.client(c, first, interval, end))
            })
            .collect();
        let mut out = Samples::default();
        for h in handles.into_iter().flatten() {
            if let Ok(s) = h.join() {
                out.all.extend(s.all);
                out.first.extend(s.first);
                out.errors += s.errors;
                out.loadgen_cpu_ms += s.loadgen_cpu_ms;
                for (k, v) in s.sources {
                    *out.sources.entry(k).or_default() += v;
                }
            }
        }
        out
    }

    fn client(&self, c: usize, first: Instant, interval: Duration, end: Instant) -> Samples {
        let cpu0 = thread_cpu_ms();
        let agent = ureq::Agent::new_with_defaults();
        let mut rng = StdRng::seed_from_u64(self.seed * 1000 + c as u64);
        let mut s = Samples::default();
        let mut due = first;
        let mut page = 0usize;
        // Clients start out of step (a first session of 1..=pages pages),
        // as real viewers do: in step, every first page would land in the
        // same instant.
        let mut session = c % self.pages + 1;
        let mut token = &self.tokens[0].1;
        let mut cursor: Option<String> = None;
        while due < end {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if page == 0 {
                token = &self.tokens[rng.random_range(0..self.tokens.len())].1;
                cursor = None;
            }
            let url = match &cursor {
                Some(c) => format!("{}&cursor={c}", self.url),
                None => self.url.clone(),
            };
            let r = agent
                .get(&url)
                .header("authorization", &format!("Bearer {token}"))
                .call();
            let body = r
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            let ms = due.elapsed().as_secs_f64() * 1000.0;
            match body {
                Some(b) => {
                    s.all.push(ms);
                    if page == 0 {
                        s.first.push(ms);
                    }
                    let source = b["source"].as_str().unwrap_or("?").to_owned();
                    *s.sources.entry(source).or_default() += 1;
                    cursor = b["nextCursor"].as_str().map(str::to_owned);
                    page += 1;
                    if cursor.is_none() || page == session {
                        page = 0;
                        session = self.pages;
                    }
                }
                None => {
                    s.errors += 1;
                    page = 0;
                    session = self.pages;
                }
            }
            due += interval;
        }
        s.loadgen_cpu_ms = thread_cpu_ms() - cpu0;
        s
    }
}

impl Samples {
    fn row(mut self, videos: usize, rate: f64, wall: f64, server_cpu_ms: f64) -> Row {
        self.all.sort_by(f64::total_cmp);
        self.first.sort_by(f64::total_cmp);
        let p = benches::percentile;
        Row {
            videos,
            offered_rps: rate,
            achieved_rps: self.all.len() as f64 / wall,
            requests: self.all.len(),
            errors: self.errors,
            p50_ms: p(&self.all, 0.5),
            p99_ms: p(&self.all, 0.99),
            p999_ms: p(&self.all, 0.999),
            first_pages: self.first.len(),
            first_page_p50_ms: p(&self.first, 0.5),
            first_page_p99_ms: p(&self.first, 0.99),
            first_page_p999_ms: p(&self.first, 0.999),
            server_cpu_ms_per_page: server_cpu_ms / self.all.len().max(1) as f64,
            sources: self.sources,
        }
    }
}

/// user + system CPU of a `/proc/…/stat` line, in ms.
fn stat_cpu_ms(path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = s
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks * 10.0
}

fn process_cpu_ms() -> f64 {
    stat_cpu_ms("/proc/self/stat")
}

fn thread_cpu_ms() -> f64 {
    stat_cpu_ms("/proc/thread-self/stat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_after_the_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stat");
        // pid (comm with spaces) state ppid … utime=11th after ')', stime=12th
        std::fs::write(&p, "42 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0").unwrap();
        assert_eq!(stat_cpu_ms(p.to_str().unwrap()), 3000.0);
        assert!(process_cpu_ms() > 0.0 || cfg!(not(target_os = "linux")));
    }
}
