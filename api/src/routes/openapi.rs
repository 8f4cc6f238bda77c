//! The OpenAPI document: every handler's `#[utoipa::path]` gathered into
//! one document, returned by `openapi()` and served at `/openapi.json`.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use utoipa::OpenApi;

use super::state::Ctx;
use super::{accounts::*, analytics::*, engagement::*, feed::*, ops::*, uploads::*, videos::*};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::service::Service;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new().route("/openapi.json", get(openapi_json))
}

async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.title = "Regional video appliance API".into();
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

// `paths(...)` names each handler without its module, as before the split:
// utoipa turns a module path (`accounts::register`) into an operation tag,
// and the document has no tags. The glob imports of the resource modules
// bring in the `__path_<handler>` types the derive reads; the handlers
// themselves stay private to their modules.
#[derive(OpenApi)]
#[openapi(
    paths(
        register, login, get_user, user_videos, init_upload, put_chunk, get_upload,
        complete_upload, cancel_upload, create_video, get_video, video_status,
        video_events, delete_video, inventory, jobs, reprocess, healthz, readyz,
        feed_for_you, feed_following, feed_trending, set_interests, follow, unfollow,
        watch_batch, search_videos, hashtag_videos, followers, following, like, unlike,
        save, unsave, share, add_comment, comments, replies, trending_hashtags,
        video_analytics, creator_overview
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI document of this router (also served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
