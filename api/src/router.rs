//! Routes and handlers. Handlers parse and authorise, call the `Service`,
//! and turn the result into a status code and JSON; nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode, ErrorDetail};
use crate::origin::{self, OriginPolicy};
use crate::service::{IdempotencyBegin, Service};
use crate::wire::*;

/// Request-body ceilings per kind of route; anything larger is a 413 before
/// the handler runs.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub json: usize,
    /// One upload chunk (the session's chunk size plus slack).
    pub chunk: usize,
    /// A whole single-shot upload (`POST /videos`).
    pub single_shot: usize,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub origin: OriginPolicy,
    pub limits: BodyLimits,
    /// hls.js for the `/play/{id}` page; without it the page relies on
    /// native HLS (Safari).
    pub hls_js: Option<Bytes>,
}

pub(crate) struct Ctx<S> {
    pub(crate) svc: S,
    pub(crate) origin: OriginPolicy,
    hls_js: Option<Bytes>,
}

type St<S> = State<Arc<Ctx<S>>>;

pub const PREFIX: &str = "/api/v1";
const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";
/// Hex SHA-256 of a chunk's bytes, checked before the chunk is stored.
pub const CHUNK_DIGEST_HEADER: &str = "x-chunk-sha256";

/// The whole HTTP surface: `/api/v1/…`, the HLS origin, the player page,
/// health, metrics and the OpenAPI document.
pub fn router<S: Service>(svc: S, cfg: RouterConfig) -> Router {
    let ctx = Arc::new(Ctx {
        svc,
        origin: cfg.origin,
        hls_js: cfg.hls_js,
    });
    let limits = cfg.limits;
    let api = Router::new()
        .route("/auth/register", post(register::<S>))
        .route("/auth/login", post(login::<S>))
        .route("/users/{id}", get(get_user::<S>))
        .route("/users/{id}/videos", get(user_videos::<S>))
        .route("/uploads/init", post(init_upload::<S>))
        .route(
            "/uploads/{id}/chunks/{n}",
            put(put_chunk::<S>).layer(DefaultBodyLimit::max(limits.chunk)),
        )
        .route(
            "/uploads/{id}",
            get(get_upload::<S>).delete(cancel_upload::<S>),
        )
        .route("/uploads/{id}/complete", post(complete_upload::<S>))
        .route(
            "/videos",
            post(create_video::<S>).layer(DefaultBodyLimit::max(limits.single_shot)),
        )
        .route(
            "/videos/{id}",
            get(get_video::<S>).delete(delete_video::<S>),
        )
        .route("/videos/{id}/status", get(video_status::<S>))
        .route("/videos/{id}/events", get(video_events::<S>))
        .route("/feed/for-you", get(feed_for_you::<S>))
        .route("/feed/following", get(feed_following::<S>))
        .route("/feed/trending", get(feed_trending::<S>))
        .route("/users/me/interests", post(set_interests::<S>))
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
        .route("/analytics/videos/{id}", get(video_analytics::<S>))
        .route(
            "/analytics/creators/{id}/overview",
            get(creator_overview::<S>),
        )
        .route("/search/videos", get(search_videos::<S>))
        .route("/hashtags/{tag}/videos", get(hashtag_videos::<S>))
        .route("/ops/inventory", get(inventory::<S>))
        .route("/ops/jobs", get(jobs::<S>))
        .route("/ops/videos/{id}/reprocess", post(reprocess::<S>));

    let origin = Router::new()
        .route(
            "/hls/{video_id}/{*path}",
            get(origin::hls::<S>).options(origin::preflight),
        )
        .route(
            "/thumbs/{video_id}/{file}",
            get(origin::poster::<S>).options(origin::preflight),
        );

    Router::new()
        .nest(PREFIX, api)
        .merge(origin)
        .route("/play/{video_id}", get(player_page))
        .route("/assets/hls.min.js", get(hls_js::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.json))
        .layer(axum::middleware::map_response(errors_in_spec_shape))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
}

