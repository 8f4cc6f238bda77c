//! The README works as written: its "Try the API by hand" block, run by
//! bash from the checkout against a served demo (`serve --demo`, as
//! `scripts/demo` starts it), signs in, uploads in chunks, follows the
//! events to `transcode.completed`, and prints a play URL that plays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::server::{Client, Server};

const MARK: &str = "<!-- tests/tests/readme.rs runs this block against a served demo -->";

/// The fenced block right after the marker.
fn tested_block(readme: &str) -> String {
    let after = readme
        .split_once(MARK)
        .unwrap_or_else(|| panic!("README.md lost its marker {MARK:?}"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("a ```sh block follows the marker");
    body.split_once("\n```")
        .expect("the block ends")
        .0
        .to_owned()
}

#[test]
fn the_readme_block_runs_against_a_served_demo() {
    let root = e2e::manifest_dir().parent().unwrap().to_owned();
    let block = tested_block(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let linked = root.join("bin/appliance");
    if !linked.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "bin/appliance missing in CI (scripts/setup links it)"
        );
        eprintln!("SKIPPED: bin/appliance missing; run scripts/setup");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = e2e::shared_media("bbb_320x240_h264_aac_10s.mp4");
    let server = Server::start_args(dir.path(), &["--demo", clip.to_str().unwrap()]);
    wait_for_demo_user(&server);

    let out = e2e::run(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(&root)
            .env("BOX", server.base.trim_end_matches('/'))
            .env("NO_COLOR", "1"),
        Duration::from_secs(180),
    );
    assert_eq!(
        out.code,
        Some(0),
        "the README block failed:\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    // doctor ran (its report names the stages), the stream reached the end.
    assert!(out.stdout.contains("decode"), "{}", out.stdout);
    assert!(out.stdout.contains("transcode.completed"), "{}", out.stdout);
    let play = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("play it: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no play URL printed:\n{}", out.stdout))
        .to_owned();
    let page = Client::new().get(&play);
    assert_eq!(page.status, 200, "{play}: {}", page.text());
    assert!(page.text().contains("My clip"), "{}", page.text());
    let id = play.rsplit('/').next().unwrap();
    let master = Client::new().get(&server.url(&format!("/hls/{id}/master.m3u8")));
    assert_eq!(master.status, 200);
    assert!(master.text().starts_with("#EXTM3U"));
    assert!(Path::new(&root.join("bin/appliance")).exists());
}

/// `--demo` makes its user in the background after the server listens.
fn wait_for_demo_user(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = Client::new().post_json(
            &server.url("/api/v1/auth/login"),
            &serde_json::json!({"username": "demo", "password": "demo-password"}),
        );
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the demo user never appeared:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
