//! `appliance serve`: opens the box's state, starts the workers and the
//! HTTP server, and shuts down gracefully (stop accepting, let requests and
//! jobs finish for `server.shutdown_grace_secs`, release unfinished jobs
//! for the next start).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use api::wire::{Principal, Role, VideoMeta, Visibility};
use api::Uploads;
use bytes::Bytes;
use tokio::sync::watch;

use crate::app::{App, Handle};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, Catalog};
use crate::store::{sha256_hex, Objects};
use settings::Config;

/// `appliance serve`.
pub fn run(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    demo: Option<PathBuf>,
) -> ExitCode {
    let mut config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return super::report(&e),
    };
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return super::report(&e),
    };
    match rt.block_on(serve(config, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::report(&e),
    }
}

/// The box's state, opened for exclusive use by this process.
pub struct Opened {
    pub app: Arc<App>,
    /// Held for the life of the process: one appliance per data directory
    /// (jobs are reclaimed at start on that basis).
    _lock: std::fs::File,
}

pub fn open(config: Config) -> Result<Opened> {
    let data = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(Error::io("creating", data.display()))?;
    let lock_path = data.join("appliance.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io("opening", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        Error::Config(format!(
            "another appliance process is using {} (lock {})",
            data.display(),
            lock_path.display()
        ))
    })?;
    let app = open_shared(config)?;
    // Scratch of jobs that died with the previous process.
    let work_dir = &app.videos.work_dir;
    if work_dir.exists() {
        std::fs::remove_dir_all(work_dir).map_err(Error::io("clearing", work_dir.display()))?;
    }
    std::fs::create_dir_all(work_dir).map_err(Error::io("creating", work_dir.display()))?;
    Ok(Opened { app, _lock: lock })
}

/// The catalog and object store, without taking over the data directory
/// (for one-off commands that may run beside a server).
pub fn open_shared(config: Config) -> Result<Arc<App>> {
    let data = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(Error::io("creating", data.display()))?;
    let catalog = Catalog::open(&data.join("catalog.db"))?;
    let objects = Objects::from_config(&config)?;
    let inventory = hardware::Inventory::discover();
    Ok(Arc::new(App::new(config, catalog, objects, inventory)?))
}

pub async fn serve(config: Config, demo: Option<PathBuf>) -> Result<()> {
    let opened = open(config)?;
    let app = opened.app.clone();
    // We hold the data directory, so a job still `running` belongs to a
    // process that died: make it claimable now rather than after its lease.
    app.catalog
        .call(|c| {
            c.execute(
                "UPDATE jobs SET lease_expires = 0 WHERE state = 'running'",
                [],
            )
            .map_err(Error::catalog("reclaiming jobs"))
        })
        .await?;

    // Events: the spool first (nothing is accepted before it is open),
    // then the feed learns from the catalog, the analytics store and what
    // the spool has not delivered, before the first request is taken.
    app.engagement.start(&app.config.storage.data_dir).await?;
    let undelivered = app.engagement.undelivered()?;
    app.recommender
        .warm_up(
            &app.catalog,
            app.engagement.analytics.as_ref(),
            &undelivered,
        )
        .await?;
    drop(undelivered);

    // The configured file wins (a newer hls.js without a rebuild); the
    // copy built into the binary otherwise.
    let hls_js = read_optional(&app.config.player.hls_js).or_else(embedded_hls_js);
    if hls_js.is_none() {
        tracing::warn!(
            "{} not found and no hls.js built in: /play pages fall back to native HLS (run `npm ci --prefix player`)",
            app.config.player.hls_js.display()
        );
    }
    let router = router_for(&app, hls_js);
    // What the configured profile needs, checked once before serving: each
    // missing piece is said now, with its cost, not found later by a user.
    let health = api::Ops::readiness(&app.ops).await;
    for c in health
        .checks
        .iter()
        .filter(|c| c.state != api::wire::CheckState::Ok)
    {
        tracing::warn!(check = %c.name, state = ?c.state, "{}", c.detail);
    }

    let stop_signal = shutdown_signal();
    let listen = app.config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(Error::io("listening on", listen))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("listening on", listen))?;
    // On stdout, for scripts and tests that start the server.
    println!("listening on http://{addr}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = app.spawn(stop_rx.clone());
    if let Some(file) = demo {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = seed_demo(&app, &file, addr).await {
                eprintln!("demo: {e}");
            }
        });
    }

    let server = spawn_http(&app, listener, router, stop_rx.clone());
    stop_signal.await;
    tracing::info!("shutting down");
    eprintln!(
        "shutting down (up to {} s)",
        app.config.server.shutdown_grace_secs
    );
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    // Open SSE streams would hold the server forever: give requests the
    // grace period, then drop them.
    let _ = tokio::time::timeout(grace, server).await;
    for w in workers {
        let _ = tokio::time::timeout(grace + Duration::from_secs(5), w).await;
    }
    Ok(())
}