/// Serves `router` on `listener` until `shutdown` completes (then stops
/// accepting and lets open requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Responses made below the handlers (layers, extract failures we did not
/// map) leave as the spec's error shape too.
async fn errors_in_spec_shape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = ErrorCode::for_status(status);
    let message = status
        .canonical_reason()
        .unwrap_or("request failed")
        .to_owned();
    let mut r = ApiError::new(code, message).into_response();
    *r.status_mut() = status;
    r
}

// ---------------------------------------------------------------- auth

/// A caller with a valid bearer token.
pub struct Auth(pub Principal);

/// Anonymous callers are allowed; a token that is present must be valid
/// (a bad token is a 401, not a silent downgrade to anonymous).
pub struct MaybeAuth(pub Option<Principal>);

fn bearer(parts: &Parts) -> ApiResult<Option<&str>> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "Authorization must be `Bearer <token>`",
        )),
    }
}

impl<S: Service> FromRequestParts<Arc<Ctx<S>>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx<S>>) -> ApiResult<Self> {
        let token = bearer(parts)?
            .ok_or_else(|| ApiError::unauthorized("this route needs a bearer token"))?;
        Ok(Self(ctx.svc.authenticate(token).await?))
    }
}

impl<S: Service> FromRequestParts<Arc<Ctx<S>>> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx<S>>) -> ApiResult<Self> {
        match bearer(parts)? {
            Some(token) => Ok(Self(Some(ctx.svc.authenticate(token).await?))),
            None => Ok(Self(None)),
        }
    }
}

fn require_creator(p: &Principal) -> ApiResult<()> {
    match p.role {
        Role::Creator | Role::Admin => Ok(()),
        Role::Viewer => Err(ApiError::forbidden("uploading needs the creator role")),
    }
}

fn require_admin(p: &Principal) -> ApiResult<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this route is for admins"))
    }
}

// ---------------------------------------------------------------- helpers

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// Runs a creating request at most once per `X-Idempotency-Key`: a replay
/// gets the stored status and body (and `Idempotent-Replayed: true`); the
/// same key with a different request is a 409. 5xx results are not
/// stored, so a retry after a server fault runs again.
async fn once<S, T, F, Fut>(
    ctx: &Ctx<S>,
    headers: &HeaderMap,
    scope: String,
    material: &[u8],
    status: StatusCode,
    run: F,
) -> Response
where
    S: Service,
    T: Serialize,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let Some(key) = headers.get(IDEMPOTENCY_HEADER) else {
        return match run().await {
            Ok(v) => json_response(status, &v),
            Err(e) => e.into_response(),
        };
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::validation("X-Idempotency-Key must be 1–255 visible ASCII characters")
                .into_response()
        }
    };
    let material = String::from_utf8_lossy(material);
    match ctx.svc.idempotency_begin(&scope, &key, &material).await {
        Err(e) => e.into_response(),
        Ok(IdempotencyBegin::Replay { status, body }) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Ok(IdempotencyBegin::Proceed) => {
            let (code, body) = match run().await {
                Ok(v) => (status, serde_json::to_vec(&v)),
                Err(e) => (e.status(), serde_json::to_vec(&e.into_body())),
            };
            let body = Bytes::from(body.unwrap_or_default());
            if code.is_server_error() {
                ctx.svc.idempotency_abort(&scope, &key).await;
            } else {
                ctx.svc
                    .idempotency_finish(&scope, &key, code.as_u16(), body.clone())
                    .await;
            }
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = code;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

// ---------------------------------------------------------------- users

#[utoipa::path(post, path = "/api/v1/auth/register", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn register<S: Service>(State(ctx): St<S>, headers: HeaderMap, body: Bytes) -> Response {
    let req: RegisterRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("anonymous:register:{}", req.username);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.register(req)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody)))]
