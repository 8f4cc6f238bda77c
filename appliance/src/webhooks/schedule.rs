//! When a failed delivery is tried again: exponential backoff from
//! `first_retry_secs`, doubling per failure, capped at `max_retry_secs`,
//! each delay drawn between half of it and all of it ("equal jitter": never
//! longer than the cap, never a burst at once), until the retry window
//! (`retry_for_secs`, a day by default) ends — one last attempt at its end,
//! then the delivery is `failed`.

use settings::Webhooks;

/// The retry window's end of a delivery: its own (set by a redelivery) or
/// the configured one from the event.
pub fn deadline(cfg: &Webhooks, created_at: i64, retry_until: i64) -> i64 {
    if retry_until > 0 {
        retry_until
    } else {
        created_at.saturating_add(secs_ms(cfg.retry_for_secs))
    }
}

/// The next attempt after the `failures`-th failed attempt of this round
/// (1 for the first) ended at `now`, or None when the window is over.
/// `jitter` is uniform in [0, 1).
pub fn next_attempt(
    cfg: &Webhooks,
    failures: u32,
    now: i64,
    deadline: i64,
    jitter: f64,
) -> Option<i64> {
    if now >= deadline {
        return None;
    }
    let doubling = failures.saturating_sub(1).min(40);
    let full = secs_ms(cfg.first_retry_secs)
        .saturating_mul(1i64 << doubling)
        .min(secs_ms(cfg.max_retry_secs));
    let half = full / 2;
    let delay = half + (((full - half) as f64) * jitter.clamp(0.0, 1.0)) as i64;
    Some(now.saturating_add(delay.max(1)).min(deadline))
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Webhooks {
        Webhooks::default()
    }

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        let cfg = defaults();
        let far = i64::MAX;
        // With no jitter a delay is its upper bound; with the most, half.
        let upper: Vec<i64> = (1..=12)
            .map(|k| next_attempt(&cfg, k, 0, far, 0.999_999).unwrap())
            .collect();
        let lower: Vec<i64> = (1..=12)
            .map(|k| next_attempt(&cfg, k, 0, far, 0.0).unwrap())
            .collect();
        assert_eq!(
            &upper[..4],
            [5_000 - 1, 10_000 - 1, 20_000 - 1, 40_000 - 1].as_slice()
        );
        assert_eq!(&lower[..4], [2_500, 5_000, 10_000, 20_000].as_slice());
        for (hi, lo) in upper.iter().zip(&lower) {
            assert!(*hi <= 3_600_000 && *lo >= 2_500, "bounded: {lo}..{hi}");
        }
        assert_eq!(
            lower[11], 1_800_000,
            "capped at max_retry_secs, jittered down to half"
        );
        // Huge failure counts neither overflow nor exceed the cap.
        assert!(next_attempt(&cfg, u32::MAX, 0, far, 0.5).unwrap() <= 3_600_000);
    }

    #[test]
    fn jitter_spreads_retries_of_the_same_failure() {
        let cfg = defaults();
        let times: std::collections::BTreeSet<i64> = (0..10)
            .map(|i| next_attempt(&cfg, 3, 0, i64::MAX, f64::from(i) / 10.0).unwrap())
            .collect();
        assert_eq!(times.len(), 10);
        assert!(times.iter().all(|t| (10_000..=20_000).contains(t)));
    }

    #[test]
    fn the_schedule_ends_with_one_attempt_at_the_end_of_the_day() {
        let cfg = defaults();
        let created = 1_000_000;
        let end = deadline(&cfg, created, 0);
        assert_eq!(end, created + 86_400_000);
        // Every attempt fails at once: count them until the window closes.
        let (mut now, mut attempts) = (created, 1u32);
        while let Some(at) = next_attempt(&cfg, attempts, now, end, 0.5) {
            assert!(at > now && at <= end);
            now = at;
            attempts += 1;
        }
        assert_eq!(now, end, "the last attempt is at the window's end");
        // ~11 doublings to the cap, then about one an hour (0.75 h on
        // average with this jitter) for the rest of the day.
        assert!(
            (30..=50).contains(&attempts),
            "{attempts} attempts in a day"
        );
        assert_eq!(next_attempt(&cfg, attempts, end + 5, end, 0.5), None);
    }

    #[test]
    fn a_redelivery_window_replaces_the_configured_one() {
        let cfg = defaults();
        assert_eq!(deadline(&cfg, 0, 42), 42);
        let mut short = defaults();
        short.retry_for_secs = 10;
        assert_eq!(deadline(&short, 5, 0), 10_005);
        assert_eq!(next_attempt(&short, 20, 9_000, 10_005, 0.5), Some(10_005));
    }
}
