//! Duets and stitches (`/videos/{id}/duet`, `/videos/{id}/stitch`): the
//! caller's upload session completed as a remix of video `{id}`, and the
//! original's remixes (`/videos/{id}/remixes`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{once, parse_json, require_creator, Auth, MaybeAuth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Remixes, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/videos/{id}/duet", post(duet::<S>))
        .route("/videos/{id}/stitch", post(stitch::<S>))
        .route("/videos/{id}/remixes", get(remixes::<S>))
}

/// The caller's upload session (every byte received) becomes a duet with
/// video `{id}`: side by side, sound mixed, as long as the shorter of the
/// two. 403 when the original's creator turned duets off
/// (`details.reason` `DUET_DISABLED`), 409 when it is not ready.
#[utoipa::path(post, path = "/api/v1/videos/{id}/duet", request_body = DuetRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn duet<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match require_creator(&p).and_then(|()| parse_json::<DuetRequest>(&body)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:videos.duet:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::ACCEPTED, || {
        ctx.svc.remixes().duet(&p, &id, req)
    })
    .await
}

/// The caller's upload session becomes a stitch of video `{id}`: its clip
/// `[clipStart, clipEnd)` (0.1–5 s), then the recording. 403 when the
/// original's creator turned stitches off (`STITCH_DISABLED`).
#[utoipa::path(post, path = "/api/v1/videos/{id}/stitch", request_body = StitchRequest,
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn stitch<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match require_creator(&p).and_then(|()| parse_json::<StitchRequest>(&body)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:videos.stitch:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::ACCEPTED, || {
        ctx.svc.remixes().stitch(&p, &id, req)
    })
    .await
}

/// The original's ready, public duets and stitches, newest first.
#[utoipa::path(get, path = "/api/v1/videos/{id}/remixes", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn remixes<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Video>>> {
    Ok(Json(
        ctx.svc
            .remixes()
            .remixes(caller.as_ref(), &id, page)
            .await?,
    ))
}