/// Serves `router` on `listener` under the connection policy until `stop`
/// turns true.
/// The HTTP API as `serve` runs it, from the config (benchmarks serve
/// through the same).
/// hls.js as built into the binary (`build.rs`), when it was installed.
fn embedded_hls_js() -> Option<Bytes> {
    #[cfg(embedded_hls_js)]
    return Some(Bytes::from_static(include_bytes!(concat!(
        env!("OUT_DIR"),
        "/hls.min.js"
    ))));
    #[cfg(not(embedded_hls_js))]
    None
}

pub fn router_for(app: &Arc<App>, hls_js: Option<Bytes>) -> api::Router {
    let u = &app.config.uploads;
    api::router(
        Handle(app.clone()),
        api::RouterConfig {
            origin: api::OriginPolicy {
                playlist_max_age: Duration::from_secs(app.config.origin.playlist_max_age_secs),
                not_found_max_age: Duration::from_secs(app.config.origin.not_found_max_age_secs),
            },
            limits: api::BodyLimits {
                json: 64 << 10,
                chunk: (u.chunk_size + (64 << 10)) as usize,
                single_shot: (u.single_shot_max + (1 << 20)) as usize,
            },
            hls_js,
        },
    )
}

/// A listener on an ephemeral loopback port, for benchmarks that serve in
/// process.
pub async fn bind_loopback() -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::io("listening on", "127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("listening on", "127.0.0.1:0"))?;
    Ok((listener, addr))
}

