//! The outbox through the catalog functions that make events, the lease
//! and retry bookkeeping of deliveries, and one real attempt on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use api::wire::{WebhookEvent, WebhookPayload};
use rusqlite::Connection;

use super::*;
use crate::store::catalog::{
    self as cat, AttemptEnd, ChannelRow, Redelivery, Settle, UploadRow, UserRow, VideoRow,
};

fn catalog_conn() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(Catalog::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
    cat::insert_user(
        &c,
        &UserRow {
            id: "u1".into(),
            username: "ann".into(),
            password_hash: "x".into(),
            role: "creator".into(),
            created_at: 1,
        },
    )
    .unwrap();
    (dir, c)
}

fn endpoint(c: &Connection, id: &str, events: &[&str]) {
    cat::insert_webhook(
        c,
        &WebhookRow {
            id: id.into(),
            url: "http://127.0.0.1:9/".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret: signing::new_secret().unwrap(),
            created_at: 1,
        },
    )
    .unwrap();
}

fn processing_video(c: &Connection, id: &str) {
    let mut v = VideoRow::bench(id, "u1");
    v.state = "processing".into();
    v.stage = "queued".into();
    cat::insert_video(c, &v).unwrap();
}

/// (endpoint, event, event id, body) of every delivery, oldest first.
fn deliveries(c: &Connection) -> Vec<(String, String, String, WebhookPayload)> {
    let mut st = c
        .prepare("SELECT webhook_id, event, event_id, body FROM webhook_deliveries ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        let body: String = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            serde_json::from_str(&body).unwrap(),
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

/// Runs the video's job to publication (playable first, then whole).
fn publish(c: &mut Connection, video: &str) -> i64 {
    let job = cat::enqueue(c, video, 3).unwrap();
    let claimed = cat::claim(c, "w", std::time::Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, job);
    assert!(cat::publish_playable(c, job, "w", video, "{}").unwrap());
    assert!(cat::publish_playable(c, job, "w", video, "{}").unwrap());
    assert!(cat::publish(c, job, "w", video, "{}").unwrap());
    job
}

#[test]
fn events_reach_only_the_endpoints_subscribed_to_them() {
    let (_dir, mut c) = catalog_conn();
    endpoint(&c, "ready", &["video.ready"]);
    endpoint(
        &c,
        "ends",
        &["video.deleted", "upload.expired", "live.stopped"],
    );
    processing_video(&c, "v1");
    publish(&mut c, "v1");
    assert!(cat::begin_delete(&mut c, "v1").unwrap());
    assert!(!cat::begin_delete(&mut c, "v1").unwrap(), "deleted once");
    cat::insert_upload(
        &c,
        &UploadRow {
            id: "up1".into(),
            owner_id: "u1".into(),
            video_id: "v9".into(),
            filename: "a.mp4".into(),
            file_size: 10,
            mime_type: "video/mp4".into(),
            chunk_size: 10,
            total_chunks: 1,
            status: "open".into(),
            created_at: 1,
            expires_at: 2,
        },
    )
    .unwrap();
    // Two processes expiring the same session announce one event.
    cat::set_upload_status(&c, "up1", "expired").unwrap();
    cat::set_upload_status(&c, "up1", "expired").unwrap();
    let got = deliveries(&c);
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|(w, e, _, _)| (w.as_str(), e.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("ready", "video.ready"),
            ("ends", "video.deleted"),
            ("ends", "upload.expired")
        ],
        "one video.ready for three announcements, nothing unsubscribed"
    );
    let (_, _, id, body) = &got[0];
    assert_eq!(&body.id, id);
    assert_eq!(body.kind, WebhookEvent::VideoReady);
    assert_eq!(body.data.video_id.as_deref(), Some("v1"));
    assert_eq!(body.data.owner_id.as_deref(), Some("u1"));
    let upload = &got[2].3.data;
    assert_eq!(
        (upload.upload_id.as_deref(), upload.filename.as_deref()),
        (Some("up1"), Some("a.mp4"))
    );
}

#[test]
fn a_reprocessed_video_is_a_new_ready_event_and_a_rolled_back_change_is_none() {
    let (_dir, mut c) = catalog_conn();
    endpoint(&c, "all", &["video.ready", "video.failed"]);
    processing_video(&c, "v1");
    publish(&mut c, "v1");
    assert!(cat::requeue_video(&mut c, "v1", 3).unwrap());
    let job = cat::claim(&c, "w", std::time::Duration::from_secs(30))
        .unwrap()
        .unwrap();
    // A publication by a worker that lost its job commits nothing.
    assert!(!cat::publish(&mut c, job.id, "someone-else", "v1", "{}").unwrap());
    assert_eq!(deliveries(&c).len(), 1);
    assert!(cat::publish(&mut c, job.id, "w", "v1", "{}").unwrap());
    let got = deliveries(&c);
    assert_eq!(got.len(), 2);
    assert_ne!(got[0].2, got[1].2, "another job, another event");

    // A job giving up on a playable video leaves it ready: no video.failed.
    processing_video(&c, "v2");
    let job = cat::enqueue(&c, "v2", 3).unwrap();
    cat::claim(&c, "w", std::time::Duration::from_secs(30)).unwrap();
    assert!(cat::publish_playable(&mut c, job, "w", "v2", "{}").unwrap());
    assert!(cat::settle(&mut c, job, "w", Settle::Failed("boom".into())).unwrap());
    processing_video(&c, "v3");
    let job = cat::enqueue(&c, "v3", 3).unwrap();
    cat::claim(&c, "w", std::time::Duration::from_secs(30)).unwrap();
    assert!(cat::settle(&mut c, job, "w", Settle::Failed("CORRUPT_MEDIA: no".into())).unwrap());
    let failed: Vec<_> = deliveries(&c)
        .into_iter()
        .filter(|d| d.1 == "video.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].3.data.video_id.as_deref(), Some("v3"));
    assert_eq!(
        failed[0].3.data.failure.as_deref(),
        Some("CORRUPT_MEDIA: no")
    );
}

#[test]
fn live_channels_announce_their_start_and_stop_once() {
    let (_dir, c) = catalog_conn();
    endpoint(&c, "live", &["live.started", "live.stopped"]);
    cat::insert_channel(
        &c,
        &ChannelRow {
            id: "ch1".into(),
            owner_id: "u1".into(),
            name: "door".into(),
            url: "rtsp://cam/1".into(),
            rungs: vec![360],
            record: false,
            transport: "tcp".into(),
            desired: "running".into(),
            recordings: Vec::new(),
            created_at: 1,
            stopped_at: None,
        },
    )
    .unwrap();
    assert!(cat::stop_channel(&c, "ch1", 5).unwrap());
    assert!(!cat::stop_channel(&c, "ch1", 6).unwrap());
    let got = deliveries(&c);
    let kinds: Vec<&str> = got.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(kinds, ["live.started", "live.stopped"]);
    assert_eq!(got[1].3.data.name.as_deref(), Some("door"));
}

#[test]
fn a_delivery_is_leased_to_one_sender_and_settled_only_by_it() {
    let (_dir, mut c) = catalog_conn();
    endpoint(&c, "e", &["video.ready"]);
    processing_video(&c, "v1");
    publish(&mut c, "v1");
    assert!(cat::webhook_delivery_due(&c, 10_i64.pow(15)).unwrap());
    let now = cat::now_ms();
    let a = cat::claim_webhook_deliveries(&mut c, "a", 15_000, 8, now).unwrap();
    assert_eq!(a.len(), 1);
    let d = &a[0].delivery;
    assert_eq!((d.attempts, a[0].url.as_str()), (1, "http://127.0.0.1:9/"));
    assert!(
        cat::claim_webhook_deliveries(&mut c, "b", 15_000, 8, now + 1)
            .unwrap()
            .is_empty(),
        "leased"
    );
    // A's process dies; once the lease has run out, B takes it over.
    let b = cat::claim_webhook_deliveries(&mut c, "b", 15_000, 8, now + 15_001).unwrap();
    assert_eq!(b[0].delivery.attempts, 2);
    assert_eq!(b[0].delivery.event_id, d.event_id, "the same event id");
    let ok = AttemptEnd::Delivered { status: 204 };
    assert!(!cat::finish_webhook_attempt(&mut c, d.id, "a", 1, 5, &ok, now + 15_002).unwrap());
    assert!(cat::finish_webhook_attempt(&mut c, d.id, "b", 2, 5, &ok, now + 15_003).unwrap());
    let attempts = cat::webhook_attempts_of(&c, d.id, 100).unwrap();
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(204), Some(204)], "both attempts are logged");
    let row = cat::webhook_delivery(&c, "e", d.id).unwrap().unwrap();
    assert_eq!(row.state, "delivered");
    assert!(!cat::webhook_delivery_due(&c, 10_i64.pow(15)).unwrap());
}

