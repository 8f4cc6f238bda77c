//! Where logs go: stderr, as plain text (colour only on a terminal, and
//! never with `NO_COLOR`) or one JSON object per line, filtered by
//! `RUST_LOG` or the command's default; plus the status page's ring of
//! recent warnings and errors.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::ops::recent::{mark_start, RecentErrors};

/// Installs the global subscriber. `default_filter` applies when
/// `RUST_LOG` is unset.
pub fn init(json: bool, default_filter: &str) {
    use std::io::IsTerminal;
    mark_start();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_current_span(false).boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(RecentErrors)
        .init();
}
