//! The player: the `/play/{id}` page and the hls.js it loads
//! (`/assets/hls.min.js`).
//!
//! The page is for anyone with the link, so it shows what an anonymous
//! caller of `GET /api/v1/videos/{id}` may see: a published (`ready`)
//! public or unlisted video plays, under its title. Anything else (no such
//! id, deleted, private, still processing or failed) is one HTML "not
//! available" page with status 404: saying "still processing" would tell
//! strangers that an unpublished video exists, which the API does not
//! either. The page is never cached (`no-store`), so it plays as soon as
//! the video is published. A fault reading the catalog is a 503 page with
//! `Retry-After`. With `?token=` (a playback token, `routes::playback`) a
//! private video plays too, every URL of the page carrying the token; a
//! token that does not check out is a 403 page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::extract::{Path, St};
use super::origin;
use super::playback::{self, Signed};
use super::state::Ctx;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::playback::with_token;
use crate::service::{Service, Videos};
use crate::wire::{Video, VideoState};

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/play/{video_id}", get(player_page::<S>))
        .route("/assets/hls.min.js", get(hls_js::<S>))
}

const PLAYER_HTML: &str = include_str!("../../assets/player.html");
const UNAVAILABLE_HTML: &str = include_str!("../../assets/unavailable.html");

/// Seconds a client should wait before asking again after a fault.
const RETRY_AFTER_SECS: u64 = 5;

async fn player_page<S: Service>(
    State(ctx): St<S>,
    Path(video_id): Path<String>,
    signed: Signed,
) -> Response {
    if !origin::valid_id(&video_id) {
        return not_available();
    }
    let found = ctx.svc.videos().get_video(None, &video_id).await;
    match (found, signed.0) {
        // Not shown to anyone: maybe to the token's holder.
        (Err(e), Some(presented)) if e.code == ErrorCode::NotFound => {
            playback::player_page(&ctx, &video_id, &presented).await
        }
        // Anything the page shows without a token ignores one.
        (found, _) => page(&video_id, found, None),
    }
}

/// The page for what a lookup of the video found: the player (its URLs
/// carrying `token` when given) for a published video, else why not.
pub(super) fn page(video_id: &str, found: ApiResult<Video>, token: Option<&str>) -> Response {
    match found {
        Ok(v) if v.status == VideoState::Ready => {
            Html(player(video_id, &v.title, token)).into_response()
        }
        Ok(_) => not_available(),
        Err(e) if e.code == ErrorCode::NotFound => not_available(),
        Err(e) => {
            tracing::warn!(video = %video_id, error = %e, "player page: the video could not be read");
            let mut r = unavailable_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "This video cannot be loaded right now",
                "The server could not read it just now. Try again in a few seconds.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            r
        }
    }
}

/// The player for a playable video: its URLs (with the playback token,
/// when there is one) and its title (escaped).
fn player(video_id: &str, title: &str, token: Option<&str>) -> String {
    let url = |path: String| {
        escape_html(&match token {
            Some(t) => with_token(&path, t),
            None => path,
        })
    };
    // Replaced in this order, the title last, so nothing in a title is
    // ever taken for a placeholder.
    PLAYER_HTML
        .replace(
            "__MASTER_URL__",
            &url(format!("/hls/{video_id}/master.m3u8")),
        )
        .replace(
            "__POSTER_URL__",
            &url(format!("/thumbs/{video_id}/poster.jpg")),
        )
        .replace(
            "__THUMBNAILS_URL__",
            &url(format!("/hls/{video_id}/storyboard.vtt")),
        )
        .replace("__TITLE__", &escape_html(title))
}

fn not_available() -> Response {
    unavailable_page(
        StatusCode::NOT_FOUND,
        "This video is not available",
        "It may have been deleted or made private, or it is not published yet. \
         Check the link, or try again later.",
    )
}

pub(super) fn unavailable_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let page = UNAVAILABLE_HTML
        .replace("__HEADING__", &escape_html(heading))
        .replace("__MESSAGE__", &escape_html(message));
    let mut r = (status, Html(page)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Text as HTML (element content or a quoted attribute value).
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped_and_never_a_placeholder() {
        let page = player("abc", "<b>Tom & Jerry's \"__MASTER_URL__\"</b>", None);
        assert!(
            page.contains("&lt;b&gt;Tom &amp; Jerry&#39;s &quot;__MASTER_URL__&quot;&lt;/b&gt;")
        );
        assert!(!page.contains("<b>Tom"));
        assert!(page.contains("data-src=\"/hls/abc/master.m3u8\""));
        assert!(!page.contains("__TITLE__"));
    }

    #[test]
    fn a_signed_page_names_every_file_with_its_token() {
        let page = player("abc", "mine", Some("h.p.s"));
        for url in [
            "/hls/abc/master.m3u8?token=h.p.s",
            "/thumbs/abc/poster.jpg?token=h.p.s",
            "/hls/abc/storyboard.vtt?token=h.p.s",
        ] {
            assert!(page.contains(&format!("\"{url}\"")), "{url}");
        }
    }

    #[test]
    fn an_unavailable_video_is_an_uncached_html_404() {
        let r = not_available();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}
