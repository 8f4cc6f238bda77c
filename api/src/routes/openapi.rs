//! The OpenAPI document: every handler's `#[utoipa::path]` gathered into
//! one document, returned by `openapi()` and served at `/openapi.json`.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use utoipa::OpenApi;

use super::extras::__path_still;
use super::notifications::{
    __path_list_notifications, __path_mark_notifications_read, __path_notification_events,
};
use super::playback::__path_playback_token;
use super::remix::{__path_duet, __path_remixes, __path_stitch};
use super::search::{__path_search_hashtags, __path_search_sounds, __path_search_users};
use super::state::Ctx;
use super::tus::{
    __path_tus_create, __path_tus_head, __path_tus_options, __path_tus_options_upload,
    __path_tus_patch, __path_tus_terminate, OptionalCreationBody,
};
use super::{
    accounts::*, analytics::*, copyright::*, engagement::*, feed::*, live::*, ops::*, sounds::*,
    uploads::*, videos::*, webhooks::*,
};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::service::Service;
use crate::wire::WebhookPayload;

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

/// Operations that take a bearer token when one is sent (a bad one is a
/// 401) and serve anonymous callers too.
const OPTIONAL_AUTH: &[&str] = &[
    "get_video",
    "video_status",
    "video_events",
    "user_videos",
    "comments",
    "replies",
    "feed_trending",
    "remixes",
];
/// For creators (and admins) only: a viewer gets 403.
const CREATORS_ONLY: &[&str] = &[
    "init_upload",
    "tus_create",
    "create_video",
    "register",
    "create_channel",
    "list_channels",
    "get_channel",
    "stop_channel",
    "clip_channel",
    "duet",
    "stitch",
];
/// 409: an `X-Idempotency-Key` reused for another request or still running,
/// or a state that forbids the action (an upload already complete, a video
/// not yet published, a username taken).
const CONFLICTS: &[&str] = &[
    "register",
    "init_upload",
    "put_chunk",
    "complete_upload",
    "cancel_upload",
    "create_video",
    "tus_create",
    "tus_patch",
    "tus_terminate",
    "like",
    "unlike",
    "save",
    "unsave",
    "share",
    "add_comment",
    "reprocess",
    "create_channel",
    "clip_channel",
    "create_webhook",
    "redeliver_webhook",
    "duet",
    "stitch",
];
/// 410: the upload session expired.
const GONE: &[&str] = &[
    "put_chunk",
    "get_upload",
    "complete_upload",
    "tus_patch",
    "duet",
    "stitch",
];
/// 415: a container or codec the box does not take.
const UNSUPPORTED: &[&str] = &[
    "init_upload",
    "create_video",
    "complete_upload",
    "tus_create",
    "tus_patch",
    "duet",
    "stitch",
];
/// 429 with `Retry-After`: per-user rate limits.
const RATE_LIMITED: &[&str] = &[
    "init_upload",
    "tus_create",
    "create_video",
    "feed_for_you",
    "feed_following",
    "feed_trending",
];

/// 503: a store the answer is counted from is unreachable.
const UNAVAILABLE: &[&str] = &["experiments"];

/// Every error status an operation can answer, with the spec's error body:
/// the rules that hold across the API are applied here once (a parameter
/// or body can be refused: 400; a path names something: 404; a body can be
/// too large: 413; a token is needed or was bad: 401 with
/// `WWW-Authenticate`; ops routes are for admins: 403), the rest from the
/// tables above.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::security::SecurityRequirement;

        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                let id = op.operation_id.clone().unwrap_or_default();
                let is = |table: &[&str]| table.contains(&id.as_str());
                if is(OPTIONAL_AUTH) {
                    op.security = Some(vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                    ]);
                }
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let mut add = |status: &str, why: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(status, why).into());
                };
                if !params.is_empty() || op.request_body.is_some() {
                    add("400", "the request is malformed or breaks a rule");
                }
                if op.security.is_some() {
                    add("401", "no bearer token, or one that is unknown or expired");
                }
                if path.starts_with("/api/v1/ops/") || is(CREATORS_ONLY) {
                    add("403", "the caller's role may not do this");
                }
                if has_path {
                    add("404", "no such resource, or not visible to the caller");
                }
                if is(CONFLICTS) {
                    add(
                        "409",
                        "conflicts with the resource's state or an idempotency key",
                    );
                }
                if is(GONE) {
                    add("410", "the upload session expired");
                }
                if op.request_body.is_some() {
                    add("413", "the body is larger than this route takes");
                }
                if is(UNSUPPORTED) {
                    add("415", "the box does not take this media");
                }
                if is(UNAVAILABLE) {
                    add("503", "the analytics store is unreachable; retry later");
                }
                if is(RATE_LIMITED) {
                    add(
                        "429",
                        "over the caller's rate limit; retry after `Retry-After`",
                    );
                }
            }
        }
    }
}

fn error_response(status: &str, why: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type,
    };
    let mut r = ResponseBuilder::new().description(why).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    match status {
        "401" => {
            r = r.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer realm=\"appliance\"`"))
                    .build(),
            )
        }
        "429" => {
            r = r.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("seconds until the limit admits the request"))
                    .build(),
            )
        }
        _ => {}
    }
    r.build()
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
        video_events, delete_video, inventory, jobs, experiments, reprocess, healthz, readyz,
        feed_for_you, feed_following, feed_trending, set_interests, follow, unfollow,
        watch_batch, search_videos, hashtag_videos, followers, following, like, unlike,
        save, unsave, share, add_comment, comments, replies, trending_hashtags,
        video_analytics, creator_overview, create_channel, list_channels, get_channel,
        stop_channel, clip_channel, still, playback_token,
        tus_create, tus_head, tus_patch, tus_terminate, tus_options, tus_options_upload,
        create_webhook, list_webhooks, get_webhook, delete_webhook, webhook_deliveries,
        redeliver_webhook,
        search_users, search_sounds, search_hashtags,
        list_notifications, mark_notifications_read, notification_events,
        get_sound, sound_videos, trending_sounds,
        add_reference_audio, list_reference_audio, delete_reference_audio, audio_flags,
        duet, stitch, remixes
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, WebhookPayload)),
    modifiers(&BearerAuth, &ErrorResponses, &OptionalCreationBody)
)]
struct ApiDoc;

/// The OpenAPI document of this router (also served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
