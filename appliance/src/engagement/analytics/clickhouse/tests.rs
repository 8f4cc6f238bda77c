//! The SQL and the retry rule against a real `clickhouse-server` (Debian's
//! 18.16, which scripts/setup installs), started here on free loopback
//! ports with all its state in a temporary directory.

use std::process::{Child, Command, Stdio};

use super::*;
use crate::engagement::analytics::Totals;

#[test]
fn literals_are_escaped() {
    assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
    assert_eq!(in_list(["x", "y"]), "'x','y'");
}

struct Server {
    child: Child,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (http, tcp) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("users.xml"),
        "<?xml version=\"1.0\"?><yandex><profiles><default/></profiles><users><default>\
         <password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile>\
         <quota>default</quota></default></users><quotas><default/></quotas></yandex>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.xml"),
        format!(
            "<?xml version=\"1.0\"?><yandex><logger><level>warning</level>\
             <log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>\
             <listen_host>127.0.0.1</listen_host><http_port>{http}</http_port>\
             <tcp_port>{tcp}</tcp_port><path>{d}/data/</path><tmp_path>{d}/data/tmp/</tmp_path>\
             <user_files_path>{d}/data/user_files/</user_files_path>\
             <format_schema_path>{d}/data/format_schemas/</format_schema_path>\
             <users_config>{d}/users.xml</users_config>\
             <mark_cache_size>268435456</mark_cache_size><timezone>UTC</timezone></yandex>"
        ),
    )
    .unwrap();
    let child = Command::new("clickhouse-server")
        .arg(format!("--config-file={d}/config.xml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("clickhouse-server is not installed: run scripts/setup");
    Server {
        child,
        http,
        _dir: dir,
    }
}

async fn connect(s: &Server) -> ClickHouse {
    let ch = ClickHouse::new(
        &format!("http://127.0.0.1:{}", s.http),
        "retry_test",
        "default",
        "",
        Duration::from_secs(10),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The database does not exist before `migrate`: ask the server itself.
    while ch.admin.query("SELECT 1").fetch_one::<u8>().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "clickhouse-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ch.migrate().await.unwrap();
    ch
}

fn watch(i: usize) -> Event {
    let mut e = Event::action(
        Kind::Watch,
        format!("e{i}"),
        "v",
        "c",
        &format!("u{}", i % 3),
    );
    e.watch_ms = 100;
    e.duration_ms = 200;
    e.source = "fyp".into();
    e
}

async fn counts(ch: &ClickHouse) -> (u64, u64, u64) {
    let views = Totals::of(&ch.rollups(&Scope::Video("v".into()), 0).await.unwrap()).views;
    let raw: u64 = ch
        .client
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap();
    let viewers = ch
        .unique_viewers(&Scope::Video("v".into()), 0)
        .await
        .unwrap();
    (views, raw, viewers)
}

#[tokio::test]
async fn a_retry_after_a_crash_between_insert_and_ack_is_not_double_counted() {
    let s = server();
    let ch = connect(&s).await;
    let all: Vec<Event> = (0..40).map(watch).collect();
    assert_eq!(ch.deliver(&all[..10], Attempt::First).await.unwrap(), 10);
    // Inserted; then the process died before the spool's cursor moved.
    assert_eq!(ch.deliver(&all[10..20], Attempt::First).await.unwrap(), 10);
    // The restarted shipper's first batch starts at the same cursor and
    // reaches further: a retry stores only what the lost delivery lacked.
    assert_eq!(ch.deliver(&all[10..30], Attempt::Retry).await.unwrap(), 10);
    assert_eq!(counts(&ch).await, (30, 30, 3));
    // Then batches go as first deliveries again.
    assert_eq!(ch.deliver(&all[30..], Attempt::First).await.unwrap(), 10);
    assert_eq!(counts(&ch).await, (40, 40, 3));
    // Impressions are looked up on a retry too (their ids feed event_ids).
    let shown = Event::impression(
        "i1".into(),
        "u0",
        "v",
        "c",
        crate::store::catalog::now_ms(),
        "personalized",
        crate::engagement::Shown::default(),
    );
    let again = [shown.clone(), all[39].clone()];
    assert_eq!(ch.deliver(&[shown], Attempt::First).await.unwrap(), 1);
    assert_eq!(ch.deliver(&again, Attempt::Retry).await.unwrap(), 0);
    assert_eq!(counts(&ch).await, (40, 40, 3));
}
