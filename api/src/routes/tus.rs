//! tus 1.0 uploads (`/api/v1/uploads/tus`, `…/tus/{id}`): creation (with
//! or without the first bytes), `HEAD` for the offset, `PATCH` to append,
//! `DELETE` to terminate, `OPTIONS` for the capabilities. Same bearer
//! tokens, upload sessions, limits and completion as the chunked API; the
//! header grammars are `crate::tus`. Every response, errors included,
//! carries `Tus-Resumable` and the CORS headers a browser client needs to
//! read the tus headers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::{StreamExt, TryStreamExt};
use headers::HeaderMapExt;

use super::extract::{once, require_creator, Auth, Path, St};
use super::state::{Ctx, PREFIX};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Service, Uploads};
use crate::tus::{self, TusUpload};
use crate::wire::Principal;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/uploads/tus",
            post(tus_create::<S>).options(tus_options::<S>),
        )
        .route(
            "/uploads/tus/{id}",
            axum::routing::head(tus_head::<S>)
                .patch(tus_patch::<S>)
                .delete(tus_terminate::<S>)
                .options(tus_options_upload::<S>),
        )
        .layer(axum::middleware::map_response(tus_headers))
}

fn name(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}

/// What every tus response carries: the protocol version, no caching (an
/// offset is stale as soon as it is sent; tus requires it of `HEAD`), and
/// CORS for browser clients (bearer tokens, never cookies, so any origin).
async fn tus_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        name("tus-resumable"),
        HeaderValue::from_static(tus::VERSION),
    );
    if r.status() == StatusCode::PRECONDITION_FAILED {
        r.headers_mut()
            .insert(name("tus-version"), HeaderValue::from_static(tus::VERSION));
    }
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(tus::EXPOSED_HEADERS),
    );
    r
}

fn text<'h>(headers: &'h HeaderMap, field: &'static str) -> ApiResult<Option<&'h str>> {
    headers
        .get(field)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid(field, "must be visible ASCII"))
        })
        .transpose()
}

fn number(headers: &HeaderMap, field: &'static str) -> ApiResult<u64> {
    let value = text(headers, field)?.ok_or_else(|| ApiError::invalid(field, "required"))?;
    tus::parse_number(value).ok_or_else(|| ApiError::invalid(field, "must be a whole number ≥ 0"))
}

fn version(headers: &HeaderMap) -> ApiResult<()> {
    tus::check_version(headers.get("tus-resumable").and_then(|v| v.to_str().ok()))
}

fn bytes_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let sent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = sent.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(tus::CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ApiError::new(
            crate::ErrorCode::UnsupportedFormat,
            format!(
                "upload bytes are sent as Content-Type: {}",
                tus::CONTENT_TYPE
            ),
        )
        .with_details(serde_json::json!({ "field": "Content-Type" })))
    }
}

fn checksum(headers: &HeaderMap) -> ApiResult<Option<tus::Checksum>> {
    text(headers, "upload-checksum")?
        .map(tus::parse_checksum)
        .transpose()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    text(headers, "content-length")
        .ok()
        .flatten()
        .and_then(tus::parse_number)
}

