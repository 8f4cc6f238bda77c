//! `appliance jobs`: the transcode queue as the catalog holds it (queued,
//! running and failed jobs with their reasons, attempts and age), read from
//! the data directory of the config `serve` runs with. Read-only: it may run
//! beside a server (the catalog is SQLite in WAL mode).

use std::path::PathBuf;
use std::process::ExitCode;

use super::user::{columns, existing_catalog, utc_minutes};
use super::{report, runtime};
use crate::error::{Error, Result};
use crate::store::catalog::{self as cat, now_ms, rfc3339, JobListRow};
use settings::Config;

pub struct Args {
    pub config: Option<PathBuf>,
    /// Failed jobs only.
    pub failed: bool,
    /// Every state (succeeded and cancelled too).
    pub all: bool,
    pub limit: u32,
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    match list(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn list(args: &Args) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let catalog = existing_catalog(&config)?;
    let states: &'static [&'static str] = if args.failed {
        &["failed"]
    } else if args.all {
        &[]
    } else {
        &["queued", "running", "failed"]
    };
    let limit = args.limit;
    let (rows, counts) = runtime()
        .map_err(Error::io("starting", "the runtime"))?
        .block_on(
            catalog
                .read(move |c| Ok((cat::jobs_in_states(c, states, limit)?, cat::job_counts(c)?))),
        )?;
    let now = now_ms();
    if args.json {
        let items: Vec<_> = rows.iter().map(|r| job_json(r, now)).collect();
        let counts: serde_json::Map<_, _> = counts
            .iter()
            .map(|(state, n)| (state.clone(), serde_json::json!(n)))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "items": items, "counts": counts })
        );
        return Ok(());
    }
    if rows.is_empty() {
        let what = if states.is_empty() {
            "jobs".to_owned()
        } else {
            format!("{} jobs", states.join("/"))
        };
        println!("no {what}");
    } else {
        let mut table = vec![[
            "ID".to_owned(),
            "STATE".to_owned(),
            "TRIES".to_owned(),
            "AGE".to_owned(),
            "UPDATED (UTC)".to_owned(),
            "VIDEO".to_owned(),
            "OWNER".to_owned(),
            "TITLE".to_owned(),
            "REASON".to_owned(),
        ]];
        table.extend(rows.iter().map(|r| {
            let j = &r.job;
            [
                j.id.to_string(),
                j.state.clone(),
                format!("{}/{}", j.attempts, j.max_attempts),
                age(now - j.created_at),
                utc_minutes(j.updated_at),
                j.video_id.clone(),
                r.owner.clone().unwrap_or_else(|| "-".into()),
                r.title
                    .as_deref()
                    .map(|t| ellipsis(t, 24))
                    .unwrap_or_else(|| "(video gone)".into()),
                reason(r, now),
            ]
        }));
        print!(
            "{}",
            columns(
                &table,
                &[true, false, true, true, false, false, false, false, false]
            )
        );
    }
    let total: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "in the catalog: {}",
        if total.is_empty() {
            "no jobs".to_owned()
        } else {
            total.join(", ")
        }
    );
    Ok(())
}

fn job_json(r: &JobListRow, now: i64) -> serde_json::Value {
    let j = &r.job;
    serde_json::json!({
        "id": j.id,
        "videoId": j.video_id,
        "state": j.state,
        "attempts": j.attempts,
        "maxAttempts": j.max_attempts,
        "reason": j.last_error,
        "title": r.title,
        "owner": r.owner,
        "leaseOwner": j.lease_owner,
        "runAfter": rfc3339(j.run_after),
        "createdAt": rfc3339(j.created_at),
        "updatedAt": rfc3339(j.updated_at),
        "ageSecs": (now - j.created_at).max(0) / 1000,
    })
}

/// The last error, and for a queued retry when it runs again.
fn reason(r: &JobListRow, now: i64) -> String {
    let j = &r.job;
    let error = j.last_error.as_deref().unwrap_or("").replace('\n', " ");
    if j.state == "queued" && j.run_after > now {
        let wait = format!("retry in {}", age(j.run_after - now));
        if error.is_empty() {
            wait
        } else {
            format!("{wait}: {error}")
        }
    } else {
        error
    }
}

/// A duration in milliseconds as its largest unit: `42s`, `12m`, `5h`, `3d`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_their_largest_unit() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(60_000), "1m");
        assert_eq!(age(7_200_000), "2h");
        assert_eq!(age(3 * 86_400_000), "3d");
    }

    #[test]
    fn long_titles_are_cut() {
        assert_eq!(ellipsis("short", 24), "short");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
    }
}
