//! Follows, likes and saves, shares, threaded comments, and the flushed
//! counters of each video (applied once per flush, reconciled from rows).

use rusqlite::{params, Connection, OptionalExtension, Row};

use serde::{Deserialize, Serialize};

use super::now_ms;
use crate::error::{Error, Result};

/// `true` if the row changed (a repeated follow is not a second follow).
pub fn set_follow(c: &Connection, follower: &str, followee: &str, on: bool) -> Result<bool> {
    let n = if on {
        c.execute(
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)",
            params![follower, followee, now_ms()],
        )
    } else {
        c.execute(
            "DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2",
            params![follower, followee],
        )
    }
    .map_err(Error::catalog("updating a follow"))?;
    Ok(n == 1)
}

pub fn all_follows(c: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = c
        .prepare("SELECT follower_id, followee_id FROM follows")
        .map_err(Error::catalog("loading follows"))?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::catalog("loading follows"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading follows"))
}

/// Likes and saves: one row per (video, user), so a repeat is not a second.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    Like,
    Save,
}

impl Flag {
    fn table(self) -> &'static str {
        match self {
            Self::Like => "likes",
            Self::Save => "saves",
        }
    }
}

/// `true` if the row changed.
pub fn set_flag(c: &Connection, flag: Flag, video: &str, user: &str, on: bool) -> Result<bool> {
    let t = flag.table();
    let n = if on {
        c.execute(
            &format!(
                "INSERT OR IGNORE INTO {t} (video_id, user_id, created_at) VALUES (?1, ?2, ?3)"
            ),
            params![video, user, now_ms()],
        )
    } else {
        c.execute(
            &format!("DELETE FROM {t} WHERE video_id = ?1 AND user_id = ?2"),
            params![video, user],
        )
    }
    .map_err(Error::catalog("updating a like or save"))?;
    Ok(n == 1)
}

/// (liked, saved) of `user` on `video`.
pub fn viewer_flags(c: &Connection, video: &str, user: &str) -> Result<(bool, bool)> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM likes WHERE video_id = ?1 AND user_id = ?2),
                EXISTS (SELECT 1 FROM saves WHERE video_id = ?1 AND user_id = ?2)",
        params![video, user],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(Error::catalog("reading engagement"))
}

pub fn insert_share(c: &Connection, video: &str, user: &str, channel: &str) -> Result<i64> {
    c.execute(
        "INSERT INTO shares (video_id, user_id, channel, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![video, user, channel, now_ms()],
    )
    .map_err(Error::catalog("recording a share"))?;
    Ok(c.last_insert_rowid())
}

pub fn share_channels(c: &Connection, video: &str) -> Result<Vec<(String, u64)>> {
    let mut st = c
        .prepare_cached(
            "SELECT channel, COUNT(*) FROM shares WHERE video_id = ?1 GROUP BY channel ORDER BY channel",
        )
        .map_err(Error::catalog("reading shares"))?;
    let rows = st
        .query_map([video], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .map_err(Error::catalog("reading shares"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading shares"))
}

#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: String,
    pub video_id: String,
    pub user_id: String,
    pub username: String,
    pub parent_id: Option<String>,
    pub body: String,
    pub reply_count: u64,
    pub created_at: i64,
    /// Position in insertion order (the page cursor).
    pub seq: i64,
}

const COMMENT_COLS: &str =
    "c.id, c.video_id, c.user_id, COALESCE(u.username, ''), c.parent_id, c.body, c.reply_count, c.created_at, c.rowid";

fn comment_row(r: &Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        id: r.get(0)?,
        video_id: r.get(1)?,
        user_id: r.get(2)?,
        username: r.get(3)?,
        parent_id: r.get(4)?,
        body: r.get(5)?,
        reply_count: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        seq: r.get(8)?,
    })
}

pub fn comment(c: &Connection, id: &str) -> Result<Option<CommentRow>> {
    c.query_row(
        &format!("SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id WHERE c.id = ?1"),
        [id],
        comment_row,
    )
    .optional()
    .map_err(Error::catalog("reading a comment"))
}

