use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::*;

fn catalog_conn() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
    let conn = Arc::try_unwrap(cat.writer)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    (dir, conn)
}

/// The creator `u1` every test's videos belong to.
fn creator(c: &Connection) {
    insert_user(
        c,
        &UserRow {
            id: "u1".into(),
            username: "ann".into(),
            password_hash: "x".into(),
            role: "creator".into(),
            created_at: 1,
        },
    )
    .unwrap();
}

fn seed(c: &Connection) {
    creator(c);
    insert_video(
        c,
        &VideoRow {
            id: "v1".into(),
            owner_id: "u1".into(),
            title: "t".into(),
            description: String::new(),
            hashtags: vec!["a".into()],
            sound_id: None,
            visibility: "public".into(),
            state: "processing".into(),
            stage: "queued".into(),
            failure: None,
            source_key: "videos/v1/source".into(),
            source_name: "a.mp4".into(),
            ladder: None,
            created_at: 1,
            updated_at: 1,
            duet_enabled: true,
            stitch_enabled: true,
            remix: None,
            remix_of: None,
            speed: 1.0,
        },
    )
    .unwrap();
}

#[test]
fn a_job_is_leased_once_and_taken_over_when_its_lease_runs_out() {
    let (_d, mut c) = catalog_conn();
    seed(&c);
    let id = enqueue(&c, "v1", 3).unwrap();
    let a = claim(&c, "a", Duration::from_millis(50)).unwrap().unwrap();
    assert_eq!((a.id, a.attempts), (id, 1));
    assert!(claim(&c, "b", Duration::from_secs(60)).unwrap().is_none());
    std::thread::sleep(Duration::from_millis(80));
    let b = claim(&c, "b", Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!((b.id, b.attempts), (id, 2));
    // The first owner lost it: it can neither renew nor publish.
    assert!(!renew(&c, id, "a", Duration::from_secs(1)).unwrap());
    assert!(!publish(&mut c, id, "a", "v1", "{}").unwrap());
    assert!(publish(&mut c, id, "b", "v1", "{}").unwrap());
    assert_eq!(video(&c, "v1").unwrap().unwrap().state, "ready");
}

#[test]
fn a_deleted_video_is_never_published() {
    let (_d, mut c) = catalog_conn();
    seed(&c);
    let id = enqueue(&c, "v1", 3).unwrap();
    claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
    assert!(begin_delete(&mut c, "v1").unwrap());
    assert!(!renew(&c, id, "a", Duration::from_secs(1)).unwrap());
    assert!(!publish(&mut c, id, "a", "v1", "{}").unwrap());
    assert_eq!(video(&c, "v1").unwrap().unwrap().state, "deleting");
}

#[test]
fn retries_and_failures() {
    let (_d, mut c) = catalog_conn();
    seed(&c);
    let id = enqueue(&c, "v1", 3).unwrap();
    claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
    let later = now_ms() + 60_000;
    assert!(settle(
        &mut c,
        id,
        "a",
        Settle::Retry {
            at: later,
            error: "disk".into()
        }
    )
    .unwrap());
    assert!(
        claim(&c, "a", Duration::from_secs(60)).unwrap().is_none(),
        "not due yet"
    );
    c.execute("UPDATE jobs SET run_after = 0", []).unwrap();
    claim(&c, "a", Duration::from_secs(60)).unwrap().unwrap();
    assert!(settle(&mut c, id, "a", Settle::Failed("bad input".into())).unwrap());
    let v = video(&c, "v1").unwrap().unwrap();
    assert_eq!(
        (v.state.as_str(), v.failure.as_deref()),
        ("failed", Some("bad input"))
    );
}

#[test]
fn idempotency_keys() {
    let (_d, mut c) = catalog_conn();
    let stale = Duration::from_secs(300);
    assert!(matches!(
        claim_key(&mut c, "s", "k", "f", stale).unwrap(),
        KeyState::New
    ));
    assert!(matches!(
        claim_key(&mut c, "s", "k", "f", stale).unwrap(),
        KeyState::InFlight
    ));
    assert!(matches!(
        claim_key(&mut c, "s", "k", "g", stale).unwrap(),
        KeyState::OtherRequest
    ));
    finish_key(&c, "s", "k", 201, b"{}").unwrap();
    match claim_key(&mut c, "s", "k", "f", stale).unwrap() {
        KeyState::Done { status, body, .. } => {
            assert_eq!((status, body), (201, b"{}".to_vec()))
        }
        KeyState::New | KeyState::InFlight | KeyState::OtherRequest => panic!("not replayed"),
    }
    assert!(matches!(
        claim_key(&mut c, "other", "k", "g", stale).unwrap(),
        KeyState::New
    ));
}

#[test]
fn comments_in_one_millisecond_page_in_insertion_order() {
    let (_d, mut c) = catalog_conn();
    seed(&c);
    let mk = |id: &str, parent: Option<&str>| CommentRow {
        id: id.into(),
        video_id: "v1".into(),
        user_id: "u1".into(),
        username: String::new(),
        parent_id: parent.map(Into::into),
        body: id.into(),
        reply_count: 0,
        created_at: 1000,
        seq: 0,
    };
    // Ids sort opposite to insertion: order must not come from them.
    for id in ["c", "b", "a"] {
        insert_comment(&mut c, &mk(id, None)).unwrap();
    }
    for id in ["z", "y"] {
        insert_comment(&mut c, &mk(id, Some("c"))).unwrap();
    }
    let first = comments_page(&c, "v1", None, None, 2).unwrap();
    let ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "newest first");
    let rest = comments_page(&c, "v1", None, Some(first[1].seq), 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].id.as_str(), rest[0].reply_count), ("c", 2));
    let replies = comments_page(&c, "v1", Some("c"), None, 10).unwrap();
    let ids: Vec<&str> = replies.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["z", "y"], "oldest first");
}

