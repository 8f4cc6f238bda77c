//! What the search index (`crate::search`) reads from the catalog: users,
//! sounds and videos as documents, and the popularity behind their ranking
//! (followers, a sound's uses, a hashtag's videos). Incremental reads page
//! by rowid (users, follows and sounds are only ever appended; a row's
//! rowid never changes) or by `(updated_at, rowid)` (videos, on the
//! `videos_updated` index); the full recounts are the periodic
//! reconciliation's, never a query's.

use rusqlite::{params, Connection, Row};

use crate::error::{Error, Result};

/// A user as the index keeps them: `seq` is the row's rowid (registration
/// order, the ranking's last tie-break).
#[derive(Debug, Clone, PartialEq)]
pub struct UserDoc {
    pub seq: i64,
    pub id: String,
    pub username: String,
    pub followers: u64,
}

/// A sound as the index keeps it; `usage` counts the public, ready videos
/// that use it.
#[derive(Debug, Clone, PartialEq)]
pub struct SoundDoc {
    pub seq: i64,
    pub id: String,
    pub title: String,
    pub owner_id: Option<String>,
    pub owner_username: Option<String>,
    pub duration_ms: i64,
    pub usage: u64,
}

/// A video as the hashtag counts see it: `listed` when it is ready and
/// public (what a hashtag's page shows and trending counts).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoTags {
    pub rowid: i64,
    pub id: String,
    pub hashtags: Vec<String>,
    pub sound_id: Option<String>,
    pub listed: bool,
    pub updated_at: i64,
}

/// Public, ready videos: what a sound's uses and a hashtag's count.
const LISTED: &str = "state = 'ready' AND visibility = 'public'";