#[test]
fn retries_end_in_failed_and_a_redelivery_opens_a_new_round() {
    let (_dir, mut c) = catalog_conn();
    endpoint(&c, "e", &["video.ready"]);
    processing_video(&c, "v1");
    publish(&mut c, "v1");
    let now = cat::now_ms();
    let id = cat::claim_webhook_deliveries(&mut c, "a", 15_000, 8, now).unwrap()[0]
        .delivery
        .id;
    let retry = AttemptEnd::Retry {
        at: now + 1_000,
        status: Some(500),
        error: "HTTP 500".into(),
    };
    assert!(cat::finish_webhook_attempt(&mut c, id, "a", 1, 5, &retry, now).unwrap());
    assert!(
        cat::claim_webhook_deliveries(&mut c, "a", 15_000, 8, now + 999)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cat::claim_webhook_deliveries(&mut c, "a", 15_000, 8, now + 1_000)
            .unwrap()
            .len(),
        1
    );
    let fail = AttemptEnd::Failed {
        status: None,
        error: "cannot connect".into(),
    };
    assert!(cat::finish_webhook_attempt(&mut c, id, "a", 2, 5, &fail, now + 1_001).unwrap());
    assert_eq!(
        cat::webhook_delivery(&c, "e", id).unwrap().unwrap().state,
        "failed"
    );

    assert_eq!(
        cat::redeliver_webhook(&mut c, "x", id, now, now + 9).unwrap(),
        Redelivery::Missing
    );
    assert_eq!(
        cat::redeliver_webhook(&mut c, "e", id, now + 2_000, now + 9_000).unwrap(),
        Redelivery::Queued
    );
    let again = cat::claim_webhook_deliveries(&mut c, "a", 15_000, 8, now + 2_000).unwrap();
    let d = &again[0].delivery;
    assert_eq!(
        (d.attempts, d.round_start, d.retry_until),
        (3, 2, now + 9_000)
    );
    assert_eq!(
        cat::redeliver_webhook(&mut c, "e", id, now + 2_001, now + 9_000).unwrap(),
        Redelivery::InFlight
    );
    let log = cat::webhook_attempts_of(&c, id, 100).unwrap();
    let manual: Vec<bool> = log.iter().map(|a| a.manual).collect();
    assert_eq!(manual, [false, false, true]);
    assert_eq!(log[2].duration_ms, None, "in flight");

    // Deleting the endpoint cancels what it had pending and wipes its secret.
    assert!(cat::delete_webhook(&mut c, "e", now + 3_000).unwrap());
    assert_eq!(
        cat::webhook_delivery(&c, "e", id).unwrap().unwrap().state,
        "cancelled"
    );
    assert!(cat::webhook(&c, "e").unwrap().is_none());
    let secret: String = c
        .query_row("SELECT secret FROM webhooks WHERE id = 'e'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(secret.is_empty());
    // Finished deliveries older than the cut go, and then the endpoint.
    assert_eq!(
        cat::purge_webhook_deliveries(&c, now + 10_000, 100).unwrap(),
        1
    );
    assert_eq!(
        c.query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );
}

/// A one-shot HTTP server on loopback: answers `status` to one request
/// and hands back its head and body.
fn receiver(status: u16) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let (mut head, mut length) = (String::new(), 0usize);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let _ = tx.send((head, String::from_utf8(body).unwrap()));
    });
    (url, rx)
}

