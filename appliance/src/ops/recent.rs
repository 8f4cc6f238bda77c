//! The last warnings and errors this process logged, for the status page's
//! admin view: a `tracing` layer beside the log writer that keeps the most
//! recent [`KEEP`] in memory (the log itself stays the record).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use api::wire::LogLine;

const KEEP: usize = 50;

static RING: LazyLock<Mutex<VecDeque<LogLine>>> = LazyLock::new(Default::default);
/// When the process started (first asked at start-up, by the log set-up).
static STARTED: LazyLock<(Instant, SystemTime)> =
    LazyLock::new(|| (Instant::now(), SystemTime::now()));

/// Marks the start; called once, first thing.
pub fn mark_start() {
    LazyLock::force(&STARTED);
}

pub fn started() -> (Instant, SystemTime) {
    *STARTED
}

/// Newest first.
pub fn recent() -> Vec<LogLine> {
    RING.lock().iter().rev().cloned().collect()
}

/// Keeps every `WARN` and `ERROR` event that passes the log filter.
pub struct RecentErrors;

impl<S: Subscriber> Layer<S> for RecentErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let line = LogLine {
            at: humantime_rfc3339(SystemTime::now()),
            level: level.to_string(),
            target: event.metadata().target().to_owned(),
            message: text.0,
        };
        let mut ring = RING.lock();
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(line);
    }
}

/// `message` first, then `field=value` for the rest.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                let _ = write!(self.0, " {rest}");
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

fn humantime_rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    crate::store::catalog::rfc3339(ms)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_warnings_and_errors_newest_first_with_their_fields() {
        let sub = tracing_subscriber::registry().with(super::RecentErrors);
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not kept");
            tracing::warn!(video = "v1", "first");
            tracing::error!(error = %"disk full", "second");
        });
        let got = super::recent();
        let mine: Vec<_> = got
            .iter()
            .filter(|l| l.message.starts_with("first") || l.message.starts_with("second"))
            .collect();
        assert_eq!(mine.len(), 2, "{got:?}");
        assert_eq!(mine[0].message, "second error=disk full");
        assert_eq!(mine[0].level, "ERROR");
        assert_eq!(mine[1].message, "first video=v1");
        assert!(!got.iter().any(|l| l.message.contains("not kept")));
    }
}