/// `Upload-Offset`, `Upload-Length`, `Upload-Expires` (while the upload
/// can still expire) and `Video-Id`, the video the upload becomes.
fn progress(h: &mut HeaderMap, s: &TusUpload) {
    h.insert(name("upload-offset"), s.offset.into());
    h.insert(name("upload-length"), s.length.into());
    if !s.completed {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(s.expires_at_ms.max(0) as u64);
        let mut date = HeaderMap::new();
        date.typed_insert(headers::Expires::from(at));
        if let Some(v) = date.remove(header::EXPIRES) {
            h.insert(name("upload-expires"), v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&s.video_id) {
        h.insert(name("video-id"), v);
    }
}

fn bytes_of(body: Body) -> tus::Body {
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .boxed()
}

fn location(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{PREFIX}/uploads/tus/{id}")).ok()
}

/// Runs the write on a task of its own: hyper drops a handler's future
/// when the client goes away, and the bytes that did arrive must still be
/// stored and recorded, so that the client resumes from them.
async fn write<S: Service>(
    ctx: Arc<Ctx<S>>,
    p: Principal,
    id: String,
    offset: u64,
    declared: Option<u64>,
    checksum: Option<tus::Checksum>,
    stream: tus::Body,
) -> ApiResult<TusUpload> {
    tokio::spawn(async move {
        ctx.svc
            .uploads()
            .tus_write(&p, &id, offset, declared, checksum, stream)
            .await
    })
    .await
    .map_err(ApiError::internal)?
}

/// Creates an upload: `Upload-Length` bytes, described by
/// `Upload-Metadata` (base64 values: `filename`, `filetype`, `title`,
/// `description`, `hashtags`, `soundId`, `visibility`). A body
/// (creation-with-upload) is stored as the first bytes. The answer's
/// `Location` is the upload's URL.
#[utoipa::path(post, path = "/api/v1/uploads/tus",
    request_body(content = tus::TusBytes, content_type = "application/offset+octet-stream",
        description = "optional: the first bytes of the upload (creation-with-upload)"),
    params(
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "the tus version: 1.0.0"),
        ("Upload-Length" = String, Header, pattern = r"^[0-9]*[1-9][0-9]*$", description = "the file's size in bytes, at least 1 and at most Tus-Max-Size"),
        ("Upload-Metadata" = Option<String>, Header, description = "comma-separated `key base64(value)` pairs"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256 <base64 digest>` of the body")
    ),
    responses(
        (status = 201, body = TusUpload, description = "created; `Location` is the upload",
            headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String), ("Tus-Resumable" = String))),
        (status = 412, body = ErrorBody, description = "an unsupported Tus-Resumable", headers(("Tus-Version" = String))),
        (status = 460, body = ErrorBody, description = "the body does not match Upload-Checksum; none of it was kept")
    ),
    security(("bearer" = [])))]
async fn tus_create<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let parsed = (|| {
        version(&headers)?;
        require_creator(&p)?;
        for unsupported in ["upload-defer-length", "upload-concat"] {
            if headers.contains_key(unsupported) {
                return Err(ApiError::invalid(
                    unsupported,
                    "not supported here: send Upload-Length with the whole file's size",
                ));
            }
        }
        let length = number(&headers, "upload-length")?;
        let metadata = text(&headers, "upload-metadata")?;
        let creation = tus::creation(length, metadata)?;
        let material = format!("{length}\n{}", metadata.unwrap_or_default());
        Ok::<_, ApiError>((creation, checksum(&headers)?, material))
    })();
    let (creation, digest, material) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // Whether bytes came along: a chunked body may be empty, and the body
    // below the layers (body timeout) does not say, so the first non-empty
    // frame decides (read only once the headers passed, so a refused
    // request never has its body asked for); it goes back in front.
    let mut stream = bytes_of(body);
    let mut first = None;
    if content_length(&headers) != Some(0) {
        while let Some(frame) = stream.next().await {
            if frame.as_ref().is_ok_and(|b| b.is_empty()) {
                continue;
            }
            first = Some(frame);
            break;
        }
    }
    let with_bytes = first.is_some();
    if with_bytes {
        if let Err(e) = bytes_content_type(&headers) {
            return e.into_response();
        }
    }
    let stream = futures::stream::iter(first).chain(stream).boxed();
    let scope = format!("{}:uploads.tus.create", p.user_id);
    let created = once(
        &ctx,
        &headers,
        scope,
        material.as_bytes(),
        StatusCode::CREATED,
        || ctx.svc.uploads().tus_create(&p, creation),
    )
    .await;
    if created.status() != StatusCode::CREATED {
        return created;
    }
    // The upload's id, from a fresh creation or a replayed one.
    let id = axum::body::to_bytes(created.into_body(), 1 << 16)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["uploadId"].as_str().map(str::to_owned));
    let Some(id) = id else {
        return ApiError::internal("a tus creation answered without its upload id").into_response();
    };
    let state = if with_bytes {
        let declared = content_length(&headers);
        write(ctx.clone(), p, id.clone(), 0, declared, digest, stream).await
    } else {
        ctx.svc.uploads().tus_state(&p, &id).await
    };
    let mut r = match state {
        Ok(s) => {
            let mut r = (StatusCode::CREATED, axum::Json(&s)).into_response();
            progress(r.headers_mut(), &s);
            r
        }
        Err(e) => e.into_response(),
    };
    // Even when the first bytes were refused, the upload exists: the
    // client can resume it.
    if let Some(l) = location(&id) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    r
}

/// The upload's offset (where the next `PATCH` starts), length, expiry and
/// metadata. Never cached.
#[utoipa::path(head, path = "/api/v1/uploads/tus/{id}",
    params(
        ("id" = String, Path, description = "the upload"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "the tus version: 1.0.0")
    ),
    responses(
        (status = 200, description = "the upload's state",
            headers(("Upload-Offset" = u64), ("Upload-Length" = u64), ("Upload-Expires" = String),
                ("Upload-Metadata" = String), ("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "a header breaks the protocol's grammar"),
        (status = 401, description = "no bearer token, or one that is unknown or expired"),
        (status = 404, description = "no such upload, not the caller's, or terminated"),
        (status = 409, description = "the upload was refused (its file is not a video the box takes)"),
        (status = 410, description = "the upload expired"),
        (status = 412, description = "an unsupported Tus-Resumable", headers(("Tus-Version" = String)))
    ),
    security(("bearer" = [])))]
async fn tus_head<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = async {
        version(&headers)?;
        ctx.svc.uploads().tus_state(&p, &id).await
    };
    match state.await {
        Ok(s) => {
            let mut r = StatusCode::OK.into_response();
            progress(r.headers_mut(), &s);
            if let Some(m) = s
                .metadata
                .as_deref()
                .and_then(|m| HeaderValue::from_str(m).ok())
            {
                r.headers_mut().insert(name("upload-metadata"), m);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Appends the body at `Upload-Offset`, which must be the upload's offset
/// (else 409, nothing changed). The bytes are stored durably before the
/// 204; a body that breaks off keeps what arrived. The last byte queues
/// the transcode (once, however often the last `PATCH` is retried).
#[utoipa::path(patch, path = "/api/v1/uploads/tus/{id}",
    request_body(content = tus::TusBytes, content_type = "application/offset+octet-stream"),
    params(
        ("id" = String, Path, description = "the upload"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "the tus version: 1.0.0"),
        ("Upload-Offset" = String, Header, pattern = r"^[0-9]+$", description = "where the body starts: the upload's offset, in bytes"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256 <base64 digest>` of the body")
    ),
    responses(
        (status = 204, description = "stored", headers(("Upload-Offset" = u64), ("Upload-Expires" = String))),
        (status = 412, body = ErrorBody, description = "an unsupported Tus-Resumable", headers(("Tus-Version" = String))),
        (status = 460, body = ErrorBody, description = "the body does not match Upload-Checksum; none of it was kept")
    ),
    security(("bearer" = [])))]
