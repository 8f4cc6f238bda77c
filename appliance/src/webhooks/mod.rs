//! Webhooks: endpoints an admin registers for events (`video.ready`,
//! `video.failed`, `video.deleted`, `live.started`, `live.stopped`,
//! `upload.expired`), and their durable, signed, retried delivery.
//!
//! - `enqueue`: the outbox — the catalog functions that make an event
//!   happen call `record` inside their transaction.
//! - `worker`: claims due deliveries under a lease, POSTs them (`send`,
//!   signed by `signing`), retries on the `schedule` for a day.
//! - `model`: which URLs and addresses an endpoint may use.
//! - this file: the admin API (`api::Webhooks`).
//!
//! The secret is kept in the catalog (the box's secret store, a 0600 file)
//! and shown only in the answer that created the endpoint.

mod enqueue;
mod model;
mod schedule;
mod send;
mod signing;
mod worker;

use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339, DeliveryRow, Redelivery, WebhookRow};
use crate::store::{new_id, Catalog};
use settings::Config;

pub use enqueue::{record, Event};

/// Attempts shown per delivery in the log (the newest).
const ATTEMPTS_SHOWN: u32 = 100;

pub struct Webhooks {
    config: Arc<Config>,
    catalog: Catalog,
    sender: send::Sender,
    /// Wakes the worker when this process queued something due at once.
    wake: Notify,
}

impl Webhooks {
    pub fn new(config: Arc<Config>, catalog: Catalog) -> Result<Self> {
        Ok(Self {
            sender: send::Sender::new(&config.webhooks)?,
            config,
            catalog,
            wake: Notify::new(),
        })
    }

