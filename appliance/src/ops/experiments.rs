//! `GET /api/v1/ops/experiments`: the A/B report of `[feed.experiment]`,
//! a recount of the analytics store (never in-memory counters), so it is
//! the same number whichever process asks and survives restarts.
//!
//! Events still in the spool are not in the store: the report waits up to
//! `SETTLE` for everything accepted before the request to be delivered, and
//! says how many were still pending and when the store was read.

use std::time::Duration;

use api::wire::*;
use api::{ApiError, ErrorCode};

use super::Ops;
use crate::engagement::VariantCounts;
use crate::store::catalog::{now_ms, rfc3339};

const SETTLE: Duration = Duration::from_secs(2);
/// The 97.5th percentile of the standard normal: 95 % two-sided.
const Z: f64 = 1.959_963_984_540_054;

/// `k` of `n` with its 95 % Wilson score interval (0, [0, 1] when `n` is 0).
pub fn wilson(k: u64, n: u64) -> Rate {
    if n == 0 {
        return Rate {
            value: 0.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let (k, n) = (k.min(n) as f64, n as f64);
    let p = k / n;
    let z2 = Z * Z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt() / denom;
    Rate {
        value: p,
        low: (centre - half).clamp(0.0, p),
        high: (centre + half).clamp(p, 1.0),
    }
}

fn variant_report(variant: Variant, c: &VariantCounts) -> VariantReport {
    VariantReport {
        variant,
        viewers: c.viewers,
        impressions: c.impressions,
        watched_impressions: c.watched,
        liked_impressions: c.liked,
        watches: c.watches,
        completed_watches: c.completed,
        watch_through: wilson(c.watched, c.impressions),
        completion_rate: wilson(c.completed, c.watches),
        likes_per_impression: wilson(c.liked, c.impressions),
    }
}

impl Ops {
    pub(super) async fn experiment_report(&self) -> Result<ExperimentReport, ApiError> {
        let status = self.feed.experiment_status();
        let name = status.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let pending = self.engagement.settle(SETTLE).await;
        let as_of = now_ms();
        let counts = self
            .engagement
            .analytics
            .experiment_counts(&name)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "experiment report: the analytics store did not answer");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the analytics store is unreachable; the report is counted from it",
                )
            })?;
        let sides: &[Variant] = if status.is_some() {
            &[Variant::Control, Variant::Candidate]
        } else {
            &[Variant::Control]
        };
        let variants = sides
            .iter()
            .map(|&v| {
                let wanted = match v {
                    Variant::Control => "control",
                    Variant::Candidate => "candidate",
                };
                let c = counts
                    .iter()
                    .find(|c| c.variant == wanted)
                    .cloned()
                    .unwrap_or_default();
                variant_report(v, &c)
            })
            .collect();
        Ok(ExperimentReport {
            experiment: status.map(|s| ExperimentInfo {
                name: s.name,
                // f32 → the decimal the operator wrote, not 0.30000001192.
                share: (f64::from(s.share) * 1e6).round() / 1e6,
                candidate_ranker: s.candidate,
                state: if s.paused.is_some() {
                    ExperimentState::Paused
                } else {
                    ExperimentState::Running
                },
                paused_reason: s.paused,
            }),
            as_of: rfc3339(as_of),
            pending_events: pending,
            variants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_known_values_and_stay_in_bounds() {
        // 8 of 10: the textbook interval 0.4902–0.9433.
        let r = wilson(8, 10);
        assert!((r.value - 0.8).abs() < 1e-12);
        assert!((r.low - 0.4902).abs() < 1e-4, "{r:?}");
        assert!((r.high - 0.9433).abs() < 1e-4, "{r:?}");
        let none = wilson(0, 0);
        assert_eq!((none.value, none.low, none.high), (0.0, 0.0, 1.0));
        for (k, n) in [(0, 1), (1, 1), (0, 1000), (1000, 1000), (3, 7), (500, 1001)] {
            let r = wilson(k, n);
            assert!(
                0.0 <= r.low && r.low <= r.value && r.value <= r.high && r.high <= 1.0,
                "{k}/{n}: {r:?}"
            );
        }
        assert_eq!(wilson(0, 5).low, 0.0);
        assert_eq!(wilson(5, 5).high, 1.0);
        // More evidence, a narrower interval.
        let (a, b) = (wilson(5, 10), wilson(500, 1000));
        assert!(b.high - b.low < a.high - a.low);
    }
}