pub fn insert_comment(c: &mut Connection, row: &CommentRow) -> Result<()> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("adding a comment"))?;
    tx.execute(
        "INSERT INTO comments (id, video_id, user_id, parent_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![row.id, row.video_id, row.user_id, row.parent_id, row.body, row.created_at],
    )
    .map_err(Error::catalog("adding a comment"))?;
    if let Some(p) = &row.parent_id {
        tx.execute(
            "UPDATE comments SET reply_count = reply_count + 1 WHERE id = ?1",
            [p],
        )
        .map_err(Error::catalog("adding a comment"))?;
    }
    tx.commit().map_err(Error::catalog("adding a comment"))
}

/// Top-level comments newest first, or the replies to `parent` oldest first,
/// after the `seq` cursor.
pub fn comments_page(
    c: &Connection,
    video: &str,
    parent: Option<&str>,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<CommentRow>> {
    let sql = match parent {
        None => format!(
            "SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id
             WHERE c.video_id = ?1 AND c.parent_id IS NULL AND c.rowid < ?2
             ORDER BY c.rowid DESC LIMIT ?3"
        ),
        Some(_) => format!(
            "SELECT {COMMENT_COLS} FROM comments c LEFT JOIN users u ON u.id = c.user_id
             WHERE c.parent_id = ?1 AND c.rowid > ?2
             ORDER BY c.rowid LIMIT ?3"
        ),
    };
    let mut st = c
        .prepare_cached(&sql)
        .map_err(Error::catalog("reading comments"))?;
    let rows = match parent {
        None => st.query_map(
            params![video, after.unwrap_or(i64::MAX), limit],
            comment_row,
        ),
        Some(p) => st.query_map(params![p, after.unwrap_or(0), limit], comment_row),
    }
    .map_err(Error::catalog("reading comments"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading comments"))
}

/// Followers (`followers = true`) or followees of `user`, newest first,
/// after the `(created_at, id)` cursor: (user id, username, since).
pub fn follows_page(
    c: &Connection,
    user: &str,
    followers: bool,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<(String, String, i64)>> {
    let (me, other) = if followers {
        ("followee_id", "follower_id")
    } else {
        ("follower_id", "followee_id")
    };
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let mut st = c
        .prepare_cached(&format!(
            "SELECT f.{other}, u.username, f.created_at FROM follows f JOIN users u ON u.id = f.{other}
             WHERE f.{me} = ?1 AND (f.created_at < ?2 OR (f.created_at = ?2 AND f.{other} < ?3) OR ?3 = '' AND f.created_at <= ?2)
             ORDER BY f.created_at DESC, f.{other} DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("reading follows"))?;
    let rows = st
        .query_map(params![user, at, id, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(Error::catalog("reading follows"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("reading follows"))
}

/// Published videos of `owner`.
pub fn ready_video_count(c: &Connection, owner: &str) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM videos WHERE owner_id = ?1 AND state = 'ready'",
        [owner],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(Error::catalog("counting videos"))
}

/// (followers, following) of `user`.
pub fn follow_counts(c: &Connection, user: &str) -> Result<(u64, u64)> {
    c.query_row(
        "SELECT (SELECT COUNT(*) FROM follows WHERE followee_id = ?1),
                (SELECT COUNT(*) FROM follows WHERE follower_id = ?1)",
        [user],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(Error::catalog("counting follows"))
}

/// The flushed counters of a video.
pub fn video_stats(c: &Connection, video: &str) -> Result<Counts> {
    c.query_row(
        "SELECT views, likes, comments, shares, saves FROM video_stats WHERE video_id = ?1",
        [video],
        |r| {
            Ok(Counts::from_values([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ]))
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
    .map_err(Error::catalog("reading counters"))
}

/// Applies a counter flush once: a flush id seen before is skipped (a
/// flush retried after a crash). Counters of deleted videos are dropped.
pub fn apply_counts(
    c: &mut Connection,
    flush_id: &str,
    counts: &std::collections::HashMap<String, Counts>,
) -> Result<bool> {
    let op = Error::catalog("flushing counters");
    let tx = c
        .transaction()
        .map_err(Error::catalog("flushing counters"))?;
    let fresh = tx
        .execute(
            "INSERT OR IGNORE INTO counter_flushes (id, applied_at) VALUES (?1, ?2)",
            params![flush_id, now_ms()],
        )
        .map_err(Error::catalog("flushing counters"))?
        == 1;
    if fresh {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO video_stats (video_id, views, likes, comments, shares, saves)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM videos WHERE id = ?1)
                 ON CONFLICT (video_id) DO UPDATE SET views = MAX(0, views + excluded.views),
                    likes = MAX(0, likes + excluded.likes), comments = MAX(0, comments + excluded.comments),
                    shares = MAX(0, shares + excluded.shares), saves = MAX(0, saves + excluded.saves)",
            )
            .map_err(Error::catalog("flushing counters"))?;
        for (video, d) in counts {
            let [v, l, cm, sh, sv] = d.values();
            st.execute(params![video, v.max(0), l, cm, sh, sv])
                .map_err(Error::catalog("flushing counters"))?;
        }
        drop(st);
        // Old flush ids are only needed while a crashed flush can come back.
        tx.execute(
            "DELETE FROM counter_flushes WHERE applied_at < ?1",
            params![now_ms() - 7 * 86_400_000],
        )
        .map_err(Error::catalog("flushing counters"))?;
    }
    tx.commit().map_err(op)?;
    Ok(fresh)
}

/// Recounts likes, comments, shares and saves of `videos` from their rows,
/// and sets views where `views` has the truth; returns the videos whose
/// counters were wrong.
pub fn reconcile_counts(
    c: &mut Connection,
    videos: &[String],
    views: &std::collections::HashMap<String, u64>,
) -> Result<usize> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("reconciling counters"))?;
    let mut fixed = 0;
    {
        let mut truth = tx
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM likes WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM comments WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM shares WHERE video_id = ?1),
                        (SELECT COUNT(*) FROM saves WHERE video_id = ?1),
                        EXISTS (SELECT 1 FROM videos WHERE id = ?1)",
            )
            .map_err(Error::catalog("reconciling counters"))?;
        for v in videos {
            let (l, cm, sh, sv, exists): (i64, i64, i64, i64, bool) = truth
                .query_row([v], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(Error::catalog("reconciling counters"))?;
            if !exists {
                continue;
            }
            let now = video_stats(&tx, v)?;
            let views_now = views.get(v).map_or(now.views, |&n| n as i64);
            let want = Counts::from_values([views_now, l, cm, sh, sv]);
            if want != now {
                tx.execute(
                    "INSERT INTO video_stats (video_id, views, likes, comments, shares, saves)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (video_id) DO UPDATE SET views = excluded.views, likes = excluded.likes,
                        comments = excluded.comments, shares = excluded.shares, saves = excluded.saves",
                    params![v, want.views, l, cm, sh, sv],
                )
                .map_err(Error::catalog("reconciling counters"))?;
                fixed += 1;
            }
        }
    }
    tx.commit()
        .map_err(Error::catalog("reconciling counters"))?;
    Ok(fixed)
}

/// A video's counters, or pending changes to them (the hot store's unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub views: i64,
    pub likes: i64,
    pub comments: i64,
    pub shares: i64,
    pub saves: i64,
}

impl Counts {
    pub const FIELDS: [&'static str; 5] = ["v", "l", "c", "h", "s"];

    pub fn values(&self) -> [i64; 5] {
        [
            self.views,
            self.likes,
            self.comments,
            self.shares,
            self.saves,
        ]
    }

    pub fn from_values(v: [i64; 5]) -> Self {
        Self {
            views: v[0],
            likes: v[1],
            comments: v[2],
            shares: v[3],
            saves: v[4],
        }
    }

    pub fn add(&mut self, o: &Counts) {
        let mut v = self.values();
        v.iter_mut().zip(o.values()).for_each(|(a, b)| *a += b);
        *self = Self::from_values(v);
    }
}