fn user_doc(r: &Row<'_>) -> rusqlite::Result<UserDoc> {
    Ok(UserDoc {
        seq: r.get(0)?,
        id: r.get(1)?,
        username: r.get(2)?,
        followers: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

const USER_DOC: &str = "SELECT u.rowid, u.id, u.username,
        (SELECT COUNT(*) FROM follows f WHERE f.followee_id = u.id)
     FROM users u";

/// Users registered after rowid `after`, oldest first, with their
/// follower counts.
pub fn users_after(c: &Connection, after: i64, limit: u32) -> Result<Vec<UserDoc>> {
    let mut st = c
        .prepare_cached(&format!(
            "{USER_DOC} WHERE u.rowid > ?1 ORDER BY u.rowid LIMIT ?2"
        ))
        .map_err(Error::catalog("reading users to index"))?;
    let rows = st
        .query_map(params![after, limit], user_doc)
        .map_err(Error::catalog("reading users to index"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(Error::catalog("reading users to index"))
}

/// These users (those that exist), with their follower counts now.
pub fn users_by_id(c: &Connection, ids: &[String]) -> Result<Vec<UserDoc>> {
    let mut st = c
        .prepare_cached(&format!("{USER_DOC} WHERE u.id = ?1"))
        .map_err(Error::catalog("reading users to index"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = st
            .query_map([id], user_doc)
            .map_err(Error::catalog("reading users to index"))?;
        if let Some(row) = rows.next() {
            out.push(row.map_err(Error::catalog("reading users to index"))?);
        }
    }
    Ok(out)
}

/// Follows made after rowid `after` (at most `limit` rows): the users
/// they followed, the last rowid read and how many rows were.
pub fn follows_after(c: &Connection, after: i64, limit: u32) -> Result<(Vec<String>, i64, usize)> {
    let mut st = c
        .prepare_cached(
            "SELECT rowid, followee_id FROM follows WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )
        .map_err(Error::catalog("reading new follows"))?;
    let mut last = after;
    let mut followees = Vec::new();
    let mut rows = st
        .query(params![after, limit])
        .map_err(Error::catalog("reading new follows"))?;
    while let Some(r) = rows.next().map_err(Error::catalog("reading new follows"))? {
        last = r.get(0).map_err(Error::catalog("reading new follows"))?;
        followees.push(r.get(1).map_err(Error::catalog("reading new follows"))?);
    }
    let read = followees.len();
    followees.sort_unstable();
    followees.dedup();
    Ok((followees, last, read))
}

/// The highest rowid in `table` (0 when empty): where an incremental read
/// of rows appended from now on starts. `table` is one of ours, never input.
pub fn max_rowid(c: &Connection, table: &'static str) -> Result<i64> {
    c.query_row(
        &format!("SELECT COALESCE(MAX(rowid), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )
    .map_err(Error::catalog("reading a high-water mark"))
}

/// Every user with at least one follower, and how many (a covering scan
/// of `follows_followee`).
pub fn follower_counts(c: &Connection) -> Result<Vec<(String, u64)>> {
    counts(
        c,
        "SELECT followee_id, COUNT(*) FROM follows GROUP BY followee_id",
        "counting followers",
    )
}

/// Every sound used by at least one listed video, and by how many.
pub fn sound_use_counts(c: &Connection) -> Result<Vec<(String, u64)>> {
    counts(
        c,
        &format!(
            "SELECT sound_id, COUNT(*) FROM videos WHERE sound_id IS NOT NULL AND {LISTED}
             GROUP BY sound_id"
        ),
        "counting sound uses",
    )
}

fn counts(c: &Connection, sql: &str, op: &'static str) -> Result<Vec<(String, u64)>> {
    let mut st = c.prepare(sql).map_err(Error::catalog(op))?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .map_err(Error::catalog(op))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(Error::catalog(op))
}

fn sound_doc(r: &Row<'_>) -> rusqlite::Result<SoundDoc> {
    Ok(SoundDoc {
        seq: r.get(0)?,
        id: r.get(1)?,
        title: r.get(2)?,
        owner_id: r.get(3)?,
        owner_username: r.get(4)?,
        duration_ms: r.get(5)?,
        usage: r.get::<_, i64>(6)?.max(0) as u64,
    })
}

fn sound_sql(filter: &str) -> String {
    format!(
        "SELECT s.rowid, s.id, s.title, s.owner_id, u.username, s.duration_ms,
            (SELECT COUNT(*) FROM videos v
             WHERE v.sound_id = s.id AND v.state = 'ready' AND v.visibility = 'public')
         FROM sounds s LEFT JOIN users u ON u.id = s.owner_id {filter}"
    )
}

/// Sounds added after rowid `after`, oldest first, with their uses.
pub fn sounds_after(c: &Connection, after: i64, limit: u32) -> Result<Vec<SoundDoc>> {
    let mut st = c
        .prepare_cached(&sound_sql("WHERE s.rowid > ?1 ORDER BY s.rowid LIMIT ?2"))
        .map_err(Error::catalog("reading sounds to index"))?;
    let rows = st
        .query_map(params![after, limit], sound_doc)
        .map_err(Error::catalog("reading sounds to index"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(Error::catalog("reading sounds to index"))
}

/// These sounds (those that exist), with their uses now.
pub fn sounds_by_id(c: &Connection, ids: &[String]) -> Result<Vec<SoundDoc>> {
    let mut st = c
        .prepare_cached(&sound_sql("WHERE s.id = ?1"))
        .map_err(Error::catalog("reading sounds to index"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = st
            .query_map([id], sound_doc)
            .map_err(Error::catalog("reading sounds to index"))?;
        if let Some(row) = rows.next() {
            out.push(row.map_err(Error::catalog("reading sounds to index"))?);
        }
    }
    Ok(out)
}

fn video_tags(r: &Row<'_>) -> rusqlite::Result<VideoTags> {
    let tags: String = r.get(2)?;
    Ok(VideoTags {
        rowid: r.get(0)?,
        id: r.get(1)?,
        hashtags: serde_json::from_str(&tags).unwrap_or_default(),
        sound_id: r.get(3)?,
        listed: r.get::<_, i64>(4)? != 0,
        updated_at: r.get(5)?,
    })
}

/// Videos changed after `(updated_at, rowid)`, in that order (the
/// `videos_updated` index carries the rowid), at most `limit`.
pub fn videos_changed(c: &Connection, after: (i64, i64), limit: u32) -> Result<Vec<VideoTags>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT rowid, id, hashtags, sound_id, {LISTED}, updated_at FROM videos
             WHERE updated_at >= ?1 AND (updated_at > ?1 OR rowid > ?2)
             ORDER BY updated_at, rowid LIMIT ?3"
        ))
        .map_err(Error::catalog("reading changed videos"))?;
    let rows = st
        .query_map(params![after.0, after.1, limit], video_tags)
        .map_err(Error::catalog("reading changed videos"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(Error::catalog("reading changed videos"))
}

/// Calls `f` with the id and hashtags of every listed video (the full
/// recount of hashtags: there is no index on tags inside the JSON).
pub fn for_each_listed(c: &Connection, mut f: impl FnMut(&str, Vec<String>)) -> Result<()> {
    let mut st = c
        .prepare(&format!("SELECT id, hashtags FROM videos WHERE {LISTED}"))
        .map_err(Error::catalog("reading hashtags"))?;
    let mut rows = st.query([]).map_err(Error::catalog("reading hashtags"))?;
    while let Some(r) = rows.next().map_err(Error::catalog("reading hashtags"))? {
        let id: String = r.get(0).map_err(Error::catalog("reading hashtags"))?;
        let tags: String = r.get(1).map_err(Error::catalog("reading hashtags"))?;
        f(&id, serde_json::from_str(&tags).unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::{insert_user, insert_video, set_follow, UserRow, VideoRow};

    fn user(c: &Connection, id: &str) {
        insert_user(
            c,
            &UserRow {
                id: id.into(),
                username: format!("name_{id}"),
                password_hash: String::new(),
                role: "creator".into(),
                created_at: 0,
            },
        )
        .unwrap();
    }

    #[test]
    fn increments_page_by_rowid_and_counts_follow_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let _migrated = crate::store::Catalog::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        for id in ["a", "b", "c"] {
            user(&c, id);
        }
        set_follow(&c, "a", "c", true).unwrap();
        set_follow(&c, "b", "c", true).unwrap();
        let first = users_after(&c, 0, 2).unwrap();
        assert_eq!(first.len(), 2);
        let rest = users_after(&c, first[1].seq, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].id.as_str(), rest[0].followers), ("c", 2));
        assert_eq!(follower_counts(&c).unwrap(), vec![("c".to_owned(), 2)]);
        let (followees, last, read) = follows_after(&c, 0, 10).unwrap();
        assert_eq!(read, 2);
        assert_eq!(followees, vec!["c".to_owned()]);
        assert_eq!(last, max_rowid(&c, "follows").unwrap());
        assert!(follows_after(&c, last, 10).unwrap().0.is_empty());

        let mut v = VideoRow::bench("v1", "a");
        v.hashtags = vec!["cats".into(), "dogs".into()];
        insert_video(&c, &v).unwrap();
        let changed = videos_changed(&c, (0, 0), 10).unwrap();
        assert_eq!(changed.len(), 1);
        assert!(changed[0].listed);
        assert_eq!(changed[0].hashtags, vec!["cats", "dogs"]);
        let after = (changed[0].updated_at, changed[0].rowid);
        assert!(videos_changed(&c, after, 10).unwrap().is_empty());
        let mut seen = Vec::new();
        for_each_listed(&c, |id, tags| seen.push((id.to_owned(), tags))).unwrap();
        assert_eq!(seen.len(), 1);
    }
}
