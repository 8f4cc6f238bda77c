//! Connection hygiene for every listener: a cap on open connections with a
//! fair policy at the cap, a header-read timeout (slowloris), a keep-alive
//! idle timeout, and counters for all of it. One client cannot take the box
//! down by opening connections and saying nothing, or by saying one byte
//! every few seconds.
//!
//! axum serves what `Guarded` accepts. Each accepted stream carries a
//! `ConnState` that the request middleware (`track`) marks busy while a
//! request is being answered (until its response body is dropped, so a
//! segment being streamed or an SSE stream is never idle). A reaper closes
//! connections that sit idle too long or take too long to send a request
//! head; at the cap, a new connection first evicts an idle connection —
//! one that never completed a request (a flood's or slowloris's) before one
//! a client has been served on, oldest first — and is refused with a 503
//! only when every open connection is busy. Closing is done from the
//! read side: the stream reports end-of-file, hyper ends the connection and
//! the socket is dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Limits on connections (`[server]` in `appliance.toml`).
#[derive(Debug, Clone, Copy)]
pub struct ConnPolicy {
    /// Open connections at most; beyond it an idle one is closed to make
    /// room (one never served first), or the newcomer gets a 503 when none
    /// is idle.
    pub max_connections: usize,
    /// From the first byte of a request head to its end (nginx's
    /// `client_header_timeout`).
    pub header_timeout: Duration,
    /// A connection with no request in progress and nothing received is
    /// closed after this long (nginx's `keepalive_timeout`).
    pub idle_timeout: Duration,
    /// Longest wait for the next piece of a request body; a slow upload
    /// that keeps moving is never cut.
    pub body_timeout: Duration,
    /// One `info` line per request under the `access` log target (method,
    /// route, path, status, bytes, latency, request id, peer).
    pub access_log: bool,
}

impl Default for ConnPolicy {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
            access_log: true,
        }
    }
}

/// What happened to connections, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Refused with a 503 at the cap (every open connection was busy).
    pub refused: AtomicU64,
    /// Idle connections closed to make room for a new one at the cap.
    pub evicted: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
    /// `accept` failures (out of file descriptors, mostly).
    pub accept_errors: AtomicU64,
    /// What was asked on those connections, by route.
    pub requests: crate::http_stats::HttpStats,
}

impl ConnStats {
    /// Prometheus text (`# HELP`, `# TYPE` and the samples).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP appliance_http_connections_open HTTP connections open now.\n\
             # TYPE appliance_http_connections_open gauge\n\
             appliance_http_connections_open {}",
            load(&self.open)
        );
        let _ = writeln!(
            out,
            "# HELP appliance_http_connections_total HTTP connections accepted.\n\
             # TYPE appliance_http_connections_total counter\n\
             appliance_http_connections_total {}",
            load(&self.accepted)
        );
        let _ = writeln!(
            out,
            "# HELP appliance_http_connections_closed_total HTTP connections the server closed, by reason.\n\
             # TYPE appliance_http_connections_closed_total counter"
        );
        for (reason, v) in [
            ("refused_at_cap", &self.refused),
            ("evicted_idle_at_cap", &self.evicted),
            ("header_timeout", &self.header_timeouts),
            ("idle_timeout", &self.idle_timeouts),
        ] {
            let _ = writeln!(
                out,
                "appliance_http_connections_closed_total{{reason=\"{reason}\"}} {}",
                load(v)
            );
        }
        let _ = writeln!(
            out,
            "# HELP appliance_http_accept_errors_total Failed accepts (e.g. out of file descriptors).\n\
             # TYPE appliance_http_accept_errors_total counter\n\
             appliance_http_accept_errors_total {}",
            load(&self.accept_errors)
        );
        self.requests.render(out);
    }
}

/// One open connection, as the reaper and the eviction policy see it.
pub struct ConnState {
    id: u64,
    /// Requests being answered (head read, response body not yet done).
    busy: AtomicUsize,
    /// Milliseconds since `Registry::epoch` when the connection last became
    /// idle (accepted, or its last response finished).
    idle_since: AtomicU64,
    /// When the first byte after becoming idle arrived (0: none yet).
    head_started: AtomicU64,
    /// Requests answered on this connection.
    served: AtomicU64,
    closing: AtomicBool,
    waker: AtomicWaker,
}

struct Registry {
    policy: ConnPolicy,
    stats: Arc<ConnStats>,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn now(&self) -> u64 {
        // +1 so that 0 can mean "not set".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn close(&self, c: &ConnState, counter: &AtomicU64) {
        if !c.closing.swap(true, Ordering::AcqRel) {
            counter.fetch_add(1, Ordering::Relaxed);
            c.waker.wake();
        }
    }

