//! Signed playback over HTTP: `POST /api/v1/videos/{id}/playback-token`
//! (a video's owner or an admin gets a token), and the origin's answer to a
//! request that carries one (`?token=` or `X-Playback-Token`, see
//! `crate::playback`). A private video's files are served to a token that
//! checks out; a refused token is a 403 at every URL of the video; the
//! playlists and the thumbnails track served with a token name every file
//! with it. Public and unlisted videos ignore tokens entirely.
//!
//! Caching: a signed response is `private, no-store`, so no shared cache
//! keeps a private video's bytes, unless the domain says the CDN keys its
//! cache by the token (`PlaybackGrant::shareable`) and the token came in
//! the URL: then it is `public` with a `max-age` cut to the token's
//! remaining life, so a cached copy dies with the token and is only ever
//! found again by a request carrying the very same token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use super::extract::{once, parse_json, Auth, Path, St};
use super::origin::{answer, serve, FileKind, Source};
use super::player;
use super::state::Ctx;
use crate::conn::ConnTag;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::playback::{rewrite_playlist, rewrite_vtt, with_token, TOKEN_HEADER, TOKEN_PARAM};
use crate::service::{Origin, OriginLookup, OriginMeta, Playback, Service};
use crate::wire::*;

/// The token route, relative to `/api/v1`.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new().route("/videos/{id}/playback-token", post(playback_token::<S>))
}

/// A playback token for a video: its owner or an admin only. With it, the
/// origin serves the video even when it is private, until the token
/// expires, optionally only to one referrer or IP prefix. Tokens are not
/// stored: asking again gives another one, and none can be revoked short
/// of rotating the key.
#[utoipa::path(post, path = "/api/v1/videos/{id}/playback-token", request_body = PlaybackTokenRequest,
    responses(
        (status = 200, body = PlaybackToken),
        (status = 404, body = ErrorBody, description = "no such video, or not the caller's"),
        (status = 409, body = ErrorBody, description = "an idempotency key reused for another request"),
        (status = 503, body = ErrorBody, description = "signed playback is not configured on this box"),
    ),
    security(("bearer" = [])))]
async fn playback_token<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Every member is optional, so no body at all means the defaults.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(PlaybackTokenRequest::default())
    } else {
        parse_json::<PlaybackTokenRequest>(&body)
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:playback.token:{id}", p.user_id);
    once(&ctx, &headers, scope, &body, StatusCode::OK, || async {
        let issued = ctx.svc.origin().playback_token(&p, &id, req).await?;
        Ok(PlaybackToken {
            master_url: with_token(&format!("/hls/{id}/master.m3u8"), &issued.token),
            player_url: with_token(&format!("/play/{id}"), &issued.token),
            token: issued.token,
            expires_at: issued.expires_at,
        })
    })
    .await
}

/// The playback token a request carries, if any, with what its
/// restrictions are checked against.
pub(crate) struct Signed(pub(crate) Option<Presented>);

pub(crate) struct Presented {
    pub(crate) token: String,
    /// The token is in the URL, so in a cache key made of the whole URI.
    in_query: bool,
    /// Two different tokens (query and header, or repeated): refused
    /// rather than guessing which one the caller meant.
    ambiguous: bool,
    client: PlaybackClient,
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(presented(parts)))
    }
}