pub fn spawn_http(
    app: &App,
    listener: tokio::net::TcpListener,
    router: api::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let conns = conn_policy(&app.config);
    let conn_stats = app.conn_stats.clone();
    tokio::spawn(async move {
        api::serve(listener, router, conns, conn_stats, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    })
}

/// The connection policy from `[server]`, with the cap kept inside the
/// file-descriptor limit: the soft `RLIMIT_NOFILE` is raised to the hard
/// one first, and `fd_reserve` descriptors stay free for the spool, the
/// catalog, the object store and transcodes.
pub fn conn_policy(config: &Config) -> api::ConnPolicy {
    let s = &config.server;
    let nofile = raise_nofile();
    let room = nofile.saturating_sub(s.fd_reserve).max(16) as usize;
    let max_connections = s.max_connections.min(room);
    if max_connections < s.max_connections {
        tracing::warn!(
            "server.max_connections {} lowered to {max_connections}: the file-descriptor limit is {nofile} and {} are reserved",
            s.max_connections,
            s.fd_reserve
        );
    }
    api::ConnPolicy {
        max_connections,
        header_timeout: Duration::from_secs(s.header_timeout_secs),
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        body_timeout: Duration::from_secs(s.body_timeout_secs),
        access_log: s.access_log,
    }
}

/// Raises the soft limit on open files to the hard limit; returns the
/// limit in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

fn read_optional(path: &Path) -> Option<Bytes> {
    std::fs::read(path).ok().map(Bytes::from)
}

/// SIGINT or SIGTERM, whichever comes first. The handlers are installed
/// when this is called, not when the future is first polled: `serve` calls
/// it before it says it listens, so a SIGTERM right after start-up (a
/// supervisor stopping a fresh box) still shuts down gracefully instead
/// of killing the process.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo-password";

/// Makes sure a `demo` creator owns a ready video made from `file`, then
/// prints where to watch it. The video is found again on a restart by the
/// file's SHA-256, recorded in its description (see [`demo_marker`]), so
/// whatever else the demo user uploads never takes its place; a new one is
/// made when the file changed, or when the last one failed or was deleted.
async fn seed_demo(app: &Arc<App>, file: &Path, addr: SocketAddr) -> Result<()> {
    let user = match app
        .catalog
        .call(|c| cat::user_by_name(c, DEMO_USER))
        .await?
    {
        Some(u) => u,
        None => {
            app.accounts
                .create_user(DEMO_USER, DEMO_PASSWORD, Role::Creator)
                .await?
        }
    };
    let bytes = Bytes::from(
        tokio::fs::read(file)
            .await
            .map_err(Error::io("reading", file.display()))?,
    );
    let hashed = bytes.clone();
    let marker = demo_marker(&tokio::task::spawn_blocking(move || sha256_hex(&hashed)).await?);
    let video_id = match find_demo_video(app, &user.id, &marker).await? {
        Some(id) => id,
        None => {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "demo.mp4".into());
            let caller = Principal {
                user_id: user.id.clone(),
                role: Role::Creator,
            };
            let meta = VideoMeta {
                title: "Demo".into(),
                description: format!("{name}, transcoded by this box {marker}"),
                hashtags: vec!["demo".into()],
                sound_id: None,
                visibility: Visibility::Public,
                ..Default::default()
            };
            eprintln!("demo: transcoding {} …", file.display());
            app.videos
                .create_video(&caller, name, meta, bytes)
                .await?
                .video_id
        }
    };
    loop {
        let vid = video_id.clone();
        let v = app.catalog.call(move |c| cat::video(c, &vid)).await?;
        let (state, failure) = v.map(|v| (v.state, v.failure)).unwrap_or_default();
        match state.as_str() {
            "ready" => break,
            "processing" => tokio::time::sleep(Duration::from_millis(500)).await,
            other => {
                return Err(Error::Task(format!(
                    "the demo video ended `{other}`: {}",
                    failure.unwrap_or_default()
                )))
            }
        }
    }
    println!("demo video ready (user `{DEMO_USER}`, password `{DEMO_PASSWORD}`):");
    println!("  player:          http://{addr}/play/{video_id}");
    println!("  master playlist: http://{addr}/hls/{video_id}/master.m3u8");
    println!("  video (JSON):    http://{addr}/api/v1/videos/{video_id}");
    println!("  API description: http://{addr}/openapi.json");
    Ok(())
}

/// What ties a demo video to the file it was made from: the end of its
/// description.
fn demo_marker(sha256: &str) -> String {
    format!("[demo source sha256:{sha256}]")
}

/// The demo user's video carrying `marker` that is ready or still being
/// made (a failed one is made again), newest first.
async fn find_demo_video(app: &Arc<App>, owner: &str, marker: &str) -> Result<Option<String>> {
    const PAGE: u32 = 100;
    let mut after = None;
    loop {
        let (o, a) = (owner.to_owned(), after.take());
        let page = app
            .catalog
            .read(move |c| cat::videos_of(c, &o, false, a, PAGE))
            .await?;
        let full = page.len() == PAGE as usize;
        let last = page.last().map(|v| (v.created_at, v.id.clone()));
        if let Some(v) = page
            .into_iter()
            .find(|v| v.state != "failed" && v.description.ends_with(marker))
        {
            return Ok(Some(v.id));
        }
        match last {
            Some(l) if full => after = Some(l),
            Some(_) | None => return Ok(None),
        }
    }
}

/// `appliance user add`: creates an account directly in the catalog
/// (the only way to make an admin).
pub async fn add_user(
    config: Config,
    username: &str,
    password: &str,
    role: Role,
) -> Result<String> {
    let app = open_shared(config)?;
    let user = app.accounts.create_user(username, password, role).await?;
    Ok(user.id)
}
