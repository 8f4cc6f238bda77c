//! What every resource's handlers share: the bearer-token extractors
//! (`Auth`, `MaybeAuth`) and role checks, JSON parsing and responses, the
//! `X-Idempotency-Key` wrapper for creating requests, and the state alias.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::service::{Accounts, Idempotency, IdempotencyBegin, Service};
use crate::wire::*;

pub(crate) type St<S> = State<Arc<Ctx<S>>>;

pub(crate) type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";

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
        Ok(Self(ctx.svc.accounts().authenticate(token).await?))
    }
}

impl<S: Service> FromRequestParts<Arc<Ctx<S>>> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx<S>>) -> ApiResult<Self> {
        match bearer(parts)? {
            Some(token) => Ok(Self(Some(ctx.svc.accounts().authenticate(token).await?))),
            None => Ok(Self(None)),
        }
    }
}

pub(crate) fn require_creator(p: &Principal) -> ApiResult<()> {
    match p.role {
        Role::Creator | Role::Admin => Ok(()),
        Role::Viewer => Err(ApiError::forbidden("uploading needs the creator role")),
    }
}

pub(crate) fn require_admin(p: &Principal) -> ApiResult<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this route is for admins"))
    }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// Runs a creating request at most once per `X-Idempotency-Key`: a replay
/// gets the stored status and body (and `Idempotent-Replayed: true`); the
/// same key with a different request is a 409. 5xx results are not
/// stored, so a retry after a server fault runs again.
pub(crate) async fn once<S, T, F, Fut>(
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
    match ctx
        .svc
        .idempotency()
        .idempotency_begin(&scope, &key, &material)
        .await
    {
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
                ctx.svc.idempotency().idempotency_abort(&scope, &key).await;
            } else {
                ctx.svc
                    .idempotency()
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