#[test]
fn paging_user_videos() {
    let (_d, c) = catalog_conn();
    seed(&c);
    let page = videos_of(&c, "u1", false, None, 10).unwrap();
    assert_eq!(page.len(), 1);
    assert!(videos_of(&c, "u1", true, None, 10).unwrap().is_empty());
    assert!(videos_of(&c, "u1", false, Some((1, "v1".into())), 10)
        .unwrap()
        .is_empty());
}

#[test]
fn the_embed_sweep_reads_what_changed_since_its_mark() {
    let (_dir, c) = catalog_conn();
    creator(&c);
    for (id, updated_at, visibility) in [
        ("a", 100, "public"),
        ("b", 200, "public"),
        ("c", 300, "private"),
        ("d", 400, "public"),
    ] {
        let mut v = VideoRow::bench(id, "u1");
        v.updated_at = updated_at;
        v.visibility = visibility.into();
        insert_video(&c, &v).unwrap();
    }
    store_embedding(&c, "a", "m", &[1.0, 0.0]).unwrap();
    // The pass at start: the oldest public video still to embed.
    assert_eq!(oldest_unembedded(&c).unwrap(), Some(200));
    let ids = |since| -> Vec<String> {
        unembedded_videos(&c, since, 10)
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect()
    };
    assert_eq!(ids(0), ["b", "d"]);
    assert_eq!(ids(201), ["d"], "rows older than the mark are not read");
    store_embedding(&c, "b", "m", &[1.0, 0.0]).unwrap();
    store_embedding(&c, "d", "m", &[1.0, 0.0]).unwrap();
    assert_eq!(oldest_unembedded(&c).unwrap(), None);
    assert!(ids(0).is_empty());
}

#[test]
fn a_version_4_catalog_gains_the_videos_updated_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        // A file as version 4 made it: every later step still to apply.
        let c = Connection::open(&path).unwrap();
        let v4 = schema::STEPS[..4].concat();
        c.execute_batch(&format!("{v4} PRAGMA user_version = 4;"))
            .unwrap();
    }
    drop(Catalog::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let index: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'videos_updated'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((version, index), (schema::STEPS.len() as i64, 1));
}

#[test]
fn channels_and_jobs_page_newest_first_after_their_cursor() {
    let (_dir, c) = catalog_conn();
    seed(&c);
    // Three channels, two created in the same millisecond (ordered by id).
    for (id, at) in [("c1", 10), ("c2", 20), ("c3", 20)] {
        insert_channel(
            &c,
            &ChannelRow {
                id: id.into(),
                owner_id: "u1".into(),
                name: id.into(),
                url: "rtsp://cam/x".into(),
                rungs: vec![360],
                record: false,
                transport: "tcp".into(),
                desired: "stopped".into(),
                recordings: Vec::new(),
                created_at: at,
                stopped_at: None,
            },
        )
        .unwrap();
    }
    let ids = |rows: Vec<ChannelRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(channels(&c, Some("u1"), None, 10).unwrap()),
        ["c3", "c2", "c1"]
    );
    assert_eq!(
        ids(channels(&c, None, Some((20, "c3".into())), 10).unwrap()),
        ["c2", "c1"]
    );
    assert_eq!(
        ids(channels(&c, None, Some((20, "c2".into())), 1).unwrap()),
        ["c1"]
    );
    assert!(channels(&c, Some("nobody"), None, 10).unwrap().is_empty());

    let made: Vec<i64> = (0..3).map(|_| enqueue(&c, "v1", 3).unwrap()).collect();
    let job_ids = |rows: Vec<JobRow>| rows.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let newest: Vec<i64> = made.iter().rev().copied().collect();
    assert_eq!(job_ids(recent_jobs(&c, None, 10).unwrap()), newest);
    assert_eq!(
        job_ids(recent_jobs(&c, Some(made[2]), 1).unwrap()),
        [made[1]]
    );
    assert!(recent_jobs(&c, Some(made[0]), 10).unwrap().is_empty());
}
