//! The whole HTTP surface, one module per resource, composed here. Each
//! module holds its handlers (which parse and authorise, call the domain of
//! the `Service` the route belongs to, and turn the result into a status
//! code and JSON; nothing else) and a `router()` returning its routes;
//! `extract` holds what they share (auth extractors, JSON helpers, the
//! idempotency wrapper). This module owns the configuration, the shared
//! state, the fallbacks and the layers every route runs under.

mod accounts;
mod analytics;
mod copyright;
mod engagement;
mod extract;
mod extras;
mod feed;
mod live;
mod notifications;
mod openapi;
mod ops;
pub mod origin;
mod playback;
mod player;
mod remix;
mod search;
mod sounds;
mod state;
mod status;
mod tus;
mod uploads;
mod videos;
mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::conn::{self, ConnPolicy, ConnStats, ConnTag, Guarded};
use crate::error::{ApiError, ErrorCode};
use crate::service::Service;
use state::Ctx;

pub use extract::{Auth, MaybeAuth};
pub use openapi::openapi;
pub use state::{BodyLimits, RouterConfig, CHUNK_DIGEST_HEADER, PREFIX};

/// The whole HTTP surface: `/api/v1/…`, the HLS origin, the player page,
/// health, metrics and the OpenAPI document.
pub fn router<S: Service>(svc: S, cfg: RouterConfig) -> Router {
    let ctx = Arc::new(Ctx {
        svc,
        origin: cfg.origin,
        hls_js: cfg.hls_js,
    });
    let limits = cfg.limits;
    // Everything under `/api/v1`; each module's paths are relative to it.
    let api = Router::new()
        .merge(accounts::router::<S>())
        .merge(uploads::router::<S>(&limits))
        .merge(tus::router::<S>())
        .merge(videos::router::<S>())
        .merge(remix::router::<S>())
        .merge(playback::router::<S>())
        .merge(feed::router::<S>())
        .merge(search::router::<S>())
        .merge(engagement::router::<S>())
        .merge(notifications::router::<S>())
        .merge(analytics::router::<S>())
        .merge(ops::router::<S>())
        .merge(live::router::<S>())
        .merge(webhooks::router::<S>())
        .merge(sounds::router::<S>())
        .merge(copyright::router::<S>(&limits));

    Router::new()
        .nest(PREFIX, api)
        .merge(origin::router::<S>())
        .merge(extras::router::<S>())
        .merge(player::router::<S>())
        .merge(ops::probes::<S>())
        .merge(status::router::<S>())
        .merge(openapi::router::<S>())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.json))
        .layer(axum::middleware::from_fn(one_host))
        .layer(axum::middleware::map_response(errors_in_spec_shape))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(crate::linger::linger))
        .with_state(ctx)
}

/// Serves `router` on `listener` until `shutdown` completes (then stops
/// accepting and lets open requests finish).
/// Every connection is held to `conns` (cap, header/idle/body timeouts;
/// see `conn`) and counted in `stats`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    conns: ConnPolicy,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            crate::http_stats::Observer {
                stats: stats.clone(),
                access_log: conns.access_log,
            },
            crate::http_stats::observe,
        ))
        .layer(axum::middleware::from_fn(conn::track))
        .layer(RequestBodyTimeoutLayer::new(conns.body_timeout));
    axum::serve(
        Guarded::new(listener, conns, stats),
        router.into_make_service_with_connect_info::<ConnTag>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host header, with more
/// than one, or with one that is not a host[:port] is a 400 (a proxy and
/// this server could otherwise disagree on which site was asked for).
async fn one_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let verdict = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("a request carries one Host header, this one has several"),
        (None, _) if request.version() == axum::http::Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header")
        }
        (None, _) => Ok(()),
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
            .filter(|a| !a.as_str().contains('@'))
            .map(|_| ())
            .ok_or("the Host header is not a host[:port]"),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(why) => ApiError::validation(why).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Responses made below the handlers (layers, extract failures we did not
/// map) leave as the spec's error shape too. JSON errors are already in it,
/// and HTML ones are pages for people (the player's "not available").
async fn errors_in_spec_shape(response: Response) -> Response {
    let status = response.status();
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let code = ErrorCode::for_status(status);
    let message = status
        .canonical_reason()
        .unwrap_or("request failed")
        .to_owned();
    let mut r = ApiError::new(code, message).into_response();
    *r.status_mut() = status;
    r
}
