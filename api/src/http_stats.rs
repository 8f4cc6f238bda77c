//! Requests answered, by route and status: counts, response bytes and
//! latency (to the response head) — what a fleet scrapes to see which
//! routes a CDN is pulling, how many answers were `304`/`206`, and how
//! slow each route is. Kept per route template (`/hls/{id}/{*path}`), never
//! per URL, so the series stay few whatever the traffic.
//!
//! Cost per request: one read-locked map lookup by route and one by
//! status, and a few relaxed atomic adds (the lookups take a write lock
//! only the first time a route answers with a status).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::RwLock;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct Series {
    requests: AtomicU64,
    bytes: AtomicU64,
    /// Per bucket (not cumulative); the last one is +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_us: AtomicU64,
}

type ByStatus = RwLock<BTreeMap<u16, Arc<Series>>>;
/// One counter of a series, for rendering.
type Field = fn(&Series) -> &AtomicU64;

/// Requests answered so far, for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    routes: RwLock<BTreeMap<String, Arc<ByStatus>>>,
}

impl HttpStats {
    fn series(&self, route: &str, status: u16) -> Arc<Series> {
        let by_status = self.routes.read().get(route).cloned();
        let by_status = match by_status {
            Some(s) => s,
            None => self
                .routes
                .write()
                .entry(route.to_owned())
                .or_default()
                .clone(),
        };
        let found = by_status.read().get(&status).cloned();
        match found {
            Some(s) => s,
            None => by_status.write().entry(status).or_default().clone(),
        }
    }

    fn record(&self, route: &str, status: u16, bytes: u64, started: Instant) {
        let s = self.series(route, status);
        let secs = started.elapsed().as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(bytes, Ordering::Relaxed);
        s.latency[bucket].fetch_add(1, Ordering::Relaxed);
        s.latency_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// Requests answered so far, and how many of them were 5xx.
    pub fn totals(&self) -> (u64, u64) {
        let (mut all, mut failed) = (0, 0);
        for by_status in self.routes.read().values() {
            for (code, s) in by_status.read().iter() {
                let n = s.requests.load(Ordering::Relaxed);
                all += n;
                if *code >= 500 {
                    failed += n;
                }
            }
        }
        (all, failed)
    }

    /// Prometheus text (`# HELP`, `# TYPE` and the samples).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let all: Vec<(String, u16, Arc<Series>)> = self
            .routes
            .read()
            .iter()
            .flat_map(|(route, by_status)| {
                by_status
                    .read()
                    .iter()
                    .map(|(code, s)| (route.clone(), *code, s.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let label = |route: &str, code: u16| {
            format!(
                "route=\"{}\",code=\"{code}\"",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            )
        };
        let counters: [(&str, &str, Field); 2] = [
            (
                "appliance_http_requests_total",
                "Requests answered, by route template and status.",
                |s| &s.requests,
            ),
            (
                "appliance_http_response_bytes_total",
                "Response body bytes, by route template and status (declared lengths; streams of unknown length count 0).",
                |s| &s.bytes,
            ),
        ];
        for (name, help, field) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (route, code, s) in &all {
                let _ = writeln!(out, "{name}{{{}}} {}", label(route, *code), load(field(s)));
            }
        }
        let _ = writeln!(
            out,
            "# HELP appliance_http_request_duration_seconds Time to the response head, by route template and status.\n\
             # TYPE appliance_http_request_duration_seconds histogram"
        );
        for (route, code, s) in &all {
            let l = label(route, *code);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += load(&s.latency[i]);
                let _ = writeln!(
                    out,
                    "appliance_http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cum}"
                );
            }
            cum += load(&s.latency[BUCKETS.len()]);
            let _ = writeln!(
                out,
                "appliance_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {cum}\n\
                 appliance_http_request_duration_seconds_sum{{{l}}} {}\n\
                 appliance_http_request_duration_seconds_count{{{l}}} {cum}",
                load(&s.latency_us) as f64 / 1e6
            );
        }
    }
}

/// The request-id header: kept from the client (a CDN's or load
/// balancer's id) when it is a sane token, else made here; echoed on the
/// response and written in the access log.
pub const REQUEST_ID: &str = "x-request-id";

/// What [`observe`] needs: the counters and whether to log each request.
#[derive(Clone)]
pub(crate) struct Observer {
    pub stats: Arc<super::ConnStats>,
    pub access_log: bool,
}

/// Middleware (added with `Router::layer`, so the route is known): counts
/// the answer under its route template (requests no route matched count
/// as `unmatched`), stamps the request id, and writes the access log.
pub(crate) async fn observe(State(o): State<Observer>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A shared string: cloning it allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_id(v))
        .map_or_else(new_request_id, str::to_owned);
    let logged = o.access_log.then(|| {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::conn::ConnTag>>()
            .map(|c| c.0.peer.to_string());
        (
            request.method().clone(),
            request.uri().path().to_owned(),
            peer,
        )
    });
    let mut response = next.run(request).await;
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    // The declared length: what a `Content-Length` says, else what the
    // body knows exactly; a stream of unknown length (SSE) counts 0.
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| response.body().size_hint().exact())
        .unwrap_or(0);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    o.stats.requests.record(route, status, bytes, started);
    if let Some((method, path, peer)) = logged {
        tracing::info!(
            target: "access",
            %method,
            route,
            path,
            status,
            bytes,
            latency_us = started.elapsed().as_micros() as u64,
            request_id = %id,
            peer = peer.as_deref().unwrap_or("-"),
        );
    }
    response
}

/// At most 128 visible ASCII characters: anything else a client sends as
/// an id is replaced, so the log and the header stay clean.
fn sane_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// A process-unique id: a random prefix per process and a counter.
fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish() as u32
    });
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_per_route_and_status_with_a_cumulative_histogram() {
        let stats = HttpStats::default();
        let t = Instant::now();
        stats.record("/hls/{id}/{*path}", 200, 1000, t);
        stats.record("/hls/{id}/{*path}", 200, 500, t);
        stats.record("/hls/{id}/{*path}", 304, 0, t);
        stats.record("unmatched", 404, 12, t);
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains(
            "appliance_http_requests_total{route=\"/hls/{id}/{*path}\",code=\"200\"} 2\n"
        ));
        assert!(out.contains(
            "appliance_http_requests_total{route=\"/hls/{id}/{*path}\",code=\"304\"} 1\n"
        ));
        assert!(out.contains(
            "appliance_http_response_bytes_total{route=\"/hls/{id}/{*path}\",code=\"200\"} 1500\n"
        ));
        assert!(out.contains(
            "appliance_http_request_duration_seconds_count{route=\"unmatched\",code=\"404\"} 1\n"
        ));
        assert!(out.contains(
            "appliance_http_request_duration_seconds_bucket{route=\"/hls/{id}/{*path}\",code=\"200\",le=\"+Inf\"} 2\n"
        ));
        assert_eq!(out.matches("# TYPE").count(), 3);
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_unique_otherwise() {
        assert!(sane_id("cf-ray-8a1b2c3d"));
        assert!(!sane_id(""));
        assert!(!sane_id("two words"));
        assert!(!sane_id("bad\u{7f}"));
        assert!(!sane_id(&"x".repeat(129)));
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert!(sane_id(&a), "{a}");
    }
}
