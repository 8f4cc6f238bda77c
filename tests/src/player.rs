//! Real players from tests: `player/play.mjs` drives Debian's Chromium
//! (through playwright-core) with hls.js on the box's `/play` page, or with
//! Shaka Player on a master playlist, and reports what happened as JSON.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::server::have;

/// Whether Chromium, Node and the player's npm packages are installed. In
/// CI a missing one fails the test (set-up installs them all); elsewhere
/// the caller is skipped with a message naming what is missing.
pub fn available(what: &str) -> bool {
    let modules = crate::manifest_dir().join("../player/node_modules");
    let missing: Vec<&str> = [
        ("chromium", have("chromium")),
        ("node", have("node")),
        ("hls.js", modules.join("hls.js").is_dir()),
        ("shaka-player", modules.join("shaka-player").is_dir()),
        ("playwright-core", modules.join("playwright-core").is_dir()),
    ]
    .into_iter()
    .filter(|(_, here)| !here)
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} missing in CI for {what} (scripts/setup installs them)"
    );
    eprintln!("SKIPPED {what}: {missing:?} missing; run scripts/setup");
    false
}

/// Plays `url` (hls.js: a `/play/{id}` page; shaka: a master playlist) for
/// `seconds` of media, with `extra` arguments (`--thumbnails`), a
/// screenshot at `screenshot`; returns play.mjs's exit code and report.
pub fn play(
    engine: &str,
    url: &str,
    seconds: u32,
    extra: &[&str],
    screenshot: &Path,
) -> (Option<i32>, Value) {
    let script = crate::manifest_dir().join("../player/play.mjs");
    let out = crate::run(
        Command::new("node")
            .arg(script)
            .args(["--engine", engine, "--url", url, "--timeout", "90"])
            .args(["--seconds", &seconds.to_string()])
            .args(extra)
            .arg("--screenshot")
            .arg(screenshot),
        Duration::from_secs(150),
    );
    let line = out.stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "play.mjs printed no JSON ({e}): {}\n{}",
            out.stdout, out.stderr
        )
    });
    if out.code != Some(0) {
        eprintln!("play.mjs: {}", out.stderr);
    }
    (out.code, report)
}