#[tokio::test]
async fn an_attempt_is_a_signed_post_and_private_targets_need_allowing() {
    let secret = signing::new_secret().unwrap();
    let mut cfg = settings::Webhooks {
        timeout_secs: 5,
        ..settings::Webhooks::default()
    };
    let (url, rx) = receiver(200);
    let refused = send::Sender::new(&cfg)
        .unwrap()
        .send(&url, &secret, "evt_1", "{}")
        .await;
    assert_eq!(refused.status, None);
    assert!(refused.error.unwrap().contains("not a public address"));
    cfg.allow_private = true;
    let sender = send::Sender::new(&cfg).unwrap();
    let sent = sender.send(&url, &secret, "evt_1", r#"{"a":1}"#).await;
    assert_eq!((sent.status, sent.error), (Some(200), None));
    let (head, body) = rx.recv().unwrap();
    assert_eq!(body, r#"{"a":1}"#);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
            .to_owned()
    };
    assert_eq!(header("webhook-id"), "evt_1");
    let ts: i64 = header("webhook-timestamp").parse().unwrap();
    let key = signing::key_of(&secret).unwrap();
    assert_eq!(
        header("webhook-signature"),
        signing::signature(&key, "evt_1", ts, body.as_bytes())
    );

    let (url, _rx) = receiver(503);
    let sent = sender.send(&url, &secret, "evt_2", "{}").await;
    assert_eq!(
        (sent.status, sent.error.as_deref()),
        (Some(503), Some("HTTP 503"))
    );
    let gone = sender
        .send("http://127.0.0.1:9/", &secret, "evt_3", "{}")
        .await;
    assert!(
        gone.error.unwrap().starts_with("cannot connect"),
        "nothing listens on port 9"
    );
}
