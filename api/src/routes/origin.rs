//! The HLS origin a CDN pulls from: validated paths, exact content types, a
//! cache policy per kind of file, validators (ETag, Last-Modified) with 304s,
//! byte ranges (206/416), HEAD, CORS. Responses never vary by caller and
//! never set cookies, so any shared cache may keep them; the one exception,
//! a private video's files served to a playback token, is
//! `routes::playback`'s (`serve_vod`), and no shared cache keeps those
//! unless its key holds the token.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use headers::{
    ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfRange, IfUnmodifiedSince,
    LastModified,
};
use http_range_header::StartPosition;

use super::playback::{serve_vod, Signed};
use super::state::Ctx;
pub use super::state::OriginPolicy;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::{Live, Origin, OriginLookup, OriginMeta, Service};

/// The kinds of file the origin serves; anything else is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Playlist,
    InitSegment,
    MediaSegment,
    Poster,
    /// `storyboard.jpg`: the storyboard's sprite of tiles.
    Storyboard,
    /// `storyboard.vtt`: the WebVTT thumbnails track pointing into it.
    Thumbnails,
    /// `download.mp4`: the top rung and audio as one progressive MP4.
    Download,
}

impl FileKind {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Playlist => "application/vnd.apple.mpegurl",
            Self::InitSegment => "video/mp4",
            Self::MediaSegment => "video/iso.segment",
            Self::Poster | Self::Storyboard => "image/jpeg",
            Self::Thumbnails => "text/vtt; charset=utf-8",
            Self::Download => "video/mp4",
        }
    }

    fn cache_control(self, policy: &OriginPolicy, source: Source) -> String {
        match self {
            // A live playlist changes every segment: cached at most half a
            // target duration (RFC 8216 §6.2.2 has clients reload it about
            // once per target duration).
            Self::Playlist if source == Source::Live => {
                "public, max-age=1, must-revalidate".to_owned()
            }
            // A published ladder is never rewritten in place: a reprocess
            // replaces it only after deleting the old one.
            Self::InitSegment | Self::MediaSegment => {
                "public, max-age=31536000, immutable".to_owned()
            }
            // Made with the ladder under fixed names, so a reprocess
            // replaces them at the same URL: revalidated, like the poster.
            Self::Storyboard | Self::Thumbnails | Self::Download => format!(
                "public, max-age={}, must-revalidate",
                policy.playlist_max_age.as_secs()
            ),
            Self::Playlist | Self::Poster => format!(
                "public, max-age={}, must-revalidate",
                policy.playlist_max_age.as_secs()
            ),
        }
    }
}

/// Video ids: what the catalog issues (`[A-Za-z0-9_-]`, ≤ 64).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Classifies a path inside a video's HLS folder. Only the shapes the
/// packager writes are accepted, so no path can leave the folder: no `..`,
/// no empty or dotted components, no absolute paths, no encodings.
pub fn classify(path: &str) -> Option<FileKind> {
    match path {
        "master.m3u8" => return Some(FileKind::Playlist),
        "storyboard.jpg" => return Some(FileKind::Storyboard),
        "storyboard.vtt" => return Some(FileKind::Thumbnails),
        "download.mp4" => return Some(FileKind::Download),
        _ => {}
    }
    let (rendition, file) = path.split_once('/')?;
    let rendition_ok = !rendition.is_empty()
        && rendition.len() <= 16
        && rendition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !rendition_ok {
        return None;
    }
    // `init-{run}.mp4`: a live channel's (or its recording's) init segment
    // of one run; a reconnect starts a new run.
    let run_init = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()));
    match file {
        "index.m3u8" => Some(FileKind::Playlist),
        "init.mp4" => Some(FileKind::InitSegment),
        _ if run_init => Some(FileKind::InitSegment),
        _ => {
            let n = file.strip_suffix(".m4s")?;
            (!n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
                .then_some(FileKind::MediaSegment)
        }
    }
}

