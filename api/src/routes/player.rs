//! The player: the `/play/{id}` page and the hls.js it loads
//! (`/assets/hls.min.js`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::extract::St;
use super::origin;
use super::state::Ctx;
use crate::error::{ApiError, ErrorCode};
use crate::service::Service;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/play/{video_id}", get(player_page))
        .route("/assets/hls.min.js", get(hls_js::<S>))
}

const PLAYER_HTML: &str = include_str!("../../assets/player.html");

async fn player_page(Path(video_id): Path<String>) -> Response {
    if !origin::valid_id(&video_id) {
        return ApiError::not_found("video").into_response();
    }
    let page = PLAYER_HTML
        .replace("__MASTER_URL__", &format!("/hls/{video_id}/master.m3u8"))
        .replace("__POSTER_URL__", &format!("/thumbs/{video_id}/poster.jpg"))
        .replace(
            "__THUMBNAILS_URL__",
            &format!("/hls/{video_id}/storyboard.vtt"),
        );
    Html(page).into_response()
}

async fn hls_js<S: Service>(State(ctx): St<S>) -> Response {
    match &ctx.hls_js {
        Some(js) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            js.clone(),
        )
            .into_response(),
        None => ApiError::new(
            ErrorCode::NotFound,
            "hls.js is not installed on this box (see [player] in appliance.toml)",
        )
        .into_response(),
    }
}
