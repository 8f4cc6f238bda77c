//! Engagement: watch events, follows, likes, saves, shares, comments and
//! replies, and trending hashtags.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{json_response, once, parse_json, Auth, MaybeAuth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Engagement, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/users/{id}/follow",
            post(follow::<S>).delete(unfollow::<S>),
        )
        .route("/users/{id}/followers", get(followers::<S>))
        .route("/users/{id}/following", get(following::<S>))
        .route("/engagement/watch-batch", post(watch_batch::<S>))
        .route("/videos/{id}/like", post(like::<S>).delete(unlike::<S>))
        .route("/videos/{id}/save", post(save::<S>).delete(unsave::<S>))
        .route("/videos/{id}/share", post(share::<S>))
        .route(
            "/videos/{id}/comments",
            get(comments::<S>).post(add_comment::<S>),
        )
        .route("/comments/{id}/replies", get(replies::<S>))
        .route("/hashtags/trending", get(trending_hashtags::<S>))
}

#[utoipa::path(post, path = "/api/v1/users/{id}/follow",
    responses((status = 200, body = FollowState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn follow<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    Ok(Json(ctx.svc.engagement().follow(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/follow",
    responses((status = 200, body = FollowState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unfollow<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    Ok(Json(ctx.svc.engagement().follow(&p, &id, false).await?))
}

/// Accepted events are durable before the 202; repeated `eventId`s are
/// counted once.
#[utoipa::path(post, path = "/api/v1/engagement/watch-batch", request_body = WatchBatch,
    responses((status = 202, body = WatchAccepted), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn watch_batch<S: Service>(State(ctx): St<S>, Auth(p): Auth, body: Bytes) -> Response {
    let run = async {
        let req: WatchBatch = parse_json(&body)?;
        ctx.svc.engagement().watch_batch(&p, req).await
    };
    match run.await {
        Ok(v) => json_response(StatusCode::ACCEPTED, &v),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(get, path = "/api/v1/users/{id}/followers", params(PageQuery),
    responses((status = 200, body = Page<FollowEntry>), (status = 404, body = ErrorBody)))]
async fn followers<S: Service>(
    State(ctx): St<S>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowEntry>>> {
    Ok(Json(ctx.svc.engagement().follows(&id, true, page).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/following", params(PageQuery),
    responses((status = 200, body = Page<FollowEntry>), (status = 404, body = ErrorBody)))]
async fn following<S: Service>(
    State(ctx): St<S>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowEntry>>> {
    Ok(Json(ctx.svc.engagement().follows(&id, false, page).await?))
}

/// Idempotent: liking twice is one like, and answers the same.
#[utoipa::path(post, path = "/api/v1/videos/{id}/like",
    responses((status = 200, body = LikeState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn like<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<LikeState>> {
    Ok(Json(ctx.svc.engagement().like(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/videos/{id}/like",
    responses((status = 200, body = LikeState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unlike<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<LikeState>> {
    Ok(Json(ctx.svc.engagement().like(&p, &id, false).await?))
}

#[utoipa::path(post, path = "/api/v1/videos/{id}/save",
    responses((status = 200, body = SaveState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn save<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SaveState>> {
    Ok(Json(ctx.svc.engagement().save(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/videos/{id}/save",
    responses((status = 200, body = SaveState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unsave<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SaveState>> {
    Ok(Json(ctx.svc.engagement().save(&p, &id, false).await?))
}

/// Every share counts (per channel); send `X-Idempotency-Key` to make a
/// retried request count once.
#[utoipa::path(post, path = "/api/v1/videos/{id}/share", request_body = ShareRequest,
    responses((status = 201, body = ShareAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn share<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: ShareRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:share:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.engagement().share(&p, &id, req)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/videos/{id}/comments", request_body = CommentCreate,
    responses((status = 201, body = Comment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn add_comment<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: CommentCreate = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:comment:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.engagement().add_comment(&p, &id, req)
    })
    .await
}

/// Top-level comments, newest first; each carries its `replyCount`.
#[utoipa::path(get, path = "/api/v1/videos/{id}/comments", params(PageQuery),
    responses((status = 200, body = Page<Comment>), (status = 404, body = ErrorBody)))]
async fn comments<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Comment>>> {
    Ok(Json(
        ctx.svc
            .engagement()
            .comments(caller.as_ref(), &id, page)
            .await?,
    ))
}

/// Replies in a thread, oldest first.
#[utoipa::path(get, path = "/api/v1/comments/{id}/replies", params(PageQuery),
    responses((status = 200, body = Page<Comment>), (status = 404, body = ErrorBody)))]
async fn replies<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Comment>>> {
    Ok(Json(
        ctx.svc
            .engagement()
            .replies(caller.as_ref(), &id, page)
            .await?,
    ))
}

/// The top trending hashtags, best first: a bounded top-N (at most
/// `limit`), whole in one page, so `nextCursor` is always `null`.
#[utoipa::path(get, path = "/api/v1/hashtags/trending", params(LimitQuery),
    responses((status = 200, body = Page<TrendingHashtag>), (status = 400, body = ErrorBody)))]
async fn trending_hashtags<S: Service>(
    State(ctx): St<S>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Page<TrendingHashtag>>> {
    Ok(Json(Page::all(
        ctx.svc
            .engagement()
            .trending_hashtags(q.limit.unwrap_or(20))
            .await?,
    )))
}
