//! Videos: metadata, processing status (JSON and server-sent events),
//! deletion, and a creator's list (`/videos/{id}…`, `/users/{id}/videos`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;

use super::extract::{Auth, MaybeAuth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Service, Videos};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/users/{id}/videos", get(user_videos::<S>))
        .route(
            "/videos/{id}",
            get(get_video::<S>).delete(delete_video::<S>),
        )
        .route("/videos/{id}/status", get(video_status::<S>))
        .route("/videos/{id}/events", get(video_events::<S>))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/videos", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 404, body = ErrorBody)))]
async fn user_videos<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Video>>> {
    Ok(Json(
        ctx.svc
            .videos()
            .user_videos(caller.as_ref(), &id, page)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/videos/{id}", responses((status = 200, body = Video), (status = 404, body = ErrorBody)))]
async fn get_video<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Video>> {
    Ok(Json(
        ctx.svc.videos().get_video(caller.as_ref(), &id).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/videos/{id}/status", responses((status = 200, body = VideoStatus), (status = 404, body = ErrorBody)))]
async fn video_status<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<VideoStatus>> {
    Ok(Json(
        ctx.svc.videos().video_status(caller.as_ref(), &id).await?,
    ))
}

/// Server-sent events: the current state first (so a reconnecting client
/// is never behind), then `transcode.started|progress|completed|failed`
/// until a final state; a comment every 15 s keeps proxies from closing it.
#[utoipa::path(get, path = "/api/v1/videos/{id}/events",
    responses((status = 200, content_type = "text/event-stream", description = "events whose data is a VideoStatus"), (status = 404, body = ErrorBody)))]
async fn video_events<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let stream = ctx.svc.videos().video_events(caller.as_ref(), &id).await?;
    let events = stream.map(|ev| {
        let event = Event::default()
            .event(ev.name)
            .json_data(&ev.status)
            .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
        Ok::<_, Infallible>(event)
    });
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    ))
}

#[utoipa::path(delete, path = "/api/v1/videos/{id}", responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_video<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ctx.svc.videos().delete_video(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
