//! A user's notifications: the list (newest first, with the unread
//! count), marking them read, and the per-user event stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;

use super::extract::{parse_json, Auth, Query, St};
use super::state::Ctx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Notifications, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/notifications", get(list_notifications::<S>))
        .route("/notifications/read", post(mark_notifications_read::<S>))
        .route("/notifications/events", get(notification_events::<S>))
}

/// The caller's notifications, newest first; `unreadCount` counts all of
/// them, not only this page's.
#[utoipa::path(get, path = "/api/v1/notifications", params(NotificationsQuery),
    responses((status = 200, body = NotificationPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_notifications<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(q): Query<NotificationsQuery>,
) -> ApiResult<Json<NotificationPage>> {
    Ok(Json(ctx.svc.notifications().notifications(&p, q).await?))
}

/// Marks the listed notifications read, and every one up to `upTo`; `{}`
/// marks all of them. Answers the unread count left, which the caller's
/// event streams also receive.
#[utoipa::path(post, path = "/api/v1/notifications/read", request_body = MarkRead,
    responses((status = 200, body = UnreadCount), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn mark_notifications_read<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    body: Bytes,
) -> ApiResult<Json<UnreadCount>> {
    // serde reads a struct from an array too, and every member here is
    // optional, so `[null]` would pass for `{}`.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    let req: MarkRead = parse_json(&body)?;
    Ok(Json(ctx.svc.notifications().mark_read(&p, req).await?))
}

/// Server-sent events for the caller: `unread` (`UnreadCount`) first,
/// then each new `notification` (a `Notification`, its id as the event
/// id) and a fresh `unread` whenever notifications are marked read. A
/// client that reconnects with `Last-Event-ID` first gets what was made
/// since. A comment every 15 s keeps proxies from closing it; a client
/// too slow to keep up is disconnected, and catches up by reconnecting.
#[utoipa::path(get, path = "/api/v1/notifications/events",
    params(("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]{1,18}$",
        description = "The id of the last event received: what came after it is sent first")),
    responses((status = 200, content_type = "text/event-stream", description = "`unread` events (data: UnreadCount) and `notification` events (data: Notification)"), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn notification_events<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(parse_notification_id(
            "Last-Event-ID",
            v.to_str().unwrap_or_default(),
        )?),
    };
    let stream = ctx
        .svc
        .notifications()
        .notification_events(&p, last)
        .await?;
    let events = stream.map(|ev| {
        let event = match &ev {
            NotificationEvent::Unread(n) => Event::default().event("unread").json_data(n),
            NotificationEvent::Notification(n) => Event::default()
                .event("notification")
                .id(n.id.clone())
                .json_data(n),
        };
        Ok::<_, Infallible>(
            event.unwrap_or_else(|_| Event::default().comment("unserialisable event")),
        )
    });
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    ))
}
