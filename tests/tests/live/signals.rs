//! Stopping the ingester: SIGTERM, and SIGINT after hls.js in headless
//! Chromium has played the live stream, both end every playlist with
//! EXT-X-ENDLIST and exit 0.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use e2e::rtsp::{Ingest, LivePlaylist, StaticServer};
use e2e::{manifest_dir, run};

use crate::ladder::{ladder_has, media_uris, rig, rungs_arg};
use crate::{FIRST_SEGMENT, RUNGS};

#[test]
fn sigterm_ends_the_playlists_and_exits_0() {
    let Some(rig) = rig("the SIGTERM test") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264-pcma"),
        &out,
        &["--rungs", &rungs_arg()],
    );
    ingest.wait_until("two segments per playlist", FIRST_SEGMENT, || {
        ladder_has(&out, 2)
    });
    let code = ingest.signal_and_wait("TERM", Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "SIGTERM: exit 0; output:\n{}",
        ingest.output()
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    for uri in media_uris(&master) {
        let p = LivePlaylist::load(&out.join(&uri));
        assert!(p.endlist, "{uri}: EXT-X-ENDLIST after SIGTERM");
    }
}

#[test]
fn hls_js_in_headless_chromium_plays_the_live_stream() {
    let player = manifest_dir().join("../player");
    for program in ["chromium", "node"] {
        if !e2e::server::have(program) {
            assert!(
                !e2e::rtsp::under_ci(),
                "{program} is required in CI (scripts/setup installs it) for live playback"
            );
            eprintln!("SKIPPED: {program} is not installed; run scripts/setup");
            return;
        }
    }
    let hls_js = player.join("node_modules/hls.js/dist/hls.min.js");
    if !hls_js.is_file() || !player.join("node_modules/playwright-core").is_dir() {
        assert!(
            !e2e::rtsp::under_ci(),
            "player/node_modules missing in CI (scripts/setup runs npm ci)"
        );
        eprintln!("SKIPPED: run `npm ci --prefix player` first");
        return;
    }
    let Some(rig) = rig("live playback in Chromium") else {
        return;
    };
    let out = rig.out();
    let mut ingest = Ingest::start(
        &rig.server.url("h264-aac"),
        &out,
        &["--rungs", &rungs_arg(), "--duration", "90"],
    );
    // hls.js starts 3 target durations behind the live edge.
    ingest.wait_until("three segments per playlist", FIRST_SEGMENT, || {
        ladder_has(&out, 3)
    });
    let web = StaticServer::start(vec![
        ("/".into(), manifest_dir().join("rtsp/live.html")),
        ("/hls.min.js".into(), hls_js),
        ("/live/".into(), out.clone()),
    ]);
    let shots = e2e::appliance_bin().parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("hlsjs-live.png");
    let _ = std::fs::remove_file(&shot);
    let o = run(
        Command::new("node")
            .arg(player.join("play.mjs"))
            .args([
                "--url",
                &format!("{}/", web.base),
                "--seconds",
                "10",
                "--timeout",
                "70",
            ])
            .arg("--screenshot")
            .arg(&shot),
        Duration::from_secs(150),
    );
    let line = o.stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("play.mjs printed no JSON ({e}): {}\n{}", o.stdout, o.stderr));
    assert_eq!(report["engine"], "hls.js", "{report:#}");
    assert!(report["fatal"].is_null(), "{report:#}");
    assert!(
        report["currentTime"].as_f64().unwrap_or(0.0) >= 10.0,
        "hls.js played < 10 s of the live stream: {report:#}"
    );
    assert_eq!(o.code, Some(0), "{report:#}\n{}", o.stderr);
    assert_eq!(
        report["levels"].as_array().map(Vec::len),
        Some(RUNGS.len()),
        "hls.js sees the three rungs: {report:#}"
    );
    eprintln!("screenshot: {}", shot.display());

    // SIGINT ends it like SIGTERM.
    let code = ingest.signal_and_wait("INT", Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "SIGINT: exit 0; output:\n{}",
        ingest.output()
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    let uris: BTreeSet<String> = media_uris(&master).into_iter().collect();
    for uri in &uris {
        assert!(
            LivePlaylist::load(&out.join(uri)).endlist,
            "{uri}: EXT-X-ENDLIST after SIGINT"
        );
    }
}
