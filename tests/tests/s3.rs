//! The production object store: the same upload → transcode → origin path
//! with `objects.kind = "s3"`, against a real S3 API on loopback (moto's
//! server, from PyPI, installed by `scripts/setup`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::server::{assert_decodes, have, register, upload_small, wait_final, Client, Server};
use e2e::shared_media;
use serde_json::json;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ladders_live_in_an_s3_bucket() {
    if !have("moto_server") {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is required in CI (scripts/setup installs it)"
        );
        eprintln!(
            "SKIPPED: moto_server not installed (pip install 'moto[server]'); run scripts/setup"
        );
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Moto(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let s3 = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && client
                .request("PUT", &format!("{s3}/ladders"), &[], None)
                .status
                == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        dir.path(),
        "",
        &[
            ("APPLIANCE_OBJECTS__KIND", "s3"),
            ("APPLIANCE_OBJECTS__BUCKET", "ladders"),
            ("APPLIANCE_OBJECTS__ENDPOINT", &s3),
            ("APPLIANCE_OBJECTS__ALLOW_HTTP", "true"),
            ("APPLIANCE_OBJECTS__REGION", "us-east-1"),
            ("APPLIANCE_UPLOADS__CHUNK_SIZE", "5242880"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let (ann, _) = register(&server, "ann", "creator");
    let video = upload_small(
        &server,
        &ann,
        &shared_media("bbb_320x240_h264_aac_10s.mp4"),
        &json!({"title": "in the bucket"}),
    );
    assert_eq!(
        wait_final(&server, &ann, &video, Duration::from_secs(180))["status"],
        "ready"
    );
    assert!(
        !server.data.join("objects").exists(),
        "nothing is stored locally"
    );
    let keys = |prefix: &str| -> String {
        client
            .get(&format!("{s3}/ladders?list-type=2&prefix={prefix}"))
            .text()
    };
    let listing = keys(&format!("videos/{video}/"));
    assert!(
        listing.contains(&format!("videos/{video}/hls/master.m3u8")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("videos/{video}/source")),
        "{listing}"
    );
    assert!(
        !keys("uploads/").contains("<Key>"),
        "chunks are removed after completion"
    );

    let master = server.url(&format!("/hls/{video}/master.m3u8"));
    assert_decodes(&master);
    let seg_url = server.url(&format!("/hls/{video}/240p/0.m4s"));
    let seg = client.get(&seg_url);
    let etag = seg
        .header("etag")
        .expect("S3 objects have an ETag")
        .to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("\"\""), "{etag}");
    assert_eq!(
        client
            .request("GET", &seg_url, &[("if-none-match", &etag)], None)
            .status,
        304
    );
    let part = client.request("GET", &seg_url, &[("range", "bytes=10-19")], None);
    assert_eq!((part.status, &part.body[..]), (206, &seg.body[10..20]));

    assert_eq!(
        ann.delete(&server.url(&format!("/api/v1/videos/{video}")))
            .status,
        204
    );
    assert!(
        !keys("videos/").contains("<Key>"),
        "a deleted video leaves nothing in the bucket"
    );
}
