//! The feed: for-you, following and trending pages, the interests that
//! steer them, video search and a hashtag's videos.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{parse_json, Auth, MaybeAuth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Feed as _, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/feed/for-you", get(feed_for_you::<S>))
        .route("/feed/following", get(feed_following::<S>))
        .route("/feed/trending", get(feed_trending::<S>))
        .route("/users/me/interests", post(set_interests::<S>))
        .route("/search/videos", get(search_videos::<S>))
        .route("/hashtags/{tag}/videos", get(hashtag_videos::<S>))
}

#[utoipa::path(get, path = "/api/v1/feed/for-you", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn feed_for_you<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    Ok(Json(
        ctx.svc.feed().feed(Some(&p), FeedKind::ForYou, q).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/feed/following", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn feed_following<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    Ok(Json(
        ctx.svc
            .feed()
            .feed(Some(&p), FeedKind::Following, q)
            .await?,
    ))
}

/// Open to anonymous callers.
#[utoipa::path(get, path = "/api/v1/feed/trending", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody)))]
async fn feed_trending<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    Ok(Json(
        ctx.svc
            .feed()
            .feed(caller.as_ref(), FeedKind::Trending, q)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/users/me/interests", request_body = Interests,
    responses((status = 200, body = InterestsSet), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn set_interests<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    body: Bytes,
) -> ApiResult<Json<InterestsSet>> {
    let req: Interests = parse_json(&body)?;
    Ok(Json(ctx.svc.feed().set_interests(&p, req).await?))
}

#[utoipa::path(get, path = "/api/v1/search/videos", params(SearchQuery),
    responses((status = 200, body = Page<Video>), (status = 400, body = ErrorBody)))]
async fn search_videos<S: Service>(
    State(ctx): St<S>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Page<Video>>> {
    Ok(Json(ctx.svc.feed().search_videos(q).await?))
}

#[utoipa::path(get, path = "/api/v1/hashtags/{tag}/videos", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 400, body = ErrorBody)))]
async fn hashtag_videos<S: Service>(
    State(ctx): St<S>,
    Path(tag): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Video>>> {
    Ok(Json(ctx.svc.feed().hashtag_videos(&tag, q).await?))
}