/// Where a file comes from: a published video's ladder, or a live
/// channel's directory (same grammar, live cache policy for playlists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Vod,
    Live,
}

/// The origin's routes, at the root: a video's HLS files and its poster, a
/// live channel's HLS files, each with a CORS preflight.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/hls/{video_id}/{*path}", get(hls::<S>).options(preflight))
        .route(
            "/live/{channel_id}/{*path}",
            get(live::<S>).options(preflight),
        )
        .route(
            "/thumbs/{video_id}/{file}",
            get(poster::<S>).options(preflight),
        )
}

pub(crate) async fn hls<S: Service>(
    State(ctx): State<Arc<Ctx<S>>>,
    Path((video_id, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    signed: Signed,
) -> Response {
    let response = match classify(&path) {
        Some(kind) if valid_id(&video_id) => {
            serve_vod(&ctx, signed, &video_id, &path, kind, &method, &headers).await
        }
        Some(_) | None => not_found(&ctx.origin),
    };
    with_cors(response)
}

pub(crate) async fn live<S: Service>(
    State(ctx): State<Arc<Ctx<S>>>,
    Path((channel_id, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let response = match classify(&path) {
        Some(kind) if valid_id(&channel_id) && kind != FileKind::Poster => {
            serve(
                &ctx,
                Source::Live,
                &channel_id,
                &path,
                kind,
                &method,
                &headers,
            )
            .await
        }
        Some(_) | None => not_found(&ctx.origin),
    };
    with_cors(response)
}

pub(crate) async fn poster<S: Service>(
    State(ctx): State<Arc<Ctx<S>>>,
    Path((video_id, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    signed: Signed,
) -> Response {
    let response = if file != "poster.jpg" || !valid_id(&video_id) {
        not_found(&ctx.origin)
    } else {
        serve_vod(
            &ctx,
            signed,
            &video_id,
            "poster.jpg",
            FileKind::Poster,
            &method,
            &headers,
        )
        .await
    };
    with_cors(response)
}

/// CORS preflight for the origin. Anyone may read it (`*`), so responses
/// need no `Vary: Origin` and stay one cache entry per URL.
pub(crate) async fn preflight() -> Response {
    headers_on(
        StatusCode::NO_CONTENT.into_response(),
        &[
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Range, If-None-Match, If-Modified-Since, If-Range, If-Match, If-Unmodified-Since, X-Playback-Token",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
    )
}

pub(super) fn with_cors(r: Response) -> Response {
    headers_on(
        r,
        &[
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "Content-Length, Content-Range, ETag, Last-Modified, Accept-Ranges",
            ),
        ],
    )
}

fn headers_on(mut r: Response, pairs: &[(header::HeaderName, &'static str)]) -> Response {
    for (name, value) in pairs {
        r.headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    r
}

pub(super) async fn serve<S: Service>(
    ctx: &Ctx<S>,
    source: Source,
    video_id: &str,
    path: &str,
    kind: FileKind,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let lookup = match source {
        Source::Vod => ctx.svc.origin().origin_lookup(video_id, path).await,
        Source::Live => ctx.svc.live().live_lookup(video_id, path).await,
    };
    answer(ctx, source, video_id, path, kind, method, headers, lookup).await
}

/// The response to a request for a file found (or not) by `lookup`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn answer<S: Service>(
    ctx: &Ctx<S>,
    source: Source,
    video_id: &str,
    path: &str,
    kind: FileKind,
    method: &Method,
    headers: &HeaderMap,
    lookup: ApiResult<OriginLookup>,
) -> Response {
    let meta = match lookup {
        Ok(OriginLookup::Found(meta)) => meta,
        Ok(OriginLookup::Missing) => return not_found(&ctx.origin),
        Ok(OriginLookup::Private) => return private(),
        Ok(OriginLookup::NotYet) => return not_yet(),
        Err(e) => return e.into_response(),
    };
    let plan = match plan_response(&meta, headers) {
        Ok(plan) => plan,
        Err(refusal) => return refusal.into_response(),
    };
    let mut response = match &plan {
        Plan::NotModified => StatusCode::NOT_MODIFIED.into_response(),
        Plan::Full | Plan::Partial(_) if method == Method::HEAD => {
            let len = plan.range(meta.size).map_or(0, |r| r.end - r.start);
            let mut r = plan.status().into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        Plan::Full | Plan::Partial(_) => {
            let range = plan.range(meta.size).unwrap_or(0..0);
            let read = match (&meta.body, source) {
                (Some(body), _) => Ok(body.slice(range.start as usize..range.end as usize)),
                (None, Source::Vod) => ctx.svc.origin().origin_read(video_id, path, range).await,
                (None, Source::Live) => ctx.svc.live().live_read(video_id, path, range).await,
            };
            match read {
                Ok(bytes) => (plan.status(), Body::from(bytes)).into_response(),
                Err(e) => return e.into_response(),
            }
        }
    };
    let h = response.headers_mut();
    if let Plan::Partial(r) = &plan {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size)),
        );
    }
    if plan != Plan::NotModified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type()),
        );
    }
    let cache = if meta.changing {
        // A growing ladder's master: the CDN must see the next rung soon.
        "public, max-age=1, must-revalidate".to_owned()
    } else {
        kind.cache_control(&ctx.origin, source)
    };
    h.insert(header::CACHE_CONTROL, header_value(&cache));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(etag) = etag(&meta) {
        h.typed_insert(etag);
    }
    h.typed_insert(LastModified::from(meta.last_modified));
    response
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    NotModified,
    Full,
    Partial(Range<u64>),
}

impl Plan {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotModified => StatusCode::NOT_MODIFIED,
            Self::Full => StatusCode::OK,
            Self::Partial(_) => StatusCode::PARTIAL_CONTENT,
        }
    }

    fn range(&self, size: u64) -> Option<Range<u64>> {
        match self {
            Self::NotModified => None,
            Self::Full => Some(0..size),
            Self::Partial(r) => Some(r.clone()),
        }
    }
}

/// RFC 9110 §13.2.2 order: If-Match, else If-Unmodified-Since (412 when
/// they fail); If-None-Match, else If-Modified-Since (304); then Range,
/// honoured only if If-Range (when sent) still matches.
fn plan_response(meta: &OriginMeta, headers: &HeaderMap) -> Result<Plan, Refusal> {
    let etag = etag(meta);
    if let Some(im) = headers.typed_get::<IfMatch>() {
        // Strong comparison; `*` matches any current representation.
        if !im.is_any() && !etag.as_ref().is_some_and(|e| im.precondition_passes(e)) {
            return Err(Refusal::PreconditionFailed("If-Match"));
        }
    } else if let Some(ius) = headers.typed_get::<IfUnmodifiedSince>() {
        if !ius.precondition_passes(meta.last_modified) {
            return Err(Refusal::PreconditionFailed("If-Unmodified-Since"));
        }
    }
    if let Some(inm) = headers.typed_get::<IfNoneMatch>() {
        let passes = etag.as_ref().is_none_or(|e| inm.precondition_passes(e));
        if !passes {
            return Ok(Plan::NotModified);
        }
    } else if let Some(ims) = headers.typed_get::<IfModifiedSince>() {
        if !ims.is_modified(meta.last_modified) {
            return Ok(Plan::NotModified);
        }
    }
    let Some(range) = headers.get(header::RANGE) else {
        return Ok(Plan::Full);
    };
    // An empty file has no byte to range over; Range may be ignored (RFC
    // 9110 §14.2), and the whole (empty) file is the honest answer.
    if meta.size == 0 {
        return Ok(Plan::Full);
    }
    if let Some(if_range) = headers.typed_get::<IfRange>() {
        let last_modified = LastModified::from(meta.last_modified);
        if if_range.is_modified(etag.as_ref(), Some(&last_modified)) {
            return Ok(Plan::Full);
        }
    }
    let Ok(text) = range.to_str() else {
        return Ok(Plan::Full);
    };
    // A Range we cannot parse is ignored (RFC 9110 §14.2); one we can parse
    // but that lies outside the file is a 416.
    let Ok(parsed) = http_range_header::parse_range_header(text) else {
        return Ok(Plan::Full);
    };
    // A suffix longer than the file means the whole file (RFC 9110
    // §14.1.3), still as a 206.
    if let [one] = parsed.ranges.as_slice() {
        if let StartPosition::FromLast(n) = one.start {
            if n >= meta.size && n > 0 && meta.size > 0 {
                return Ok(Plan::Partial(0..meta.size));
            }
        }
    }
    match parsed.validate(meta.size) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Ok(Plan::Partial(*one.start()..*one.end() + 1)),
            // Multipart/byteranges buys a CDN nothing for HLS: send it all.
            _ => Ok(Plan::Full),
        },
        Err(_) => Err(Refusal::Unsatisfiable {
            size: meta.size,
            range: text.to_owned(),
        }),
    }
}

