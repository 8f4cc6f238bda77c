//! Search over users, sounds and hashtags, one typed route per kind, beside
//! `/search/videos` (in `feed`). Open to anonymous callers; each takes
//! `q`, `limit` (1–50) and `cursor` and answers a `Page` of its hits.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Search as _, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/search/users", get(search_users::<S>))
        .route("/search/sounds", get(search_sounds::<S>))
        .route("/search/hashtags", get(search_hashtags::<S>))
}

/// Users whose username starts with `q` (case-insensitive), the most
/// followed first.
#[utoipa::path(get, path = "/api/v1/search/users", params(SearchQuery),
    responses((status = 200, body = Page<UserHit>), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the search index is still being opened")))]
async fn search_users<S: Service>(
    State(ctx): St<S>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<UserHit>>> {
    Ok(Json(ctx.svc.search().search_users(q).await?))
}

/// Sounds whose title has the words of `q`, the last one as a prefix;
/// ranked by text relevance and use.
#[utoipa::path(get, path = "/api/v1/search/sounds", params(SearchQuery),
    responses((status = 200, body = Page<SoundHit>), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the search index is still being opened")))]
async fn search_sounds<S: Service>(
    State(ctx): St<S>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<SoundHit>>> {
    Ok(Json(ctx.svc.search().search_sounds(q).await?))
}

/// Hashtags starting with `q` (a leading `#` is ignored), trending first,
/// then by videos.
#[utoipa::path(get, path = "/api/v1/search/hashtags", params(SearchQuery),
    responses((status = 200, body = Page<HashtagHit>), (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the search index is still being opened")))]
async fn search_hashtags<S: Service>(
    State(ctx): St<S>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<HashtagHit>>> {
    Ok(Json(ctx.svc.search().search_hashtags(q).await?))
}
