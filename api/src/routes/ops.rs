//! Operations: the admin routes under `/api/v1/ops` (hardware inventory,
//! jobs, reprocessing, the A/B experiment report) and the unprefixed probes
//! (`/healthz`, `/readyz`, `/metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::{json_response, once, require_admin, Auth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Ops, Service};
use crate::wire::*;

/// The admin routes, relative to `/api/v1`.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/ops/inventory", get(inventory::<S>))
        .route("/ops/jobs", get(jobs::<S>))
        .route("/ops/experiments", get(experiments::<S>))
        .route("/ops/videos/{id}/reprocess", post(reprocess::<S>))
}

/// Health, readiness and metrics, at the root.
pub(crate) fn probes<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
}

#[utoipa::path(get, path = "/api/v1/ops/inventory", responses((status = 200, description = "hardware inventory and placement")),
    security(("bearer" = [])))]
async fn inventory<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
) -> ApiResult<Json<serde_json::Value>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.ops().inventory().await?))
}

/// Transcode jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/ops/jobs", params(JobsQuery),
    responses((status = 200, body = Page<Job>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn jobs<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(page): Query<JobsQuery>,
) -> ApiResult<Json<Page<Job>>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.ops().jobs(page).await?))
}

/// The running A/B experiment of rankers: per variant, viewers,
/// impressions, watch-through, completion rate and likes per impression
/// with 95 % Wilson intervals, recounted from the analytics store.
#[utoipa::path(get, path = "/api/v1/ops/experiments", responses((status = 200, body = ExperimentReport)),
    security(("bearer" = [])))]
async fn experiments<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
) -> ApiResult<Json<ExperimentReport>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.ops().experiments().await?))
}

#[utoipa::path(post, path = "/api/v1/ops/videos/{id}/reprocess", responses((status = 202, body = Accepted), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn reprocess<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_admin(&p) {
        return e.into_response();
    }
    let scope = format!("{}:reprocess:{id}", p.user_id);
    once(&ctx, &headers, scope, b"", StatusCode::ACCEPTED, || {
        ctx.svc.ops().reprocess(&id)
    })
    .await
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health::of(Vec::new()))
}

/// Each dependency `ok`, `degraded` or `down` with the reason; 503 only
/// when one that the box's core job needs is down.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz<S: Service>(State(ctx): St<S>) -> Response {
    let health = ctx.svc.ops().readiness().await;
    let status = if health.status == CheckState::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, &health)
}

async fn metrics<S: Service>(State(ctx): St<S>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.svc.ops().metrics().await,
    )
        .into_response()
}