async fn tus_patch<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let parsed = (|| {
        version(&headers)?;
        bytes_content_type(&headers)?;
        Ok::<_, ApiError>((number(&headers, "upload-offset")?, checksum(&headers)?))
    })();
    let (offset, digest) = match parsed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let declared = content_length(&headers);
    match write(ctx, p, id, offset, declared, digest, bytes_of(body)).await {
        Ok(s) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            progress(r.headers_mut(), &s);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Terminates an unfinished upload: its bytes are deleted and its URL
/// answers 404 from then on.
#[utoipa::path(delete, path = "/api/v1/uploads/tus/{id}",
    params(
        ("id" = String, Path, description = "the upload"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "the tus version: 1.0.0")
    ),
    responses(
        (status = 204, description = "terminated"),
        (status = 412, body = ErrorBody, description = "an unsupported Tus-Resumable", headers(("Tus-Version" = String)))
    ),
    security(("bearer" = [])))]
async fn tus_terminate<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let done = async {
        version(&headers)?;
        ctx.svc.uploads().tus_terminate(&p, &id).await
    };
    match done.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The server's tus capabilities (and the CORS preflight of browser
/// clients, which carries no token).
#[utoipa::path(options, path = "/api/v1/uploads/tus",
    responses((status = 204, description = "what this server supports",
        headers(("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Max-Size" = u64),
            ("Tus-Checksum-Algorithm" = String)))))]
async fn tus_options<S: Service>(State(ctx): St<S>) -> Response {
    capabilities(&ctx)
}

/// The same capabilities, at an upload's URL (browsers preflight each
/// `PATCH`, `HEAD` and `DELETE` there).
#[utoipa::path(options, path = "/api/v1/uploads/tus/{id}",
    params(("id" = String, Path, description = "the upload")),
    responses((status = 204, description = "what this server supports",
        headers(("Tus-Version" = String), ("Tus-Extension" = String), ("Tus-Max-Size" = u64),
            ("Tus-Checksum-Algorithm" = String)))))]
async fn tus_options_upload<S: Service>(State(ctx): St<S>) -> Response {
    capabilities(&ctx)
}

/// The creation's body is optional (creation-with-upload), which the path
/// macro can only say as `oneOf: [null, …]`, a schema `null` bytes would
/// break; the document says it as tus does: `required: false`.
pub(super) struct OptionalCreationBody;

impl utoipa::Modify for OptionalCreationBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let create = openapi
            .paths
            .paths
            .get_mut(&format!("{PREFIX}/uploads/tus"))
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut());
        if let Some(body) = create {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

fn capabilities<S: Service>(ctx: &Ctx<S>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(name("tus-version"), HeaderValue::from_static(tus::VERSION));
    h.insert(
        name("tus-extension"),
        HeaderValue::from_static(tus::EXTENSIONS),
    );
    h.insert(
        name("tus-max-size"),
        ctx.svc.uploads().tus_max_size().into(),
    );
    h.insert(
        name("tus-checksum-algorithm"),
        HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, HEAD, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(tus::ALLOWED_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}
