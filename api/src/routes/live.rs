//! Live channels under `/api/v1/live/channels`: create (creators and
//! admins), list, inspect, stop, and clip a recording into a video. The
//! channels' HLS files are served by the origin (`/live/{id}/…`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{once, parse_json, require_creator, Auth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Live, Service};
use crate::wire::*;

/// The channel routes, relative to `/api/v1`.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/live/channels",
            post(create_channel::<S>).get(list_channels::<S>),
        )
        .route(
            "/live/channels/{id}",
            get(get_channel::<S>).delete(stop_channel::<S>),
        )
        .route("/live/channels/{id}/clip", post(clip_channel::<S>))
}

#[utoipa::path(post, path = "/api/v1/live/channels", request_body = LiveChannelCreate,
    responses((status = 201, body = LiveChannel), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_channel<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match require_creator(&p).and_then(|()| parse_json::<LiveChannelCreate>(&body)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:live.create", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.live().create_channel(&p, req)
    })
    .await
}

/// The caller's channels (every channel for an admin), newest first.
#[utoipa::path(get, path = "/api/v1/live/channels", params(PageQuery),
    responses((status = 200, body = Page<LiveChannel>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn list_channels<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<LiveChannel>>> {
    Ok(Json(ctx.svc.live().channels(&p, page).await?))
}

#[utoipa::path(get, path = "/api/v1/live/channels/{id}",
    responses((status = 200, body = LiveChannel), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_channel<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<LiveChannel>> {
    Ok(Json(ctx.svc.live().channel(&p, &id).await?))
}

/// Stops the channel (its playlists end with `EXT-X-ENDLIST`); a recording
/// channel becomes a video, listed in `recordings`. Stopping a stopped
/// channel changes nothing.
#[utoipa::path(delete, path = "/api/v1/live/channels/{id}",
    responses((status = 200, body = LiveChannel), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn stop_channel<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<LiveChannel>> {
    Ok(Json(ctx.svc.live().stop_channel(&p, &id).await?))
}

/// A span of a recording channel as a new video, without re-encoding.
#[utoipa::path(post, path = "/api/v1/live/channels/{id}/clip", request_body = LiveClip,
    responses((status = 202, body = Accepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn clip_channel<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: LiveClip = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::into_response(e),
    };
    let scope = format!("{}:live.clip:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::ACCEPTED, || {
        ctx.svc.live().clip(&p, &id, req)
    })
    .await
}