/// What the origin answers a request for a file of `meta` with these
/// headers: the status and the bytes it would send. Public for the fuzz
/// target (`fuzz/fuzz_targets/origin_range.rs`); `serve` uses the same
/// planner.
pub fn decide(meta: &OriginMeta, headers: &HeaderMap) -> (u16, Option<Range<u64>>) {
    match plan_response(meta, headers) {
        Ok(plan) => (plan.status().as_u16(), plan.range(meta.size)),
        Err(Refusal::Unsatisfiable { .. }) => (416, None),
        Err(Refusal::PreconditionFailed(_)) => (412, None),
    }
}

/// A request the origin answers with an error instead of the file.
#[derive(Debug)]
enum Refusal {
    /// A parseable Range that lies outside the file: 416 with `bytes */size`.
    Unsatisfiable { size: u64, range: String },
    /// `If-Match` or `If-Unmodified-Since` failed: 412.
    PreconditionFailed(&'static str),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Unsatisfiable { size, range } => {
                let mut r = ApiError::new(
                    ErrorCode::RangeNotSatisfiable,
                    format!("range `{range}` lies outside the {size} bytes of the file"),
                )
                .into_response();
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{size}")),
                );
                r
            }
            Self::PreconditionFailed(which) => ApiError::new(
                ErrorCode::PreconditionFailed,
                format!("{which} does not hold for the current file"),
            )
            .into_response(),
        }
    }
}

