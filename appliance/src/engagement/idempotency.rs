//! Idempotency keys (`X-Idempotency-Key`) in the hot store: the first
//! request with a key runs, a repeat replays its stored response.

use std::time::Duration;

use api::service::IdempotencyBegin;
use api::{ApiError, ApiResult};
use bytes::Bytes;

use super::Engagement;
use crate::store::catalog::KeyState;
use crate::store::sha256_hex;

impl api::Idempotency for Engagement {
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> ApiResult<IdempotencyBegin> {
        let f = sha256_hex(fingerprint.as_bytes());
        let state = self
            .hot
            .idem_claim(scope, key, &f, Duration::from_secs(300))
            .await?;
        match state {
            KeyState::New => Ok(IdempotencyBegin::Proceed),
            KeyState::Done { status, body } => Ok(IdempotencyBegin::Replay {
                status,
                body: Bytes::from(body),
            }),
            KeyState::InFlight => Err(ApiError::conflict(
                "a request with this X-Idempotency-Key is still running",
            )),
            KeyState::OtherRequest => Err(ApiError::conflict(
                "this X-Idempotency-Key was used for a different request",
            )),
        }
    }

    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, body: Bytes) {
        let keep = Duration::from_secs(self.idempotency_hours * 3600);
        if let Err(e) = self.hot.idem_finish(scope, key, status, &body, keep).await {
            tracing::warn!("idempotency key {key} not recorded: {e}");
        }
    }

    async fn idempotency_abort(&self, scope: &str, key: &str) {
        if let Err(e) = self.hot.idem_drop(scope, key).await {
            tracing::warn!("idempotency key {key} not released: {e}");
        }
    }
}
