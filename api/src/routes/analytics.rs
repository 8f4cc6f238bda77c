//! Analytics: per-video numbers for the video's owner and a creator's
//! overview (`/analytics/…`).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Auth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Analytics, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/analytics/videos/{id}", get(video_analytics::<S>))
        .route(
            "/analytics/creators/{id}/overview",
            get(creator_overview::<S>),
        )
}

/// The video's owner (or an admin) only.
#[utoipa::path(get, path = "/api/v1/analytics/videos/{id}", params(PeriodQuery),
    responses((status = 200, body = VideoAnalytics), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn video_analytics<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<Json<VideoAnalytics>> {
    Ok(Json(ctx.svc.analytics().video_analytics(&p, &id, q).await?))
}

/// The creator themself (or an admin) only.
#[utoipa::path(get, path = "/api/v1/analytics/creators/{id}/overview", params(PeriodQuery),
    responses((status = 200, body = CreatorOverview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn creator_overview<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<Json<CreatorOverview>> {
    Ok(Json(
        ctx.svc.analytics().creator_overview(&p, &id, q).await?,
    ))
}