fn presented(parts: &Parts) -> Option<Presented> {
    let in_query: Vec<String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .filter(|(k, v)| k == TOKEN_PARAM && !v.is_empty())
            .map(|(_, v)| v.into_owned())
            .collect();
    let in_header: Vec<String> = parts
        .headers
        .get_all(TOKEN_HEADER)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    let mut all = in_header.iter().chain(&in_query);
    let token = all.next()?.clone();
    let ambiguous = all.any(|t| *t != token);
    let joined = |name: header::HeaderName| {
        let values: Vec<_> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    Some(Presented {
        in_query: in_query.contains(&token),
        ambiguous,
        client: PlaybackClient {
            peer: parts
                .extensions
                .get::<ConnectInfo<ConnTag>>()
                .map(|c| c.0.peer.ip()),
            forwarded_for: joined(header::HeaderName::from_static("x-forwarded-for")),
            referer: joined(header::REFERER),
        },
        token,
    })
}

impl Presented {
    fn check<S: Service>(&self, ctx: &Ctx<S>, video_id: &str) -> ApiResult<PlaybackGrant> {
        if self.ambiguous {
            return Err(
                ApiError::forbidden("the request carries two different playback tokens")
                    .with_details(serde_json::json!({ "reason": "ambiguous" })),
            );
        }
        ctx.svc
            .origin()
            .check_playback(&self.token, video_id, &self.client)
    }
}

/// A file of a video's ladder (`/hls/{id}/…`, `/thumbs/{id}/poster.jpg`,
/// the download): as `origin::serve` without a token, or for a public
/// video; with a token for a private video, checked, then served signed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_vod<S: Service>(
    ctx: &Ctx<S>,
    signed: Signed,
    video_id: &str,
    path: &str,
    kind: FileKind,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let Some(presented) = signed.0 else {
        return serve(ctx, Source::Vod, video_id, path, kind, method, headers).await;
    };
    let lookup = ctx.svc.origin().origin_lookup(video_id, path).await;
    if !matches!(lookup, Ok(OriginLookup::Private)) {
        // Public, unlisted, missing: the token changes nothing, caching
        // included.
        return answer(
            ctx,
            Source::Vod,
            video_id,
            path,
            kind,
            method,
            headers,
            lookup,
        )
        .await;
    }
    let grant = match presented.check(ctx, video_id) {
        Ok(grant) => grant,
        Err(e) => return uncacheable(e.into_response()),
    };
    let lookup = match ctx.svc.origin().signed_lookup(video_id, path).await {
        Ok(OriginLookup::Found(meta))
            if matches!(kind, FileKind::Playlist | FileKind::Thumbnails) =>
        {
            rewritten(ctx, video_id, path, kind, meta, &presented.token).await
        }
        other => other,
    };
    let response = answer(
        ctx,
        Source::Vod,
        video_id,
        path,
        kind,
        method,
        headers,
        lookup,
    )
    .await;
    match shared_cache_control(&response, &grant, presented.in_query) {
        Some(value) => with_cache_control(response, &value),
        None => uncacheable(response),
    }
}

/// A playlist or thumbnails track as served with `token`: every URI in it
/// carries the token. Its validator is the file's and the token's, so a
/// client holding the copy made for one token never revalidates it into
/// another's.
async fn rewritten<S: Service>(
    ctx: &Ctx<S>,
    video_id: &str,
    path: &str,
    kind: FileKind,
    meta: OriginMeta,
    token: &str,
) -> ApiResult<OriginLookup> {
    let body = match &meta.body {
        Some(body) => body.clone(),
        None => {
            ctx.svc
                .origin()
                .origin_read(video_id, path, 0..meta.size)
                .await?
        }
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::internal(format!("video {video_id}: {path} is not UTF-8")))?;
    let signed = match kind {
        FileKind::Thumbnails => rewrite_vtt(text, token),
        FileKind::Playlist
        | FileKind::InitSegment
        | FileKind::MediaSegment
        | FileKind::Poster
        | FileKind::Storyboard
        | FileKind::Download => rewrite_playlist(text, token),
    };
    Ok(OriginLookup::Found(OriginMeta {
        size: signed.len() as u64,
        etag: format!("{}-t{:016x}", meta.etag, fnv1a(token.as_bytes())),
        body: Some(Bytes::from(signed)),
        ..meta
    }))
}

/// FNV-1a, 64 bits: the same in every process and release, so every
/// origin behind a load balancer gives a signed playlist the same ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `Cache-Control` a shared cache may act on for a signed response, or
/// `None` for `private, no-store`: only a success (or 304) for a token in
/// the URL that the domain calls shareable, and no longer than the token
/// lives (nor than the file's own policy).
fn shared_cache_control(
    response: &Response,
    grant: &PlaybackGrant,
    in_query: bool,
) -> Option<String> {
    let status = response.status();
    if !grant.shareable || !in_query || !(status.is_success() || status == StatusCode::NOT_MODIFIED)
    {
        return None;
    }
    let left = grant
        .expires_at
        .duration_since(SystemTime::now())
        .ok()?
        .as_secs();
    if left == 0 {
        return None;
    }
    let policy = response
        .headers()
        .get(header::CACHE_CONTROL)?
        .to_str()
        .ok()?;
    let mut capped = false;
    let directives: Vec<String> = policy
        .split(',')
        .map(str::trim)
        .map(
            |d| match d.strip_prefix("max-age=").map(str::parse::<u64>) {
                Some(Ok(age)) => {
                    capped = true;
                    format!("max-age={}", age.min(left))
                }
                Some(Err(_)) | None => d.to_owned(),
            },
        )
        .collect();
    (capped && directives.first().is_some_and(|d| d == "public")).then(|| directives.join(", "))
}