fn etag(meta: &OriginMeta) -> Option<ETag> {
    format!("\"{}\"", meta.etag).parse().ok()
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn not_found(policy: &OriginPolicy) -> Response {
    let mut r = ApiError::new(ErrorCode::NotFound, "no such file").into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header_value(&format!(
            "public, max-age={}",
            policy.not_found_max_age.as_secs()
        )),
    );
    r
}

/// A live file not there yet: the CDN may ask again within a second.
fn not_yet() -> Response {
    let mut r = ApiError::new(ErrorCode::NotFound, "not published yet").into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=1"),
    );
    r
}

fn private() -> Response {
    let mut r = ApiError::new(ErrorCode::NotFound, "no such file").into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn only_packager_shapes_are_accepted() {
        assert_eq!(classify("master.m3u8"), Some(FileKind::Playlist));
        assert_eq!(classify("720p/index.m3u8"), Some(FileKind::Playlist));
        assert_eq!(classify("audio/init.mp4"), Some(FileKind::InitSegment));
        assert_eq!(classify("1080p/12.m4s"), Some(FileKind::MediaSegment));
        assert_eq!(classify("storyboard.jpg"), Some(FileKind::Storyboard));
        assert_eq!(classify("storyboard.vtt"), Some(FileKind::Thumbnails));
        assert_eq!(classify("download.mp4"), Some(FileKind::Download));
        assert_eq!(FileKind::Storyboard.content_type(), "image/jpeg");
        assert_eq!(
            FileKind::Thumbnails.content_type(),
            "text/vtt; charset=utf-8"
        );
        assert_eq!(FileKind::Download.content_type(), "video/mp4");
        for bad in [
            "",
            "../master.m3u8",
            "720p/../../etc/passwd",
            "720p/x.m4s",
            "720p/.m4s",
            "720p/1.m4s/",
            "/720p/1.m4s",
            "720P/1.m4s",
            "..%2f/1.m4s",
            "a/b/1.m4s",
            "720p/index.m3u8.bak",
            "poster.jpg",
            "720p/1234567890.m4s",
            "720p/storyboard.vtt",
            "storyboard.jpg/",
            "Storyboard.vtt",
            "download.mp4.part",
            "audio/download.mp4",
        ] {
            assert_eq!(classify(bad), None, "{bad:?}");
        }
        assert!(valid_id("abc-DEF_123"));
        assert!(!valid_id(".."));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }

    fn meta() -> OriginMeta {
        OriginMeta {
            body: None,
            size: 1000,
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            etag: "abc".into(),
            changing: false,
        }
    }

    fn req(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn validators_and_ranges() {
        let m = meta();
        assert_eq!(plan_response(&m, &req(&[])).unwrap(), Plan::Full);
        assert_eq!(
            plan_response(&m, &req(&[("if-none-match", "\"abc\"")])).unwrap(),
            Plan::NotModified
        );
        assert_eq!(
            plan_response(&m, &req(&[("if-none-match", "\"other\"")])).unwrap(),
            Plan::Full
        );
        // If-None-Match wins over If-Modified-Since.
        let later = httpdate(m.last_modified + Duration::from_secs(60));
        assert_eq!(
            plan_response(
                &m,
                &req(&[
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", &later)
                ])
            )
            .unwrap(),
            Plan::Full
        );
        assert_eq!(
            plan_response(&m, &req(&[("if-modified-since", &later)])).unwrap(),
            Plan::NotModified
        );
        let earlier = httpdate(m.last_modified - Duration::from_secs(60));
        assert_eq!(
            plan_response(&m, &req(&[("if-modified-since", &earlier)])).unwrap(),
            Plan::Full
        );
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=0-99")])).unwrap(),
            Plan::Partial(0..100)
        );
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=900-")])).unwrap(),
            Plan::Partial(900..1000)
        );
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=-10")])).unwrap(),
            Plan::Partial(990..1000)
        );
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=990-5000")])).unwrap(),
            Plan::Partial(990..1000)
        );
        let r = plan_response(&m, &req(&[("range", "bytes=1000-")]))
            .unwrap_err()
            .into_response();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */1000");
        // Garbage is ignored, not an error.
        assert_eq!(
            plan_response(&m, &req(&[("range", "lines=1-2")])).unwrap(),
            Plan::Full
        );
        // If-Range with a stale validator → the whole (new) file.
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=0-9"), ("if-range", "\"old\"")])).unwrap(),
            Plan::Full
        );
        assert_eq!(
            plan_response(&m, &req(&[("range", "bytes=0-9"), ("if-range", "\"abc\"")])).unwrap(),
            Plan::Partial(0..10)
        );
    }

    fn httpdate(t: SystemTime) -> String {
        let mut h = HeaderMap::new();
        h.typed_insert(LastModified::from(t));
        h[header::LAST_MODIFIED].to_str().unwrap().to_owned()
    }

    /// Found by the `origin_range` fuzz target: a Range on an empty file
    /// planned a 206 for byte 0, which does not exist.
    #[test]
    fn a_range_on_an_empty_file_is_ignored() {
        let empty = OriginMeta { size: 0, ..meta() };
        for range in ["bytes=0-9", "bytes=-5", "bytes=0-"] {
            assert_eq!(
                plan_response(&empty, &req(&[("range", range)])).unwrap(),
                Plan::Full,
                "{range}"
            );
        }
        assert_eq!(
            decide(&empty, &req(&[("range", "bytes=0-9")])),
            (200, Some(0..0))
        );
    }
}