async fn login<S: Service>(State(ctx): St<S>, body: Bytes) -> ApiResult<Json<AuthResponse>> {
    let req: LoginRequest = parse_json(&body)?;
    Ok(Json(ctx.svc.login(req).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
async fn get_user<S: Service>(State(ctx): St<S>, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(ctx.svc.get_user(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/videos", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 404, body = ErrorBody)))]
async fn user_videos<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Page<Video>>> {
    let Query(page) = query?;
    Ok(Json(ctx.svc.user_videos(caller.as_ref(), &id, page).await?))
}

// ---------------------------------------------------------------- uploads

#[utoipa::path(post, path = "/api/v1/uploads/init", request_body = UploadInit,
    responses((status = 201, body = UploadSession), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
async fn init_upload<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        require_creator(&p)?;
        let req: UploadInit = parse_json(&body)?;
        Ok::<_, ApiError>(req)
    };
    let req = match run.await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:uploads.init", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.init_upload(&p, req)
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/uploads/{id}/chunks/{n}", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("x-chunk-sha256" = Option<String>, Header, description = "hex SHA-256 of the body")),
    responses((status = 200, body = ChunkReceipt), (status = 400, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn put_chunk<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path((id, n)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<ChunkReceipt>> {
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::validation(format!("chunk number `{n}` is not a number")))?;
    let body = body?;
    let digest = match headers.get(CHUNK_DIGEST_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::validation("X-Chunk-SHA256 must be hex"))?
                .to_ascii_lowercase(),
        ),
    };
    Ok(Json(ctx.svc.put_chunk(&p, &id, n, body, digest).await?))
}

#[utoipa::path(get, path = "/api/v1/uploads/{id}", responses((status = 200, body = UploadSession), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_upload<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadSession>> {
    Ok(Json(ctx.svc.get_upload(&p, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/uploads/{id}/complete", request_body = VideoMeta,
    responses((status = 202, body = Accepted), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
async fn complete_upload<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let meta: VideoMeta = match parse_json(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:uploads.complete:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::ACCEPTED, || {
        ctx.svc.complete_upload(&p, &id, meta)
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/uploads/{id}", responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn cancel_upload<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ctx.svc.cancel_upload(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `multipart/form-data` with a `metadata` part (JSON `VideoMeta`) and a
/// `file` part (the video, with its filename).
#[utoipa::path(post, path = "/api/v1/videos", request_body(content_type = "multipart/form-data", description = "parts `metadata` (JSON VideoMeta) and `file`"),
    responses((status = 202, body = Accepted), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_video<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let parsed = async {
        require_creator(&p)?;
        let mut multipart = multipart?;
        let mut meta: Option<(VideoMeta, Bytes)> = None;
        let mut file: Option<(String, Bytes)> = None;
        while let Some(field) = multipart.next_field().await? {
            match field.name() {
                Some("metadata") => {
                    let raw = field.bytes().await?;
                    meta = Some((parse_json(&raw)?, raw));
                }
                Some("file") => {
                    let name = field.file_name().unwrap_or("upload").to_owned();
                    file = Some((name, field.bytes().await?));
                }
                other => {
                    return Err(ApiError::validation(format!(
                        "unexpected form part {other:?}: send `metadata` and `file`"
                    )))
                }
            }
        }
        let (meta, raw_meta) =
            meta.ok_or_else(|| ApiError::validation("the `metadata` part is missing"))?;
        let (name, bytes) =
            file.ok_or_else(|| ApiError::validation("the `file` part is missing"))?;
        Ok::<_, ApiError>((meta, raw_meta, name, bytes))
    };
    let (meta, raw_meta, name, bytes) = match parsed.await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let material = format!(
        "{}\n{name}\n{}",
        String::from_utf8_lossy(&raw_meta),
        bytes.len()
    );
    let scope = format!("{}:videos.create", p.user_id);
    once(
        &ctx,
        &headers,
        scope,
        material.as_bytes(),
        StatusCode::ACCEPTED,
        || ctx.svc.create_video(&p, name, meta, bytes),
    )
    .await
}

// ------------------------------------------------------------------- feed

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

#[utoipa::path(get, path = "/api/v1/feed/for-you", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn feed_for_you<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    query: QueryResult<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.feed(Some(&p), FeedKind::ForYou, q).await?))
}

#[utoipa::path(get, path = "/api/v1/feed/following", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn feed_following<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    query: QueryResult<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.feed(Some(&p), FeedKind::Following, q).await?))
}

/// Open to anonymous callers.
#[utoipa::path(get, path = "/api/v1/feed/trending", params(FeedQuery),
    responses((status = 200, body = Feed), (status = 400, body = ErrorBody)))]
async fn feed_trending<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    query: QueryResult<FeedQuery>,
) -> ApiResult<Json<Feed>> {
    let Query(q) = query?;
    Ok(Json(
        ctx.svc.feed(caller.as_ref(), FeedKind::Trending, q).await?,
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
    Ok(Json(ctx.svc.set_interests(&p, req).await?))
}

#[utoipa::path(post, path = "/api/v1/users/{id}/follow",
    responses((status = 200, body = FollowState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn follow<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    Ok(Json(ctx.svc.follow(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/follow",
    responses((status = 200, body = FollowState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unfollow<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    Ok(Json(ctx.svc.follow(&p, &id, false).await?))
}

/// Accepted events are durable before the 202; repeated `eventId`s are
/// counted once.
#[utoipa::path(post, path = "/api/v1/engagement/watch-batch", request_body = WatchBatch,
    responses((status = 202, body = WatchAccepted), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn watch_batch<S: Service>(State(ctx): St<S>, Auth(p): Auth, body: Bytes) -> Response {
    let run = async {
        let req: WatchBatch = parse_json(&body)?;
        ctx.svc.watch_batch(&p, req).await
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
    query: QueryResult<PageQuery>,
) -> ApiResult<Json<Page<FollowEntry>>> {
    let Query(page) = query?;
    Ok(Json(ctx.svc.follows(&id, true, page).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/following", params(PageQuery),
    responses((status = 200, body = Page<FollowEntry>), (status = 404, body = ErrorBody)))]
async fn following<S: Service>(
    State(ctx): St<S>,
    Path(id): Path<String>,
    query: QueryResult<PageQuery>,
) -> ApiResult<Json<Page<FollowEntry>>> {
    let Query(page) = query?;
    Ok(Json(ctx.svc.follows(&id, false, page).await?))
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
    Ok(Json(ctx.svc.like(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/videos/{id}/like",
    responses((status = 200, body = LikeState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unlike<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<LikeState>> {
    Ok(Json(ctx.svc.like(&p, &id, false).await?))
}

#[utoipa::path(post, path = "/api/v1/videos/{id}/save",
    responses((status = 200, body = SaveState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn save<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SaveState>> {
    Ok(Json(ctx.svc.save(&p, &id, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/videos/{id}/save",
    responses((status = 200, body = SaveState), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn unsave<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<SaveState>> {
    Ok(Json(ctx.svc.save(&p, &id, false).await?))
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
        ctx.svc.share(&p, &id, req)
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
        ctx.svc.add_comment(&p, &id, req)
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
    query: QueryResult<PageQuery>,
) -> ApiResult<Json<Page<Comment>>> {
    let Query(page) = query?;
    Ok(Json(ctx.svc.comments(caller.as_ref(), &id, page).await?))
}

/// Replies in a thread, oldest first.
#[utoipa::path(get, path = "/api/v1/comments/{id}/replies", params(PageQuery),
    responses((status = 200, body = Page<Comment>), (status = 404, body = ErrorBody)))]
async fn replies<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
    query: QueryResult<PageQuery>,
) -> ApiResult<Json<Page<Comment>>> {
    let Query(page) = query?;
    Ok(Json(ctx.svc.replies(caller.as_ref(), &id, page).await?))
}

#[utoipa::path(get, path = "/api/v1/hashtags/trending", params(LimitQuery),
    responses((status = 200, body = Vec<TrendingHashtag>), (status = 400, body = ErrorBody)))]
async fn trending_hashtags<S: Service>(
    State(ctx): St<S>,
    query: QueryResult<LimitQuery>,
) -> ApiResult<Json<Vec<TrendingHashtag>>> {
    let Query(q) = query?;
    Ok(Json(
        ctx.svc.trending_hashtags(q.limit.unwrap_or(20)).await?,
    ))
}

/// The video's owner (or an admin) only.
#[utoipa::path(get, path = "/api/v1/analytics/videos/{id}", params(PeriodQuery),
    responses((status = 200, body = VideoAnalytics), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn video_analytics<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    query: QueryResult<PeriodQuery>,
) -> ApiResult<Json<VideoAnalytics>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.video_analytics(&p, &id, q).await?))
}

/// The creator themself (or an admin) only.
#[utoipa::path(get, path = "/api/v1/analytics/creators/{id}/overview", params(PeriodQuery),
    responses((status = 200, body = CreatorOverview), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn creator_overview<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    query: QueryResult<PeriodQuery>,
) -> ApiResult<Json<CreatorOverview>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.creator_overview(&p, &id, q).await?))
}

#[utoipa::path(get, path = "/api/v1/search/videos", params(SearchQuery),
    responses((status = 200, body = Page<Video>), (status = 400, body = ErrorBody)))]
async fn search_videos<S: Service>(
    State(ctx): St<S>,
    query: QueryResult<SearchQuery>,
) -> ApiResult<Json<Page<Video>>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.search_videos(q).await?))
}

#[utoipa::path(get, path = "/api/v1/hashtags/{tag}/videos", params(PageQuery),
    responses((status = 200, body = Page<Video>), (status = 400, body = ErrorBody)))]
async fn hashtag_videos<S: Service>(
    State(ctx): St<S>,
    Path(tag): Path<String>,
    query: QueryResult<PageQuery>,
) -> ApiResult<Json<Page<Video>>> {
    let Query(q) = query?;
    Ok(Json(ctx.svc.hashtag_videos(&tag, q).await?))
}

// ---------------------------------------------------------------- videos

#[utoipa::path(get, path = "/api/v1/videos/{id}", responses((status = 200, body = Video), (status = 404, body = ErrorBody)))]
async fn get_video<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Video>> {
    Ok(Json(ctx.svc.get_video(caller.as_ref(), &id).await?))
}

#[utoipa::path(get, path = "/api/v1/videos/{id}/status", responses((status = 200, body = VideoStatus), (status = 404, body = ErrorBody)))]
async fn video_status<S: Service>(
    State(ctx): St<S>,
    MaybeAuth(caller): MaybeAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<VideoStatus>> {
    Ok(Json(ctx.svc.video_status(caller.as_ref(), &id).await?))
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
    let stream = ctx.svc.video_events(caller.as_ref(), &id).await?;
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
    ctx.svc.delete_video(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- ops

#[utoipa::path(get, path = "/api/v1/ops/inventory", responses((status = 200, description = "hardware inventory and placement")),
    security(("bearer" = [])))]
async fn inventory<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
) -> ApiResult<Json<serde_json::Value>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.inventory().await?))
}

#[utoipa::path(get, path = "/api/v1/ops/jobs", responses((status = 200, body = Vec<Job>)), security(("bearer" = [])))]
async fn jobs<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Job>>> {
    require_admin(&p)?;
    let Query(page) = query?;
    Ok(Json(
        ctx.svc
            .jobs(page.limit.unwrap_or(100).clamp(1, 1000))
            .await?,
    ))
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
        ctx.svc.reprocess(&id)
    })
    .await
}

// ---------------------------------------------------------------- plain

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        problems: Vec::new(),
    })
}

#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz<S: Service>(State(ctx): St<S>) -> Response {
    let health = ctx.svc.readiness().await;
    let status = if health.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &health)
}

async fn metrics<S: Service>(State(ctx): St<S>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.svc.metrics().await,
    )
        .into_response()
}

const PLAYER_HTML: &str = include_str!("../assets/player.html");

async fn player_page(Path(video_id): Path<String>) -> Response {
    if !origin::valid_id(&video_id) {
        return ApiError::not_found("video").into_response();
    }
    let page = PLAYER_HTML
        .replace("__MASTER_URL__", &format!("/hls/{video_id}/master.m3u8"))
        .replace("__POSTER_URL__", &format!("/thumbs/{video_id}/poster.jpg"));
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

async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.title = "Regional video appliance API".into();
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        register, login, get_user, user_videos, init_upload, put_chunk, get_upload,
        complete_upload, cancel_upload, create_video, get_video, video_status,
        video_events, delete_video, inventory, jobs, reprocess, healthz, readyz,
        feed_for_you, feed_following, feed_trending, set_interests, follow, unfollow,
        watch_batch, search_videos, hashtag_videos, followers, following, like, unlike,
        save, unsave, share, add_comment, comments, replies, trending_hashtags,
        video_analytics, creator_overview
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI document of this router (also served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
