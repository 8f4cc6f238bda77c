//! The copyright check's reference library and its flags, under
//! `/api/v1/ops` (admins only): add a reference track (multipart
//! `metadata` + `file`), list and delete them, and list the uploads whose
//! audio matched one.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};

use super::extract::{parse_json, require_admin, Auth, Path, Query, St};
use super::state::{BodyLimits, Ctx};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Copyright, Service};
use crate::wire::*;

/// The copyright routes, relative to `/api/v1`; a reference track takes
/// the single-shot upload's body ceiling.
pub(crate) fn router<S: Service>(limits: &BodyLimits) -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/ops/reference-audio",
            get(list_reference_audio::<S>)
                .post(add_reference_audio::<S>)
                .layer(DefaultBodyLimit::max(limits.single_shot)),
        )
        .route(
            "/ops/reference-audio/{id}",
            delete(delete_reference_audio::<S>),
        )
        .route("/ops/flags", get(audio_flags::<S>))
}

/// `multipart/form-data` with a `metadata` part (JSON
/// `ReferenceAudioMeta`: title, policy block | flag | allow) and a `file`
/// part (any audio or video file FFmpeg decodes). Its audio is
/// fingerprinted as an upload's is; later uploads whose audio matches it
/// are blocked, flagged or let through by its policy.
#[utoipa::path(post, path = "/api/v1/ops/reference-audio",
    request_body(content = ReferenceAudioUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = ReferenceAudio), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn add_reference_audio<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<(StatusCode, Json<ReferenceAudio>)> {
    require_admin(&p)?;
    let mut multipart = multipart?;
    let mut meta: Option<ReferenceAudioMeta> = None;
    let mut file = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("metadata") => meta = Some(parse_json(&field.bytes().await?)?),
            Some("file") => file = Some(field.bytes().await?),
            other => {
                return Err(ApiError::invalid(
                    other.unwrap_or("form"),
                    "unexpected form part: send `metadata` and `file`",
                ))
            }
        }
    }
    let meta = meta.ok_or_else(|| ApiError::invalid("metadata", "required"))?;
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::invalid("file", "required: an audio or video file"))?;
    let added = ctx.svc.copyright().add_reference(&p, meta, file).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// The reference library, newest first.
#[utoipa::path(get, path = "/api/v1/ops/reference-audio", params(PageQuery),
    responses((status = 200, body = Page<ReferenceAudio>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_reference_audio<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ReferenceAudio>>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.copyright().references(page).await?))
}

/// Removes a reference track and the matches recorded against it.
#[utoipa::path(delete, path = "/api/v1/ops/reference-audio/{id}",
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_reference_audio<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&p)?;
    ctx.svc.copyright().delete_reference(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Uploads whose audio matched a `flag` or `block` reference, newest
/// first: the video, the reference, its policy, where the match is and
/// how sure.
#[utoipa::path(get, path = "/api/v1/ops/flags", params(PageQuery),
    responses((status = 200, body = Page<AudioFlag>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn audio_flags<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<AudioFlag>>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.copyright().flags(page).await?))
}