    /// The delivery worker; it stops when `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        vec![tokio::spawn(worker::run(Arc::clone(self), shutdown))]
    }

    fn wire(row: WebhookRow, secret: Option<String>) -> Webhook {
        Webhook {
            id: row.id,
            url: row.url,
            events: model::events_of(&row.events),
            created_at: rfc3339(row.created_at),
            secret,
        }
    }

    async fn existing(&self, id: &str) -> ApiResult<WebhookRow> {
        let key = id.to_owned();
        self.catalog
            .read(move |c| cat::webhook(c, &key))
            .await?
            .ok_or_else(|| ApiError::not_found("webhook"))
    }

    /// A delivery as the log shows it, with its latest attempts.
    fn delivery_wire(
        &self,
        d: DeliveryRow,
        attempts: Vec<cat::WebhookAttemptRow>,
        now: i64,
    ) -> WebhookDelivery {
        let state = match d.state.as_str() {
            "pending" => WebhookDeliveryState::Pending,
            "delivered" => WebhookDeliveryState::Delivered,
            "cancelled" => WebhookDeliveryState::Cancelled,
            _ => WebhookDeliveryState::Failed,
        };
        let held = state == WebhookDeliveryState::Pending
            && d.lease_owner.is_some()
            && d.next_attempt > now;
        let attempts = attempts
            .into_iter()
            .map(|a| {
                let outcome = match a.duration_ms {
                    Some(_) if a.error.is_none() => WebhookAttemptOutcome::Delivered,
                    Some(_) => WebhookAttemptOutcome::Failed,
                    None if held && a.n == d.attempts => WebhookAttemptOutcome::InFlight,
                    None => WebhookAttemptOutcome::Unknown,
                };
                WebhookAttempt {
                    n: a.n,
                    at: rfc3339(a.started_at),
                    duration_ms: a.duration_ms.and_then(|ms| u64::try_from(ms).ok()),
                    status: a.status,
                    error: a.error,
                    outcome,
                    manual: a.manual,
                }
            })
            .collect();
        let deadline = schedule::deadline(&self.config.webhooks, d.created_at, d.retry_until);
        WebhookDelivery {
            id: d.id,
            event: WebhookEvent::parse(&d.event).unwrap_or(WebhookEvent::VideoReady),
            event_id: d.event_id,
            state,
            created_at: rfc3339(d.created_at),
            next_attempt_at: (state == WebhookDeliveryState::Pending)
                .then(|| rfc3339(d.next_attempt)),
            retry_until: rfc3339(deadline),
            delivered_at: d.delivered_at.map(rfc3339),
            attempt_count: d.attempts,
            attempts,
            payload: serde_json::from_str(&d.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

impl api::Webhooks for Webhooks {
    async fn create_webhook(&self, req: WebhookCreate) -> ApiResult<Webhook> {
        let url = model::check_url(&req.url, self.config.webhooks.allow_private)
            .map_err(|why| ApiError::invalid("url", why))?;
        let events = model::canonical_events(&req.events);
        // As the schema says: a list of events, not of repeats.
        if events.is_empty() || req.events.len() > WebhookEvent::ALL.len() {
            return Err(ApiError::invalid(
                "events",
                format!("name 1–{} events", WebhookEvent::ALL.len()),
            ));
        }
        let secret = match req.secret {
            Some(s) => {
                signing::key_of(&s).map_err(|why| ApiError::invalid("secret", why))?;
                s
            }
            None => signing::new_secret()?,
        };
        let row = WebhookRow {
            id: new_id(),
            url: url.to_string(),
            events: events.iter().map(|e| e.as_str().to_owned()).collect(),
            secret: secret.clone(),
            created_at: now_ms(),
        };
        let stored = row.clone();
        self.catalog
            .call(move |c| cat::insert_webhook(c, &stored))
            .await?;
        // The host only: receivers often put a token in the path or query.
        let host = url.host_str().unwrap_or_default();
        tracing::info!(webhook = %row.id, host, events = ?row.events, "webhook registered");
        Ok(Self::wire(row, Some(secret)))
    }

    async fn list_webhooks(&self, page: PageQuery) -> ApiResult<Page<Webhook>> {
        let (limit, after) = page.by_created()?;
        // One more than the page, to know whether another follows.
        let rows = self
            .catalog
            .read(move |c| cat::webhooks_page(c, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |r| api::cursor::created(r.created_at, &r.id),
            |r| Self::wire(r, None),
        ))
    }

    async fn webhook(&self, id: &str) -> ApiResult<Webhook> {
        Ok(Self::wire(self.existing(id).await?, None))
    }

    async fn delete_webhook(&self, id: &str) -> ApiResult<()> {
        let key = id.to_owned();
        let deleted = self
            .catalog
            .call(move |c| cat::delete_webhook(c, &key, now_ms()))
            .await?;
        if !deleted {
            return Err(ApiError::not_found("webhook"));
        }
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    async fn webhook_deliveries(
        &self,
        id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<WebhookDelivery>> {
        page.check()?;
        let limit = page.limit.unwrap_or(20);
        let before = page
            .cursor
            .as_deref()
            .map(api::cursor::parse_seq)
            .transpose()?;
        self.existing(id).await?;
        let key = id.to_owned();
        let rows = self
            .catalog
            .read(move |c| {
                let rows = cat::webhook_deliveries(c, &key, before, limit + 1)?;
                rows.into_iter()
                    .map(|d| Ok((cat::webhook_attempts_of(c, d.id, ATTEMPTS_SHOWN)?, d)))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let now = now_ms();
        Ok(Page::from_overfetch(
            rows,
            limit,
            |(_, d)| api::cursor::seq(d.id),
            |(attempts, d)| self.delivery_wire(d, attempts, now),
        ))
    }

    async fn redeliver(&self, id: &str, delivery_id: i64) -> ApiResult<WebhookDelivery> {
        let key = id.to_owned();
        let now = now_ms();
        let window = i64::try_from(self.config.webhooks.retry_for_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let verdict = self
            .catalog
            .call(move |c| {
                cat::redeliver_webhook(c, &key, delivery_id, now, now.saturating_add(window))
            })
            .await?;
        match verdict {
            Redelivery::Missing => return Err(ApiError::not_found("delivery")),
            Redelivery::InFlight => {
                return Err(ApiError::conflict(
                    "an attempt of this delivery is running; redeliver it once it has ended",
                ))
            }
            Redelivery::Queued => self.wake.notify_one(),
        }
        tracing::info!(webhook = %id, delivery = delivery_id, "webhook redelivery queued");
        let key = id.to_owned();
        let (d, attempts) = self
            .catalog
            .call(move |c| {
                let d = cat::webhook_delivery(c, &key, delivery_id)?;
                let attempts = cat::webhook_attempts_of(c, delivery_id, ATTEMPTS_SHOWN)?;
                Ok((d, attempts))
            })
            .await?;
        let d = d.ok_or_else(|| ApiError::not_found("delivery"))?;
        Ok(self.delivery_wire(d, attempts, now_ms()))
    }
}

#[cfg(test)]
mod tests;
