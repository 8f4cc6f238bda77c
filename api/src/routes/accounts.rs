//! Accounts: registration, login and public user profiles
//! (`/auth/register`, `/auth/login`, `/users/{id}`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

use super::extract::{once, parse_json, Path, St};
use super::state::Ctx;
use crate::error::{ApiResult, ErrorBody};
use crate::service::{Accounts, Service};
use crate::wire::*;

pub(crate) fn router<S: Service>() -> Router<Arc<Ctx<S>>> {
    Router::new()
        .route("/auth/register", post(register::<S>))
        .route("/auth/login", post(login::<S>))
        .route("/users/{id}", get(get_user::<S>))
}

#[utoipa::path(post, path = "/api/v1/auth/register", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn register<S: Service>(State(ctx): St<S>, headers: HeaderMap, body: Bytes) -> Response {
    let req: RegisterRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let scope = format!("anonymous:register:{}", req.username);
    once(&ctx, &headers, scope, &body, StatusCode::CREATED, || {
        ctx.svc.accounts().register(req)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody)))]
async fn login<S: Service>(State(ctx): St<S>, body: Bytes) -> ApiResult<Json<AuthResponse>> {
    let req: LoginRequest = parse_json(&body)?;
    Ok(Json(ctx.svc.accounts().login(req).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
async fn get_user<S: Service>(State(ctx): St<S>, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(ctx.svc.accounts().get_user(&id).await?))
}
