//! The sounds library under `/api/v1/sounds`: a sound, the videos using
//! it, and the sounds trending now. Public, like the videos they list.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Service, Sounds};
use crate::wire::*;

/// The sound routes, relative to `/api/v1`.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/sounds/trending", get(trending_sounds::<S>))
        .route("/sounds/{id}", get(get_sound::<S>))
        .route("/sounds/{id}/videos", get(sound_videos::<S>))
}

/// A sound: its title, owner, duration, usage and the video it came from.
#[utoipa::path(get, path = "/api/v1/sounds/{id}",
    responses((status = 200, body = Sound), (status = 404, body = ErrorBody)))]
async fn get_sound<S: Service>(
    State(ctx): St<S>,
    Path(id): Path<String>,
) -> ApiResult<Json<Sound>> {
    Ok(Json(ctx.svc.sounds().sound(&id).await?))
}

/// The ready public videos using a sound, newest first.
#[utoipa::path(get, path = "/api/v1/sounds/{id}/videos", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 404, body = ErrorBody)))]
async fn sound_videos<S: Service>(
    State(ctx): St<S>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Video>>> {
    Ok(Json(ctx.svc.sounds().sound_videos(&id, page).await?))
}

/// Sounds by how many videos published in the last 7 days use them.
#[utoipa::path(get, path = "/api/v1/sounds/trending", params(PageQuery),
    responses((status = 200, body = Page<Sound>), (status = 400, body = ErrorBody)))]
async fn trending_sounds<S: Service>(
    State(ctx): St<S>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Sound>>> {
    Ok(Json(ctx.svc.sounds().trending_sounds(page).await?))
}
