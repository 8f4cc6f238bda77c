//! The one place errors become HTTP: every failure leaves the server as the
//! spec's shape `{"error":{"code","message","details"}}` with the status of
//! its code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The spec's error codes. The HTTP status follows from the code alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedFormat,
    UploadExpired,
    UploadIncomplete,
    RangeNotSatisfiable,
    PreconditionFailed,
    /// tus: a body that does not match its `Upload-Checksum` (460).
    ChecksumMismatch,
    RateLimited,
    Unavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::UploadIncomplete => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UploadExpired => StatusCode::GONE,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            // tus's checksum extension names this status; it is valid by
            // construction (three digits, 100–999).
            Self::ChecksumMismatch => StatusCode::from_u16(crate::tus::CHECKSUM_MISMATCH)
                .unwrap_or(StatusCode::BAD_REQUEST),
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code a bare status maps to (for responses produced below the
    /// handlers: unknown routes, wrong methods, body limits, timeouts).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 | 422 => Self::ValidationError,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            409 => Self::Conflict,
            410 => Self::UploadExpired,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedFormat,
            412 => Self::PreconditionFailed,
            460 => Self::ChecksumMismatch,
            416 => Self::RangeNotSatisfiable,
            429 => Self::RateLimited,
            503 | 504 | 408 => Self::Unavailable,
            _ => Self::InternalError,
        }
    }
}

/// An error as the client sees it. `message` is for people; `details` is
/// machine-readable context (which field, which chunks are missing, …).
/// Internal errors never carry their cause: it is logged, not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds, for `RATE_LIMITED` (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    /// A request field (query or path parameter, JSON body member, header)
    /// that is missing or breaks a rule: `VALIDATION_ERROR` with the message
    /// `"<field>: <what>"` and `details.field` naming it (a JSON member by
    /// its path, e.g. `events[2].videoId`).
    pub fn invalid(field: impl Into<String>, what: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::validation(format!("{field}: {what}"))
            .with_details(serde_json::json!({ "field": field }))
    }

    /// The field a validation error names (`details.field`), if any.
    pub fn field(&self) -> Option<&str> {
        self.details.as_ref()?.get("field")?.as_str()
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Logs `cause` with a correlation id and returns an error that only
    /// carries the id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = uuid_like();
        tracing::error!(error.id = %id, "internal error: {cause}");
        Self::new(
            ErrorCode::InternalError,
            format!("internal error (reference {id})"),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{t:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The wire shape of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people. A `VALIDATION_ERROR` about one field starts with it
    /// (`"limit: must be 1–50, got 0"`).
    pub message: String,
    /// Machine-readable context. A `VALIDATION_ERROR` about one field names
    /// it in `field`: a query or path parameter, a header, or a JSON member
    /// by its path (`events[0].videoId`; `body` for a body that is not a
    /// JSON object); `line`/`column` locate a JSON error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// The wire body of this error (without its HTTP status and headers).
    pub fn into_body(self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let mut response = (status, axum::Json(self.into_body())).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // RFC 9110 §11.6.1 / RFC 6750 §3: a 401 names the scheme to use.
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"appliance\""),
            );
        }
        // Errors are about this request; a shared cache must not keep them
        // (the origin sets its own, short, policy for its 404s).
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let code = ErrorCode::for_status(r.status());
        if matches!(code, ErrorCode::ValidationError | ErrorCode::InternalError) {
            Self::invalid("body", without_prefix(&r.body_text()))
        } else {
            Self::new(code, r.body_text())
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        Self::new(ErrorCode::for_status(r.status()), r.body_text())
    }
}

/// A path parameter that does not decode (or parse), named by its key.
impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let PathRejection::FailedToDeserializePathParams(e) = &r else {
            return Self::internal(r.body_text());
        };
        match e.kind() {
            ErrorKind::ParseErrorAtKey {
                key, expected_type, ..
            } => Self::invalid(key.as_str(), format!("not a valid {expected_type}")),
            ErrorKind::InvalidUtf8InPathParam { key } => {
                Self::invalid(key.as_str(), "not valid UTF-8 once percent-decoded")
            }
            ErrorKind::DeserializeError { key, message, .. } => {
                Self::invalid(key.as_str(), message)
            }
            // `ErrorKind` is non-exhaustive: whatever else, as axum says it.
            ErrorKind::WrongNumberOfParameters { .. }
            | ErrorKind::ParseErrorAtIndex { .. }
            | ErrorKind::ParseError { .. }
            | ErrorKind::UnsupportedType { .. }
            | ErrorKind::Message(_)
            | _ => Self::invalid("path", e.kind()),
        }
    }
}

/// A query string that does not decode: the parameter is named where the
/// rejection says which (routes use `routes::extract::Query`, which always
/// does).
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        let text = without_prefix(&r.body_text()).to_owned();
        match text.split_once(": ") {
            Some((field, what)) if !field.contains(' ') => Self::invalid(field, what),
            Some(_) | None => Self::invalid("query", text),
        }
    }
}

/// axum's rejection text without its "Failed to …: " preamble.
fn without_prefix(text: &str) -> &str {
    text.strip_prefix("Failed to deserialize query string: ")
        .or_else(|| text.strip_prefix("Failed to deserialize the JSON body into the target type: "))
        .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
        .unwrap_or(text)
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(r: axum::extract::multipart::MultipartRejection) -> Self {
        Self::new(ErrorCode::for_status(r.status()), r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(r: axum::extract::multipart::MultipartError) -> Self {
        Self::new(ErrorCode::for_status(r.status()), r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_spec_statuses() {
        assert_eq!(ErrorCode::UploadExpired.status(), StatusCode::GONE);
        assert_eq!(ErrorCode::UploadIncomplete.status(), StatusCode::CONFLICT);
        assert_eq!(
            ErrorCode::UnsupportedFormat.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
        ] {
            assert_eq!(ErrorCode::for_status(code.status()), code);
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let e = ApiError::internal("disk /secret/path is full");
        assert!(!e.message.contains("secret"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