    /// Closes what overstayed its timeouts.
    fn reap(&self) {
        let now = self.now();
        let header = self.policy.header_timeout.as_millis() as u64;
        let idle = self.policy.idle_timeout.as_millis() as u64;
        let conns: Vec<Arc<ConnState>> = self.lock().values().cloned().collect();
        for c in conns {
            if c.busy.load(Ordering::Acquire) > 0 || c.closing.load(Ordering::Acquire) {
                continue;
            }
            let started = c.head_started.load(Ordering::Acquire);
            if started != 0 {
                if now.saturating_sub(started) > header {
                    self.close(&c, &self.stats.header_timeouts);
                }
            } else if now.saturating_sub(c.idle_since.load(Ordering::Acquire)) > idle {
                self.close(&c, &self.stats.idle_timeouts);
            }
        }
    }

    /// At the cap: closes an idle connection, `false` when every connection
    /// is busy. Connections that never completed a request go first (a
    /// flood's silent connections, slowloris), oldest first; a client's
    /// keep-alive connection that has been served is closed only when no
    /// such connection is left, so a real client keeps its connection
    /// through an attack.
    fn make_room(&self) -> bool {
        let victim = self
            .lock()
            .values()
            .filter(|c| !c.closing.load(Ordering::Acquire) && c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::Acquire) > 0,
                    c.idle_since.load(Ordering::Acquire),
                )
            })
            .cloned();
        match victim {
            Some(c) => {
                self.close(&c, &self.stats.evicted);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_count(&self) -> usize {
        self.lock()
            .values()
            .filter(|c| !c.closing.load(Ordering::Acquire))
            .count()
    }
}

/// A TCP listener that enforces a `ConnPolicy`; serve it with
/// `axum::serve(listener, router.into_make_service_with_connect_info::<ConnTag>())`.
pub struct Guarded {
    inner: TcpListener,
    registry: Arc<Registry>,
}

impl Guarded {
    /// Wraps `inner` and starts the reaper (it stops with the listener).
    pub fn new(inner: TcpListener, policy: ConnPolicy, stats: Arc<ConnStats>) -> Self {
        let registry = Arc::new(Registry {
            policy,
            stats,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&registry);
        let every = (policy.header_timeout.min(policy.idle_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(r) => r.reap(),
                    None => break,
                }
            }
        });
        Self { inner, registry }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let r = self.registry.clone();
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    r.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) {
                        // Out of descriptors: closing idle connections frees
                        // some; wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}; closing an idle connection");
                        r.make_room();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            if r.open_count() >= r.policy.max_connections && !r.make_room() {
                r.stats.refused.fetch_add(1, Ordering::Relaxed);
                // Best effort, never blocking the accept loop: a client that
                // cannot take 100 bytes now does not get them.
                let _ = stream.try_write(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let _ = stream.set_nodelay(true);
            let state = Arc::new(ConnState {
                id: r.next_id.fetch_add(1, Ordering::Relaxed),
                busy: AtomicUsize::new(0),
                idle_since: AtomicU64::new(r.now()),
                head_started: AtomicU64::new(0),
                served: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                waker: AtomicWaker::new(),
            });
            r.lock().insert(state.id, state.clone());
            r.stats.accepted.fetch_add(1, Ordering::Relaxed);
            r.stats.open.fetch_add(1, Ordering::Relaxed);
            let io = GuardedStream {
                inner: stream,
                state,
                registry: r.clone(),
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; reads end (EOF) once the policy closes it.
pub struct GuardedStream {
    inner: TcpStream,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.state.id);
        self.registry.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.state.waker.register(cx.waker());
        if self.state.closing.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.state.busy.load(Ordering::Acquire) == 0
            && self.state.head_started.load(Ordering::Acquire) == 0
        {
            let now = self.registry.now();
            self.state.head_started.store(now, Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection a request came on (`ConnectInfo<ConnTag>`), so `track`
/// can mark it busy.
#[derive(Clone)]
pub struct ConnTag {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    /// The client's address, for the access log.
    pub peer: std::net::SocketAddr,
}

impl Connected<IncomingStream<'_, Guarded>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Self {
        Self {
            state: stream.io().state.clone(),
            registry: stream.io().registry.clone(),
            peer: *stream.remote_addr(),
        }
    }
}

/// Marks the request's connection busy until its response body is done.
/// Requests that did not come through `Guarded` (tests driving the router
/// directly) pass untouched.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let tag = request
        .extensions()
        .get::<ConnectInfo<ConnTag>>()
        .map(|c| c.0.clone());
    let Some(ConnTag {
        state, registry, ..
    }) = tag
    else {
        return next.run(request).await;
    };
    state.busy.fetch_add(1, Ordering::AcqRel);
    state.head_started.store(0, Ordering::Release);
    let guard = Busy { state, registry };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(Tracked {
            body,
            _guard: guard,
        }),
    )
}

/// Ends a request's busy mark when dropped.
struct Busy {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.registry.now();
        self.state.idle_since.store(now, Ordering::Release);
        self.state.served.fetch_add(1, Ordering::Relaxed);
        self.state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Tracked {
    body: Body,
    _guard: Busy,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
