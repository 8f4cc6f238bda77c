//! Users' notifications (table `notifications`, schema v6): one row per
//! notification, paged by id (insertion order), at most one per
//! `(user, dedupe)` key so a like milestone or a follower is told once
//! however often the action repeats. The video and actor are read back by
//! join, so a list shows what they are now (a deleted video: no row).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub user_id: String,
    pub kind: &'static str,
    pub actor_id: Option<String>,
    pub video_id: Option<String>,
    pub comment_id: Option<String>,
    /// JSON: what the kind needs to be shown once its video or comment is
    /// gone (title, excerpt, milestone, reason).
    pub body: String,
    pub dedupe: Option<String>,
    pub created_at: i64,
}

/// A stored notification with what the joins found of its actor and video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub actor_id: Option<String>,
    /// `None` when the actor's account is gone.
    pub actor_username: Option<String>,
    pub video_id: Option<String>,
    /// The video as it is now; `None` when its row is gone.
    pub video: Option<NotifiedVideo>,
    pub comment_id: Option<String>,
    pub body: String,
    pub created_at: i64,
    pub read: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifiedVideo {
    pub owner_id: String,
    pub title: String,
    pub state: String,
    pub visibility: String,
}

/// Stores `n` unless the user already has one with its dedupe key; the new
/// row's id, or `None` when it was a repeat.
pub fn insert_notification(c: &Connection, n: &NewNotification) -> Result<Option<i64>> {
    let changed = c
        .execute(
            "INSERT INTO notifications
                 (user_id, kind, actor_id, video_id, comment_id, body, dedupe, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (user_id, dedupe) DO NOTHING",
            params![
                n.user_id,
                n.kind,
                n.actor_id,
                n.video_id,
                n.comment_id,
                n.body,
                n.dedupe,
                n.created_at
            ],
        )
        .map_err(Error::catalog("storing a notification"))?;
    Ok((changed == 1).then(|| c.last_insert_rowid()))
}

pub fn notification_exists(c: &Connection, user: &str, dedupe: &str) -> Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE user_id = ?1 AND dedupe = ?2)",
        params![user, dedupe],
        |r| r.get(0),
    )
    .map_err(Error::catalog("reading notifications"))
}

/// The video's like rows, counted no further than `cap` (a milestone is
/// checked against the rows without walking a popular video's millions).
pub fn likes_up_to(c: &Connection, video: &str, cap: u64) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM (SELECT 1 FROM likes WHERE video_id = ?1 LIMIT ?2)",
        params![video, cap as i64],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
    .map_err(Error::catalog("counting likes"))
}

const COLS: &str = "n.id, n.kind, n.actor_id, u.username, n.video_id, v.owner_id, v.title,
    v.state, v.visibility, n.comment_id, n.body, n.created_at, n.read_at IS NOT NULL";
const JOINS: &str = "FROM notifications n
    LEFT JOIN users u ON u.id = n.actor_id
    LEFT JOIN videos v ON v.id = n.video_id";

fn notification_row(r: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    let owner: Option<String> = r.get(5)?;
    Ok(NotificationRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        actor_id: r.get(2)?,
        actor_username: r.get(3)?,
        video_id: r.get(4)?,
        video: match owner {
            Some(owner_id) => Some(NotifiedVideo {
                owner_id,
                title: r.get(6)?,
                state: r.get(7)?,
                visibility: r.get(8)?,
            }),
            None => None,
        },
        comment_id: r.get(9)?,
        body: r.get(10)?,
        created_at: r.get(11)?,
        read: r.get(12)?,
    })
}

/// A page of the user's notifications, newest first, older than `before`.
pub fn notifications_page(
    c: &Connection,
    user: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<NotificationRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLS} {JOINS} WHERE n.user_id = ?1 AND n.id < ?2 ORDER BY n.id DESC LIMIT ?3"
        ))
        .map_err(Error::catalog("listing notifications"))?;
    let rows = st
        .query_map(
            params![user, before.unwrap_or(i64::MAX), limit],
            notification_row,
        )
        .map_err(Error::catalog("listing notifications"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing notifications"))
}

/// The user's notifications after `after` up to and including `upto`,
/// oldest first: what a reconnecting stream missed.
pub fn notifications_between(
    c: &Connection,
    user: &str,
    after: i64,
    upto: i64,
    limit: u32,
) -> Result<Vec<NotificationRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLS} {JOINS} WHERE n.user_id = ?1 AND n.id > ?2 AND n.id <= ?3
             ORDER BY n.id LIMIT ?4"
        ))
        .map_err(Error::catalog("replaying notifications"))?;
    let rows = st
        .query_map(params![user, after, upto, limit], notification_row)
        .map_err(Error::catalog("replaying notifications"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("replaying notifications"))
}

/// One notification by id, if it is the user's.
pub fn notification(c: &Connection, user: &str, id: i64) -> Result<Option<NotificationRow>> {
    c.query_row(
        &format!("SELECT {COLS} {JOINS} WHERE n.user_id = ?1 AND n.id = ?2"),
        params![user, id],
        notification_row,
    )
    .optional()
    .map_err(Error::catalog("reading a notification"))
}

pub fn unread_notifications(c: &Connection, user: &str) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM notifications WHERE user_id = ?1 AND read_at IS NULL",
        [user],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
    .map_err(Error::catalog("counting unread notifications"))
}

/// The id of the user's newest notification, 0 when there is none.
pub fn newest_notification(c: &Connection, user: &str) -> Result<i64> {
    c.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM notifications WHERE user_id = ?1",
        [user],
        |r| r.get(0),
    )
    .map_err(Error::catalog("reading notifications"))
}

/// Marks the user's notifications read at `now`: all of them (`ids` empty
/// and no `up_to`), else those in `ids` and those up to `up_to`. Returns
/// the unread count left, read in the same transaction.
pub fn mark_notifications_read(
    c: &mut Connection,
    user: &str,
    ids: &[i64],
    up_to: Option<i64>,
    now: i64,
) -> Result<u64> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("marking notifications read"))?;
    {
        let all = ids.is_empty() && up_to.is_none();
        let mut range = tx
            .prepare_cached(
                "UPDATE notifications SET read_at = ?3
                 WHERE user_id = ?1 AND read_at IS NULL AND id <= ?2",
            )
            .map_err(Error::catalog("marking notifications read"))?;
        if all || up_to.is_some() {
            range
                .execute(params![user, up_to.unwrap_or(i64::MAX), now])
                .map_err(Error::catalog("marking notifications read"))?;
        }
        let mut one = tx
            .prepare_cached(
                "UPDATE notifications SET read_at = ?3
                 WHERE user_id = ?1 AND id = ?2 AND read_at IS NULL",
            )
            .map_err(Error::catalog("marking notifications read"))?;
        for id in ids {
            one.execute(params![user, id, now])
                .map_err(Error::catalog("marking notifications read"))?;
        }
    }
    let left = unread_notifications(&tx, user)?;
    tx.commit()
        .map_err(Error::catalog("marking notifications read"))?;
    Ok(left)
}
