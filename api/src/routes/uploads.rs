//! Uploads: resumable sessions (init, chunks, status, complete, cancel)
//! and the single-shot multipart `POST /videos`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{once, parse_json, require_creator, Auth, Path, St};
use super::state::{BodyLimits, Ctx, CHUNK_DIGEST_HEADER};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Service, Uploads};
use crate::wire::*;

/// The upload routes; a chunk and a single-shot upload get their own body
/// ceilings instead of the JSON one.
pub(crate) fn router<S: Service>(limits: &BodyLimits) -> Router<Arc<Ctx<S>>> {
    Router::new()
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
}

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
        ctx.svc.uploads().init_upload(&p, req)
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/uploads/{id}/chunks/{n}", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(
        ("id" = String, Path, description = "the upload session"),
        ("n" = u32, Path, minimum = 0, description = "the chunk's number, from 0"),
        ("x-chunk-sha256" = Option<String>, Header, description = "hex SHA-256 of the body")
    ),
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
        .map_err(|_| ApiError::invalid("n", format!("`{n}` is not a chunk number (0, 1, 2, …)")))?;
    let body = body?;
    let digest = match headers.get(CHUNK_DIGEST_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid(CHUNK_DIGEST_HEADER, "must be hex"))?
                .to_ascii_lowercase(),
        ),
    };
    Ok(Json(
        ctx.svc
            .uploads()
            .put_chunk(&p, &id, n, body, digest)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/uploads/{id}", responses((status = 200, body = UploadSession), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_upload<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadSession>> {
    Ok(Json(ctx.svc.uploads().get_upload(&p, &id).await?))
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
        ctx.svc.uploads().complete_upload(&p, &id, meta)
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
    ctx.svc.uploads().cancel_upload(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `multipart/form-data` with a `metadata` part (JSON `VideoMeta`) and a
/// `file` part (the video, with its filename).
#[utoipa::path(post, path = "/api/v1/videos", request_body(content = SingleShotUpload, content_type = "multipart/form-data"),
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
                    return Err(ApiError::invalid(
                        other.unwrap_or("form"),
                        "unexpected form part: send `metadata` and `file`",
                    ))
                }
            }
        }
        let (meta, raw_meta) = meta.ok_or_else(|| ApiError::invalid("metadata", "required"))?;
        let (name, bytes) = file.ok_or_else(|| ApiError::invalid("file", "required"))?;
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
        || ctx.svc.uploads().create_video(&p, name, meta, bytes),
    )
    .await
}
