//! The domain against a real catalog (a temporary SQLite file) and the
//! in-process hot store: who is told what, paging, marking read, and a
//! stream's replay meeting its live pushes.

use std::sync::Arc;
use std::time::Duration;

use api::wire::*;
use futures::StreamExt;

use super::Notifications;
use crate::engagement::{Engagement, Notifier};
use crate::store::catalog::{self as cat, Catalog, CommentRow, Flag, UserRow, VideoRow};
use settings::Config;

struct Fixture {
    notes: Arc<Notifications>,
    catalog: Catalog,
    _dir: tempfile::TempDir,
}

/// A catalog with users `u0`…`u{users-1}` and a video `v` of `u0`.
async fn fixture(users: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
    let engagement = Arc::new(Engagement::new(&config, catalog.clone()).unwrap());
    catalog
        .call(move |c| {
            for i in 0..users {
                cat::insert_user(
                    c,
                    &UserRow {
                        id: format!("u{i}"),
                        username: format!("user{i}"),
                        password_hash: String::new(),
                        role: "creator".into(),
                        created_at: 0,
                    },
                )?;
            }
            cat::insert_video(c, &VideoRow::bench("v", "u0"))
        })
        .await
        .unwrap();
    Fixture {
        notes: Arc::new(Notifications::new(catalog.clone(), engagement)),
        catalog,
        _dir: dir,
    }
}

fn me(id: &str) -> Principal {
    Principal {
        user_id: id.into(),
        role: Role::Creator,
    }
}

async fn video(f: &Fixture) -> VideoRow {
    f.catalog
        .call(|c| cat::video(c, "v"))
        .await
        .unwrap()
        .unwrap()
}

