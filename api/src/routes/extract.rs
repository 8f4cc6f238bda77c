//! What every resource's handlers share: the bearer-token extractors
//! (`Auth`, `MaybeAuth`) and role checks, the query, path and JSON body
//! parsers (every failure the spec's `VALIDATION_ERROR` naming the field,
//! never the framework's rejection text), JSON responses, the
//! `X-Idempotency-Key` wrapper for creating requests, and the state alias.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
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

// ---------------------------------------------------------------- parsing

/// The query string as `T`, held to `T`'s rules (`Params::check`). A
/// parameter that is missing, unknown, repeated, of the wrong type or out
/// of range is a 400 naming it (`"limit: must be 1–50, got 0"`,
/// `details.field = "limit"`).
pub(crate) struct Query<T>(pub T);

impl<T, St> FromRequestParts<St> for Query<T>
where
    T: DeserializeOwned + Params,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> ApiResult<Self> {
        let value = parse_query::<T>(parts.uri.query().unwrap_or_default())?;
        value.check()?;
        Ok(Self(value))
    }
}

pub(crate) fn parse_query<T: DeserializeOwned>(raw: &str) -> ApiResult<T> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        field_error(&path, &message, "query")
    })
}

/// Path parameters as `T`; one that does not decode is a 400 naming it.
/// (Named `Path` like axum's, so the OpenAPI derive reads the route's
/// parameters from it in the same way.)
pub(crate) struct Path<T>(pub T);

impl<T, St> FromRequestParts<St> for Path<T>
where
    T: DeserializeOwned + Send,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> ApiResult<Self> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// A JSON body as `T`. Not JSON at all: a 400 naming `body`; a member that
/// is missing, unknown or of the wrong type: a 400 naming it by its path
/// (`events[0].videoId: required`).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| json_error(&e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    let err = match e.classify() {
        // Every body is an object: an array's members are no fields.
        serde_json::error::Category::Data if path.starts_with('[') => {
            ApiError::invalid("body", "must be a JSON object")
        }
        serde_json::error::Category::Data => field_error(path, &strip_position(e), "body"),
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => {
            ApiError::invalid("body", format!("not valid JSON: {}", strip_position(e)))
        }
    };
    let mut details = err.details.clone().unwrap_or_default();
    if e.line() > 0 {
        details["line"] = e.line().into();
        details["column"] = e.column().into();
    }
    err.with_details(details)
}

/// serde_json's message without its " at line L column C" (sent apart).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The validation error for a deserialisation failure at `path` (`.` when
/// at the top) with serde's `message`: the field is the path, or the
/// member serde names (a missing, unknown or repeated one), or `whole`
/// (the query, the body) when neither says.
fn field_error(path: &str, message: &str, whole: &str) -> ApiError {
    let named = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, tail) = rest.split_once('`')?;
        Some((
            name.to_owned(),
            tail.trim_start_matches([',', ' ']).to_owned(),
        ))
    };
    let join = |name: &str| match path {
        "" | "." => name.to_owned(),
        p => format!("{p}.{name}"),
    };
    if let Some((name, _)) = named("missing field `") {
        return ApiError::invalid(join(&name), "required");
    }
    if let Some((name, expected)) = named("unknown field `") {
        // serde_path_to_error has already stepped into the unknown member.
        let field = if path.ends_with(&name) {
            path.to_owned()
        } else {
            join(&name)
        };
        return ApiError::invalid(field, format!("not accepted here; {expected}"));
    }
    if let Some((name, _)) = named("duplicate field `") {
        return ApiError::invalid(join(&name), "given more than once");
    }
    let what = if message.contains("invalid digit") || message.contains("cannot parse integer") {
        "must be a whole number".to_owned()
    } else if message.contains("number too large") || message.contains("number too small") {
        "out of range".to_owned()
    } else {
        message.to_owned()
    };
    match path {
        "" | "." => ApiError::invalid(whole, what),
        p => ApiError::invalid(p, what),
    }
}

// ---------------------------------------------------------------- helpers

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
            return ApiError::invalid(
                "X-Idempotency-Key",
                "must be 1–255 visible ASCII characters",
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn refused<T: std::fmt::Debug>(r: ApiResult<T>) -> (String, String) {
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError, "{e}");
        let field = e.field().expect("the field is named").to_owned();
        assert!(
            e.message.starts_with(&format!("{field}: ")),
            "{e} does not start with its field"
        );
        assert!(!e.message.contains("Failed to"), "{e}");
        (field, e.message)
    }

    #[test]
    fn a_query_failure_names_the_parameter() {
        let q = parse_query::<SearchQuery>;
        assert_eq!(refused(q("")), ("q".into(), "q: required".into()));
        assert_eq!(refused(q("q=a&limit=ten")).0, "limit");
        assert_eq!(refused(q("q=a&limit=-1")).0, "limit");
        assert_eq!(refused(q("q=a&limit=99999999999")).0, "limit");
        assert_eq!(refused(q("q=a&sort=new")).0, "sort");
        assert_eq!(refused(q("q=a&q=b")).0, "q");
        let ok = q("q=big%20cats&limit=5&cursor=o5").unwrap();
        assert_eq!((ok.q.as_str(), ok.limit), ("big cats", Some(5)));
        // In range is `Params::check`'s business.
        let (field, message) = refused(parse_query::<FeedQuery>("limit=0").and_then(|f| {
            f.check()?;
            Ok(f)
        }));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("limit", "limit: must be 1–50, got 0")
        );
    }

    #[test]
    fn a_body_failure_names_the_member_by_its_path() {
        let (field, message) = refused(parse_json::<VideoMeta>(br#"{"title": 5}"#));
        assert_eq!(field, "title");
        assert!(message.contains("expected a string"), "{message}");
        assert!(!message.contains("line"), "{message}");
        assert_eq!(
            refused(parse_json::<VideoMeta>(br#"{"description": "x"}"#)),
            ("title".into(), "title: required".into())
        );
        assert_eq!(
            refused(parse_json::<VideoMeta>(br#"{"title": "a", "colour": 1}"#)).0,
            "colour"
        );
        let batch = br#"{"events": [{"eventId": "e", "watchMs": 1, "durationMs": 1,
            "source": "fyp", "timestamp": "2026-01-01T00:00:00Z"}]}"#;
        assert_eq!(
            refused(parse_json::<WatchBatch>(batch)),
            (
                "events[0].videoId".into(),
                "events[0].videoId: required".into()
            )
        );
        let batch = br#"{"events": [{"eventId": "e", "videoId": "v", "watchMs": "long",
            "durationMs": 1, "source": "fyp", "timestamp": "2026-01-01T00:00:00Z"}]}"#;
        assert_eq!(
            refused(parse_json::<WatchBatch>(batch)).0,
            "events[0].watchMs"
        );
        for junk in [&b"{"[..], b"", b"[1]", br#"{"title": "a"} {}"#, b"nul"] {
            assert_eq!(refused(parse_json::<VideoMeta>(junk)).0, "body", "{junk:?}");
        }
    }
}
