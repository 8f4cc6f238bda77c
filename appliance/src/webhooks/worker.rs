//! The delivery worker: claims due deliveries under a lease (so several
//! processes on one catalog never send the same attempt), POSTs each, and
//! records the outcome — delivered, retried later by the schedule, or
//! failed once the retry window is over. A process that dies mid-attempt
//! leaves its lease to run out; the delivery then comes due again and is
//! sent with the same event id. Hourly it deletes finished deliveries past
//! `keep_days`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{schedule, Webhooks};
use crate::store::catalog::{self as cat, now_ms, AttemptEnd, ClaimedDelivery};

/// How often an idle worker looks for due deliveries (a read; events wake
/// it sooner only in the process that made them, so this bounds the delay
/// of a delivery queued by another process).
const POLL: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` turns true, then lets the attempts in flight end
/// (each is bounded by `timeout_secs`) so their outcomes are recorded.
pub async fn run(hooks: Arc<Webhooks>, mut shutdown: watch::Receiver<bool>) {
    let owner = format!("{}:{}:webhooks", hostname(), std::process::id());
    let cfg = hooks.config.webhooks.clone();
    // Longer than an attempt can last, so a live sender never loses its
    // lease to another process mid-attempt.
    let lease_ms = i64::try_from((cfg.timeout_secs + 5) * 1000).unwrap_or(i64::MAX);
    let mut inflight = JoinSet::new();
    let mut last_purge: Option<Instant> = None;
    while !*shutdown.borrow() {
        let room = cfg.concurrency.saturating_sub(inflight.len());
        if room > 0 {
            for claimed in claim(&hooks, &owner, lease_ms, room).await {
                inflight.spawn(attempt(hooks.clone(), owner.clone(), claimed));
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            purge(&hooks).await;
        }
        tokio::select! {
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            _ = hooks.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
    while inflight.join_next().await.is_some() {}
}

async fn claim(hooks: &Webhooks, owner: &str, lease_ms: i64, room: usize) -> Vec<ClaimedDelivery> {
    let now = now_ms();
    // Most polls find nothing due: asked on a reader, they never queue
    // behind (or hold) the catalog's writer.
    match hooks
        .catalog
        .read(move |c| cat::webhook_delivery_due(c, now))
        .await
    {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(e) => {
            tracing::warn!("webhooks: looking for due deliveries: {e}");
            return Vec::new();
        }
    }
    let owner = owner.to_owned();
    let limit = u32::try_from(room).unwrap_or(u32::MAX);
    match hooks
        .catalog
        .call(move |c| cat::claim_webhook_deliveries(c, &owner, lease_ms, limit, now_ms()))
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!("webhooks: claiming deliveries: {e}");
            Vec::new()
        }
    }
}

async fn attempt(hooks: Arc<Webhooks>, owner: String, claimed: ClaimedDelivery) {
    let d = &claimed.delivery;
    let sent = hooks
        .sender
        .send(&claimed.url, &claimed.secret, &d.event_id, &d.body)
        .await;
    let now = now_ms();
    let end = match (sent.status, sent.error) {
        (Some(status), None) => AttemptEnd::Delivered { status },
        (status, error) => {
            let error = error.unwrap_or_else(|| "no answer".into());
            let cfg = &hooks.config.webhooks;
            let deadline = schedule::deadline(cfg, d.created_at, d.retry_until);
            let failures = d.attempts.saturating_sub(d.round_start).max(1);
            match schedule::next_attempt(cfg, failures, now, deadline, rand::random::<f64>()) {
                Some(at) => AttemptEnd::Retry { at, status, error },
                None => AttemptEnd::Failed { status, error },
            }
        }
    };
    match &end {
        AttemptEnd::Delivered { status } => {
            tracing::info!(delivery = d.id, event = %d.event, event_id = %d.event_id, attempt = d.attempts, status, "webhook delivered")
        }
        AttemptEnd::Retry { at, error, .. } => {
            tracing::info!(delivery = d.id, event = %d.event, attempt = d.attempts, retry_in_ms = at - now, "webhook attempt failed: {error}")
        }
        AttemptEnd::Failed { error, .. } => {
            tracing::warn!(delivery = d.id, event = %d.event, attempt = d.attempts, "webhook delivery given up: {error}")
        }
    }
    let (id, n, duration) = (d.id, d.attempts, sent.duration_ms);
    let recorded = hooks
        .catalog
        .call(move |c| cat::finish_webhook_attempt(c, id, &owner, n, duration, &end, now))
        .await;
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                delivery = id,
                "webhook delivery no longer ours (endpoint deleted, or lease lost)"
            )
        }
        // The lease runs out and the delivery is sent again: the receiver
        // de-duplicates by its id.
        Err(e) => tracing::warn!(delivery = id, "webhooks: recording an attempt: {e}"),
    }
}

async fn purge(hooks: &Webhooks) {
    let keep = i64::try_from(hooks.config.webhooks.keep_days).unwrap_or(i64::MAX / 86_400_000);
    let before = now_ms().saturating_sub(keep.saturating_mul(86_400_000));
    // Bounded batches, so a large backlog never holds the writer long.
    loop {
        match hooks
            .catalog
            .call(move |c| cat::purge_webhook_deliveries(c, before, 1000))
            .await
        {
            Ok(1000) => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("webhooks: purging old deliveries: {e}");
                return;
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}