fn with_cache_control(mut r: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

/// Nothing about a signed request may be kept by a shared cache: not its
/// file (another viewer would get it), not its refusal (the next request
/// may carry a good token).
fn uncacheable(r: Response) -> Response {
    with_cache_control(r, "private, no-store")
}

/// `/play/{id}?token=…` for a video the page does not show to anyone: the
/// player, its URLs carrying the token, when the token checks out; an
/// HTML 403 when it does not.
pub(super) async fn player_page<S: Service>(
    ctx: &Ctx<S>,
    video_id: &str,
    presented: &Presented,
) -> Response {
    match presented.check(ctx, video_id) {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::Forbidden => {
            return player::unavailable_page(
                StatusCode::FORBIDDEN,
                "This link is not valid",
                "It has expired, or it was not made for this video or for where you opened it. \
                 Ask whoever shared it for a new link.",
            )
        }
        Err(e) => return player::page(video_id, Err(e), None),
    }
    let video = ctx.svc.origin().signed_video(video_id).await;
    player::page(video_id, video, Some(&presented.token))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::Request;

    use super::*;

    fn signed_in(parts: &Parts) -> Signed {
        Signed(presented(parts))
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_token_is_found_in_the_query_or_the_header_and_two_are_refused() {
        assert!(signed_in(&parts("/hls/v/master.m3u8", &[])).0.is_none());
        assert!(signed_in(&parts("/hls/v/master.m3u8?token=", &[]))
            .0
            .is_none());
        let q = signed_in(&parts("/hls/v/master.m3u8?x=1&token=a.b.c", &[]))
            .0
            .unwrap();
        assert_eq!(
            (q.token.as_str(), q.in_query, q.ambiguous),
            ("a.b.c", true, false)
        );
        let h = signed_in(&parts(
            "/hls/v/0.m4s",
            &[
                (TOKEN_HEADER, " a.b.c "),
                ("referer", "https://site.example/p"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        ))
        .0
        .unwrap();
        assert_eq!(
            (h.token.as_str(), h.in_query, h.ambiguous),
            ("a.b.c", false, false)
        );
        assert_eq!(h.client.referer.as_deref(), Some("https://site.example/p"));
        assert_eq!(h.client.forwarded_for.as_deref(), Some("10.0.0.1"));
        let both = signed_in(&parts("/x?token=a.b.c", &[(TOKEN_HEADER, "a.b.c")]))
            .0
            .unwrap();
        assert!(both.in_query && !both.ambiguous, "the same token twice");
        for ambiguous in [
            parts("/x?token=a&token=b", &[]),
            parts("/x?token=a", &[(TOKEN_HEADER, "b")]),
        ] {
            assert!(signed_in(&ambiguous).0.unwrap().ambiguous);
        }
    }

    fn response(cache: &str, status: StatusCode) -> Response {
        let mut r = status.into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_str(cache).unwrap());
        r
    }

    #[test]
    fn a_signed_response_is_shared_only_when_keyed_by_its_token_and_never_past_it() {
        let grant = |secs: u64, shareable: bool| PlaybackGrant {
            expires_at: SystemTime::now() + Duration::from_secs(secs),
            shareable,
        };
        let segment = response("public, max-age=31536000, immutable", StatusCode::OK);
        let cc = shared_cache_control(&segment, &grant(600, true), true).unwrap();
        let age: u64 = cc
            .strip_prefix("public, max-age=")
            .and_then(|r| r.strip_suffix(", immutable"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((598..=600).contains(&age), "{cc}");
        let playlist = response("public, max-age=300, must-revalidate", StatusCode::OK);
        assert_eq!(
            shared_cache_control(&playlist, &grant(3600, true), true).as_deref(),
            Some("public, max-age=300, must-revalidate")
        );
        let not_modified = response(
            "public, max-age=1, must-revalidate",
            StatusCode::NOT_MODIFIED,
        );
        assert!(shared_cache_control(&not_modified, &grant(60, true), true).is_some());
        // Not keyed by the token, restricted, expired, or not a success:
        // private, no-store.
        assert_eq!(
            shared_cache_control(&segment, &grant(600, true), false),
            None
        );
        assert_eq!(
            shared_cache_control(&segment, &grant(600, false), true),
            None
        );
        assert_eq!(shared_cache_control(&segment, &grant(0, true), true), None);
        let missing = response("public, max-age=10", StatusCode::NOT_FOUND);
        assert_eq!(
            shared_cache_control(&missing, &grant(600, true), true),
            None
        );
        let r = uncacheable(segment);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "private, no-store");
    }

    #[test]
    fn a_signed_playlist_has_its_own_validator() {
        assert_ne!(fnv1a(b"token-a"), fnv1a(b"token-b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
