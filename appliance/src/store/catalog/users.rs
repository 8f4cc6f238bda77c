//! Users, bearer tokens (stored as SHA-256 hashes) and a user's declared
//! interests.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::now_ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        role: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const USER_COLS: &str = "id, username, password_hash, role, created_at";

/// `false` if the username is taken.
pub fn insert_user(c: &Connection, u: &UserRow) -> Result<bool> {
    let n = c
        .execute(
            "INSERT INTO users (id, username, password_hash, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
            params![u.id, u.username, u.password_hash, u.role, u.created_at],
        )
        .map_err(Error::catalog("inserting a user"))?;
    Ok(n == 1)
}

pub fn user_by_name(c: &Connection, username: &str) -> Result<Option<UserRow>> {
    c.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
        [username],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("reading a user"))
}

pub fn user_by_id(c: &Connection, id: &str) -> Result<Option<UserRow>> {
    c.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
        [id],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("reading a user"))
}

pub fn insert_token(c: &Connection, hash: &str, user_id: &str, expires_at: i64) -> Result<()> {
    c.execute(
        "INSERT INTO tokens (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash, user_id, now_ms(), expires_at],
    )
    .map_err(Error::catalog("storing a token"))?;
    Ok(())
}

/// The user a (hashed) token belongs to, if it has not expired.
pub fn user_by_token(c: &Connection, hash: &str) -> Result<Option<UserRow>> {
    c.query_row(
        "SELECT u.id, u.username, u.password_hash, u.role, u.created_at
         FROM tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.expires_at > ?2",
        params![hash, now_ms()],
        user_row,
    )
    .optional()
    .map_err(Error::catalog("checking a token"))
}

pub fn set_interests(c: &Connection, user: &str, interests: &[String]) -> Result<()> {
    c.execute(
        "INSERT INTO interests (user_id, interests, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET interests = excluded.interests, updated_at = excluded.updated_at",
        params![user, serde_json::to_string(interests).unwrap_or_else(|_| "[]".into()), now_ms()],
    )
    .map_err(Error::catalog("storing interests"))?;
    Ok(())
}

pub fn all_interests(c: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let mut st = c
        .prepare("SELECT user_id, interests FROM interests")
        .map_err(Error::catalog("loading interests"))?;
    let rows = st
        .query_map([], |r| {
            let raw: String = r.get(1)?;
            Ok((r.get(0)?, serde_json::from_str(&raw).unwrap_or_default()))
        })
        .map_err(Error::catalog("loading interests"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("loading interests"))
}

/// A user and how many videos they have (deleted ones not counted), for
/// `appliance user list`.
#[derive(Debug, Clone)]
pub struct UserListRow {
    pub user: UserRow,
    pub videos: u64,
}

/// Every user, oldest first, with their video counts.
pub fn users_with_video_counts(c: &Connection) -> Result<Vec<UserListRow>> {
    let mut st = c
        .prepare(
            "SELECT u.id, u.username, u.password_hash, u.role, u.created_at,
                    (SELECT COUNT(*) FROM videos v WHERE v.owner_id = u.id AND v.state <> 'deleting')
             FROM users u ORDER BY u.created_at, u.username",
        )
        .map_err(Error::catalog("listing users"))?;
    let rows = st
        .query_map([], |r| {
            Ok(UserListRow {
                user: user_row(r)?,
                videos: r.get(5)?,
            })
        })
        .map_err(Error::catalog("listing users"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing users"))
}

/// Replaces a user's password hash and revokes every token issued to them,
/// in one transaction (a leaked token must not outlive a password change).
/// `None` if there is no such user; else the number of tokens revoked.
pub fn set_password_revoking_tokens(
    c: &mut Connection,
    username: &str,
    password_hash: &str,
) -> Result<Option<usize>> {
    let tx = c
        .transaction()
        .map_err(Error::catalog("changing a password"))?;
    let id: Option<String> = tx
        .query_row(
            "UPDATE users SET password_hash = ?2 WHERE username = ?1 RETURNING id",
            params![username, password_hash],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::catalog("changing a password"))?;
    let Some(id) = id else {
        return Ok(None);
    };
    let revoked = tx
        .execute("DELETE FROM tokens WHERE user_id = ?1", [&id])
        .map_err(Error::catalog("revoking tokens"))?;
    tx.commit().map_err(Error::catalog("changing a password"))?;
    Ok(Some(revoked))
}
