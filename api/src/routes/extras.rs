//! The origin's routes for a ladder's extras that need more than a file
//! lookup: stills at any time (`/thumbs/{id}/still.jpg?t=`), rendered on
//! request by `api::Stills`, and the MP4 download as an attachment
//! (`/hls/{id}/download.mp4?download=1`). Both answer with the origin's
//! HTTP semantics (`origin::answer`); the storyboard files and a plain
//! download need none of this and are served by `origin::hls` itself.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::extract::parse_query;
use super::origin::{answer, not_found, preflight, valid_id, with_cors, FileKind, Source};
use super::playback::{serve_vod, Signed};
use super::state::Ctx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Service, Stills};

/// Static segments outrank the origin's `{file}` and `{*path}`, so these
/// two names get their own handlers and everything else is the origin's.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/thumbs/{video_id}/still.jpg",
            get(still::<S>).options(preflight),
        )
        .route(
            "/hls/{video_id}/download.mp4",
            get(download::<S>).options(preflight),
        )
}

/// A still at `t` seconds: the picture on screen then, as a JPEG of the
/// top rung's size, rendered on first request and cached. Served like the
/// poster (validators, 304, ranges, revalidated caching); a private or
/// unpublished video is refused like its poster.
#[utoipa::path(get, path = "/thumbs/{video_id}/still.jpg",
    params(
        ("video_id" = String, Path, description = "the video"),
        ("t" = f64, Query, description = "seconds from the start, from 0 to the video's duration (cached per tenth of a second)", minimum = 0),
    ),
    responses(
        (status = 200, content_type = "image/jpeg", description = "the frame shown at `t`"),
        (status = 400, body = ErrorBody, description = "`t` is missing, not a number, or outside the video"),
        (status = 404, body = ErrorBody, description = "no such video, or not published, or private"),
    ))]
pub(crate) async fn still<S: Service>(
    State(ctx): State<Arc<Ctx<S>>>,
    Path(video_id): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let t_ms = match parse_query::<HashMap<String, String>>(query.as_deref().unwrap_or_default())
        .and_then(|q| still_time(q.get("t").map(String::as_str)))
    {
        Ok(t) => t,
        Err(e) => return with_cors(e.into_response()),
    };
    let response = if !valid_id(&video_id) {
        not_found(&ctx.origin)
    } else {
        let lookup = ctx.svc.origin().still(&video_id, t_ms).await;
        answer(
            &ctx,
            Source::Vod,
            &video_id,
            "still.jpg",
            FileKind::Poster,
            &method,
            &headers,
            lookup,
        )
        .await
    };
    with_cors(response)
}

/// `t` in seconds (a decimal number ≥ 0) as whole milliseconds.
fn still_time(t: Option<&str>) -> ApiResult<u64> {
    let refuse = |why: &str| ApiError::invalid("t", why);
    let t = t.ok_or_else(|| refuse("required: seconds from the start of the video"))?;
    let secs: f64 = t
        .trim()
        .parse()
        .map_err(|_| refuse("must be a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(refuse(
            "must be a number of seconds from 0 to the video's duration",
        ));
    }
    // Saturates for absurd values, which the video's duration then refuses.
    Ok((secs * 1000.0).round() as u64)
}

/// `download.mp4` as the origin serves it, and with `?download=1` (or
/// `true`) as an attachment: a browser following the link saves the file
/// instead of playing it. The query is part of the URL, so a cache keeps
/// the two answers apart.
pub(crate) async fn download<S: Service>(
    State(ctx): State<Arc<Ctx<S>>>,
    Path(video_id): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    signed: Signed,
) -> Response {
    let response = if !valid_id(&video_id) {
        not_found(&ctx.origin)
    } else {
        let r = serve_vod(
            &ctx,
            signed,
            &video_id,
            "download.mp4",
            FileKind::Download,
            &method,
            &headers,
        )
        .await;
        if asks_download(query.as_deref()) {
            as_attachment(r, &video_id)
        } else {
            r
        }
    };
    with_cors(response)
}

fn asks_download(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "download=1" | "download=true"))
    })
}

fn as_attachment(mut r: Response, video_id: &str) -> Response {
    if r.status().is_success() {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{video_id}.mp4\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn a_still_time_is_seconds_from_zero() {
        assert_eq!(still_time(Some("3")).unwrap(), 3000);
        assert_eq!(still_time(Some("0")).unwrap(), 0);
        assert_eq!(still_time(Some("1.2345")).unwrap(), 1235);
        assert_eq!(still_time(Some("99999")).unwrap(), 99_999_000);
        for bad in [
            None,
            Some(""),
            Some("abc"),
            Some("-1"),
            Some("NaN"),
            Some("inf"),
            Some("1e400"),
        ] {
            let e = still_time(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::ValidationError, "{bad:?}");
            assert_eq!(
                e.details,
                Some(serde_json::json!({"field": "t"})),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_download_is_an_attachment_only_when_asked() {
        assert!(asks_download(Some("download=1")));
        assert!(asks_download(Some("x=2&download=true")));
        assert!(!asks_download(Some("download=0")));
        assert!(!asks_download(None));
        let r = as_attachment(StatusCode::OK.into_response(), "abc");
        assert_eq!(
            r.headers()[header::CONTENT_DISPOSITION],
            "attachment; filename=\"abc.mp4\""
        );
        let r = as_attachment(StatusCode::NOT_FOUND.into_response(), "abc");
        assert!(r.headers().get(header::CONTENT_DISPOSITION).is_none());
    }
}