async fn page(f: &Fixture, user: &str, limit: u32, cursor: Option<String>) -> NotificationPage {
    f.notes
        .list(
            &me(user),
            NotificationsQuery {
                limit: Some(limit),
                cursor,
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_go_newest_first_and_the_cursor_walks_to_the_end() {
    let f = fixture(26).await;
    for i in 1..26 {
        f.notes.followed(&format!("u{i}"), "u0").await;
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(&f, "u0", 10, cursor).await;
        assert_eq!(p.unread_count, 25);
        seen.extend(p.items.iter().map(|n| n.actor.clone().unwrap().username));
        cursor = p.next_cursor;
        if cursor.is_none() {
            assert_eq!(p.items.len(), 5);
            break;
        }
    }
    let want: Vec<_> = (1..26).rev().map(|i| format!("user{i}")).collect();
    assert_eq!(seen, want);
    // A page that ends exactly at the last one says so.
    let p = page(&f, "u0", 25, None).await;
    assert_eq!((p.items.len(), p.next_cursor), (25, None));
    // Someone else's list is their own.
    assert!(page(&f, "u1", 10, None).await.items.is_empty());
}

#[tokio::test]
async fn marking_read_by_id_up_to_an_id_and_all() {
    let f = fixture(6).await;
    for i in 1..6 {
        f.notes.followed(&format!("u{i}"), "u0").await;
    }
    let ids: Vec<String> = page(&f, "u0", 10, None)
        .await
        .items
        .into_iter()
        .rev()
        .map(|n| n.id)
        .collect();
    let read = |ids: Option<Vec<String>>, up_to: Option<String>| {
        let notes = f.notes.clone();
        async move {
            notes
                .mark_read(&me("u0"), MarkRead { ids, up_to })
                .await
                .unwrap()
                .unread_count
        }
    };
    assert_eq!(read(Some(vec![ids[4].clone()]), None).await, 4);
    assert_eq!(read(None, Some(ids[1].clone())).await, 2);
    // Another user's ids change nothing of theirs.
    let theirs = f
        .notes
        .mark_read(&me("u1"), MarkRead::default())
        .await
        .unwrap();
    assert_eq!(theirs.unread_count, 0);
    assert_eq!(page(&f, "u0", 10, None).await.unread_count, 2);
    let flags: Vec<bool> = page(&f, "u0", 10, None)
        .await
        .items
        .iter()
        .map(|n| n.read)
        .collect();
    assert_eq!(flags, [true, false, false, true, true]);
    assert_eq!(read(None, None).await, 0);
}

#[tokio::test]
async fn nobody_hears_of_their_own_action_or_of_a_repeat() {
    let f = fixture(3).await;
    let v = video(&f).await;
    f.notes.followed("u1", "u0").await;
    f.notes.followed("u1", "u0").await; // unfollowed and followed again
    f.notes.liked(&v, "u0", 1).await; // the owner's own like
    let own = CommentRow {
        id: "c1".into(),
        video_id: "v".into(),
        user_id: "u2".into(),
        username: String::new(),
        parent_id: Some("c0".into()),
        body: "me again".into(),
        reply_count: 0,
        created_at: 0,
        seq: 0,
    };
    f.notes.replied(&v, "u2", &own).await; // a reply to oneself
    let kinds: Vec<_> = page(&f, "u0", 10, None)
        .await
        .items
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(kinds, [NotificationKind::Follower]);
    assert!(page(&f, "u2", 10, None).await.items.is_empty());
}

#[tokio::test]
async fn a_milestone_needs_the_like_rows_and_comes_once() {
    let f = fixture(12).await;
    let v = video(&f).await;
    let like = |user: String| {
        let catalog = f.catalog.clone();
        async move {
            catalog
                .call(move |c| cat::set_flag(c, Flag::Like, "v", &user, true))
                .await
                .unwrap()
        }
    };
    for i in 1..10 {
        like(format!("u{i}")).await;
    }
    // The hot counter says 10 (a flush counted twice), the rows say 9.
    f.notes.liked(&v, "u9", 10).await;
    let milestones =
        |p: NotificationPage| -> Vec<u64> { p.items.iter().filter_map(|n| n.milestone).collect() };
    assert_eq!(
        milestones(page(&f, "u0", 10, None).await),
        Vec::<u64>::new()
    );
    f.notes.liked(&v, "u9", 9).await; // 1 was never told: it is now
    like("u10".into()).await;
    f.notes.liked(&v, "u10", 10).await;
    f.notes.liked(&v, "u10", 10).await; // unliked and liked again
    f.notes.liked(&v, "u11", 11).await;
    let p = page(&f, "u0", 10, None).await;
    assert_eq!(milestones(p.clone()), [10, 1]);
    let n = &p.items[0];
    assert_eq!(n.kind, NotificationKind::Likes);
    assert!(n.actor.is_none());
    assert_eq!(n.video.as_ref().unwrap().id.as_deref(), Some("v"));
}

#[tokio::test]
async fn an_upload_outcome_is_told_once_with_the_reason() {
    let f = fixture(1).await;
    f.notes.video_settled("v").await;
    f.notes.video_settled("v").await;
    f.catalog
        .call(|c| {
            let mut failed = VideoRow::bench("w", "u0");
            failed.state = "failed".into();
            failed.failure = Some("UNSUPPORTED_CODEC: no video stream".into());
            cat::insert_video(c, &failed)?;
            let mut growing = VideoRow::bench("g", "u0");
            growing.stage = GROWING.into();
            cat::insert_video(c, &growing)
        })
        .await
        .unwrap();
    f.notes.video_settled("w").await;
    f.notes.video_settled("g").await; // still growing: not done yet
    f.notes.video_settled("gone").await;
    let items = page(&f, "u0", 10, None).await.items;
    let got: Vec<_> = items
        .iter()
        .map(|n| (n.kind, n.video.clone().unwrap().id, n.reason.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                NotificationKind::VideoFailed,
                Some("w".into()),
                Some("UNSUPPORTED_CODEC: no video stream".into())
            ),
            (NotificationKind::VideoReady, Some("v".into()), None),
        ]
    );
}

async fn next(s: &mut futures::stream::BoxStream<'static, NotificationEvent>) -> NotificationEvent {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
}

fn notification_id(e: &NotificationEvent) -> String {
    match e {
        NotificationEvent::Notification(n) => n.id.clone(),
        NotificationEvent::Unread(u) => panic!("expected a notification, got {u:?}"),
    }
}

#[tokio::test]
async fn a_stream_replays_what_was_missed_then_goes_live_without_repeats() {
    let f = fixture(5).await;
    f.notes.followed("u1", "u0").await;
    let first = page(&f, "u0", 10, None).await.items[0].id.clone();
    f.notes.followed("u2", "u0").await;
    f.notes.followed("u3", "u0").await;

    let mut s = f
        .notes
        .events(&me("u0"), Some(first.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut s).await,
        NotificationEvent::Unread(UnreadCount { unread_count: 3 })
    );
    let replayed = [
        notification_id(&next(&mut s).await),
        notification_id(&next(&mut s).await),
    ];
    f.notes.followed("u4", "u0").await;
    let live = notification_id(&next(&mut s).await);
    let ids: Vec<i64> = replayed
        .iter()
        .chain([&live])
        .map(|i| i.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > first.parse::<i64>().unwrap());

    // Marking read reaches the stream as the new count.
    f.notes
        .mark_read(&me("u0"), MarkRead::default())
        .await
        .unwrap();
    assert_eq!(
        next(&mut s).await,
        NotificationEvent::Unread(UnreadCount { unread_count: 0 })
    );

    // Without Last-Event-ID only new ones come; another user's never.
    let mut fresh = f.notes.events(&me("u0"), None).await.unwrap();
    assert_eq!(
        next(&mut fresh).await,
        NotificationEvent::Unread(UnreadCount { unread_count: 0 })
    );
    f.notes.followed("u0", "u1").await;
    f.notes
        .replied(
            &video(&f).await,
            "u0",
            &CommentRow {
                id: "r1".into(),
                video_id: "v".into(),
                user_id: "u2".into(),
                username: String::new(),
                parent_id: Some("c0".into()),
                body: "agreed".into(),
                reply_count: 0,
                created_at: 0,
                seq: 0,
            },
        )
        .await;
    match next(&mut fresh).await {
        NotificationEvent::Notification(n) => {
            assert_eq!(n.kind, NotificationKind::Reply);
            assert_eq!(n.comment.unwrap().excerpt, "agreed");
            assert_eq!(n.actor.unwrap().username, "user2");
        }
        other @ NotificationEvent::Unread(_) => panic!("{other:?}"),
    }
}
