//! `[webhooks]`: how the box delivers the events admins subscribe
//! endpoints to (`/api/v1/ops/webhooks`): where it may send them, how long
//! one attempt may take, and the retry schedule. Its own file so `lib.rs`
//! only gains the section's field.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// Allow endpoints on loopback, private (RFC 1918, unique-local),
    /// link-local, shared (CGNAT) and other non-public addresses. Off, such
    /// a host is refused at registration (a literal address, `localhost`)
    /// and at every delivery (what a name resolves to, so DNS cannot point
    /// a registered name at the box's own network later). Off by default:
    /// an admin token should not reach the services behind the box; turn
    /// it on when the receivers live on the operator's own network.
    pub allow_private: bool,
    /// One attempt (connect, send, answer) at most this long; slower is a
    /// failed attempt.
    pub timeout_secs: u64,
    /// Delay before the first retry; it doubles per failed attempt …
    pub first_retry_secs: u64,
    /// … up to this. Each delay is drawn between half of it and all of it
    /// (jitter), so endpoints that failed together do not retry together.
    pub max_retry_secs: u64,
    /// No automatic attempt starts later than this after the event (one
    /// last attempt is made at the end of the window); then the delivery is
    /// `failed`. A manual redelivery opens a new window.
    pub retry_for_secs: u64,
    /// Deliveries sent at once by this process.
    pub concurrency: usize,
    /// Finished deliveries (delivered, failed, cancelled) and their
    /// attempts are deleted this many days after the event.
    pub keep_days: u64,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout_secs: 10,
            first_retry_secs: 5,
            max_retry_secs: 3600,
            retry_for_secs: 86_400,
            concurrency: 8,
            keep_days: 30,
        }
    }
}

impl Webhooks {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "webhooks.timeout_secs must be 1–300 (got {})",
                self.timeout_secs
            ));
        }
        if self.first_retry_secs == 0 || self.max_retry_secs < self.first_retry_secs {
            return Err(format!(
                "webhooks.first_retry_secs must be ≥ 1 and ≤ max_retry_secs (got {} and {})",
                self.first_retry_secs, self.max_retry_secs
            ));
        }
        if !(1..=30 * 86_400).contains(&self.retry_for_secs) {
            return Err(format!(
                "webhooks.retry_for_secs must be 1–2592000 (30 days; got {})",
                self.retry_for_secs
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(format!(
                "webhooks.concurrency must be 1–256 (got {})",
                self.concurrency
            ));
        }
        if self.keep_days == 0 {
            return Err("webhooks.keep_days must be at least 1".into());
        }
        Ok(())
    }
}
