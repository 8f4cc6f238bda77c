//! Webhook endpoints under `/api/v1/ops/webhooks` (admins only): register,
//! list, inspect, delete, the delivery log of one, and manual redelivery.
//! Delivery itself (signing, retries) is the appliance's background work.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{json_response, once, parse_json, require_admin, Auth, Path, Query, St};
use super::state::Ctx;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Service, Webhooks};
use crate::wire::*;

/// The webhook routes, relative to `/api/v1`.
pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route(
            "/ops/webhooks",
            post(create_webhook::<S>).get(list_webhooks::<S>),
        )
        .route(
            "/ops/webhooks/{id}",
            get(get_webhook::<S>).delete(delete_webhook::<S>),
        )
        .route(
            "/ops/webhooks/{id}/deliveries",
            get(webhook_deliveries::<S>),
        )
        .route(
            "/ops/webhooks/{id}/deliveries/{deliveryId}/redeliver",
            post(redeliver_webhook::<S>),
        )
}

/// Registers an endpoint for some events. The answer is the only one that
/// carries the signing secret.
#[utoipa::path(post, path = "/api/v1/ops/webhooks", request_body = WebhookCreate,
    responses((status = 201, body = Webhook), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_webhook<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match require_admin(&p).and_then(|()| parse_json::<WebhookCreate>(&body)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("{}:webhooks.create", p.user_id);
    // What `once` keeps for replays (in the hot store, maybe Redis) has no
    // secret: the secret lives in the catalog only. This request, which
    // made the endpoint, still answers with it.
    let created = parking_lot::Mutex::new(None::<Webhook>);
    let response = once(
        &ctx,
        &headers,
        scope,
        &body,
        StatusCode::CREATED,
        || async {
            let hook = ctx.svc.webhooks().create_webhook(req).await?;
            *created.lock() = Some(hook.clone());
            Ok(Webhook {
                secret: None,
                ..hook
            })
        },
    )
    .await;
    match created.into_inner() {
        Some(hook) => json_response(StatusCode::CREATED, &hook),
        None => response,
    }
}

/// Endpoints, newest first (secrets are not shown).
#[utoipa::path(get, path = "/api/v1/ops/webhooks", params(PageQuery),
    responses((status = 200, body = Page<Webhook>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_webhooks<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Webhook>>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.webhooks().list_webhooks(page).await?))
}

#[utoipa::path(get, path = "/api/v1/ops/webhooks/{id}",
    responses((status = 200, body = Webhook), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_webhook<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    require_admin(&p)?;
    Ok(Json(ctx.svc.webhooks().webhook(&id).await?))
}

/// Deletes the endpoint and its secret; deliveries not yet made are
/// cancelled.
#[utoipa::path(delete, path = "/api/v1/ops/webhooks/{id}",
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_webhook<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&p)?;
    ctx.svc.webhooks().delete_webhook(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's deliveries, newest first, each with every attempt
/// (status, error, time).
#[utoipa::path(get, path = "/api/v1/ops/webhooks/{id}/deliveries", params(PageQuery),
    responses((status = 200, body = Page<WebhookDelivery>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn webhook_deliveries<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<WebhookDelivery>>> {
    require_admin(&p)?;
    Ok(Json(
        ctx.svc.webhooks().webhook_deliveries(&id, page).await?,
    ))
}

/// Sends the delivery again at once, with the same event id, and gives it
/// a fresh retry window; 409 while an attempt of it is running.
#[utoipa::path(post, path = "/api/v1/ops/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    params(
        ("id" = String, Path, description = "the endpoint"),
        ("deliveryId" = i64, Path, minimum = 1, description = "the delivery, from the log")
    ),
    responses((status = 202, body = WebhookDelivery), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn redeliver_webhook<S: Service>(
    State(ctx): St<S>,
    Auth(p): Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Response {
    let run = async {
        require_admin(&p)?;
        let delivery: i64 = delivery.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::invalid("deliveryId", format!("`{delivery}` is not a delivery id"))
        })?;
        ctx.svc.webhooks().redeliver(&id, delivery).await
    };
    match run.await {
        Ok(d) => json_response(StatusCode::ACCEPTED, &d),
        Err(e) => e.into_response(),
    }
}
