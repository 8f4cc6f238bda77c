//! Live channels: what each is (camera, rungs, recording) and whether the
//! box should be running it — the row a restart brings channels back from.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// With credentials, if the camera needs them: never logged or shown.
    pub url: String,
    pub rungs: Vec<u32>,
    pub record: bool,
    /// `tcp` or `udp`.
    pub transport: String,
    /// `running` (started at boot) or `stopped`.
    pub desired: String,
    /// Videos made from the recording.
    pub recordings: Vec<String>,
    pub created_at: i64,
    pub stopped_at: Option<i64>,
}

const COLS: &str = "id, owner_id, name, url, rungs, record, transport, desired, recordings, \
                    created_at, stopped_at";

fn channel_row(r: &Row<'_>) -> rusqlite::Result<ChannelRow> {
    let rungs: String = r.get(4)?;
    let recordings: String = r.get(8)?;
    Ok(ChannelRow {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        name: r.get(2)?,
        url: r.get(3)?,
        rungs: serde_json::from_str(&rungs).unwrap_or_default(),
        record: r.get::<_, i64>(5)? != 0,
        transport: r.get(6)?,
        desired: r.get(7)?,
        recordings: serde_json::from_str(&recordings).unwrap_or_default(),
        created_at: r.get(9)?,
        stopped_at: r.get(10)?,
    })
}

pub fn insert_channel(c: &Connection, ch: &ChannelRow) -> Result<()> {
    // A channel created running is `live.started`: its webhook deliveries
    // commit with the row.
    super::atomically(c, || {
        insert_channel_row(c, ch)?;
        if ch.desired == "running" {
            let started = crate::webhooks::Event::LiveStarted { channel_id: &ch.id };
            crate::webhooks::record(c, started)?;
        }
        Ok(())
    })
}

fn insert_channel_row(c: &Connection, ch: &ChannelRow) -> Result<()> {
    c.execute(
        &format!("INSERT INTO live_channels ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            ch.id,
            ch.owner_id,
            ch.name,
            ch.url,
            serde_json::to_string(&ch.rungs).unwrap_or_else(|_| "[]".into()),
            i64::from(ch.record),
            ch.transport,
            ch.desired,
            serde_json::to_string(&ch.recordings).unwrap_or_else(|_| "[]".into()),
            ch.created_at,
            ch.stopped_at,
        ],
    )
    .map_err(Error::catalog("creating a live channel"))?;
    Ok(())
}

pub fn channel(c: &Connection, id: &str) -> Result<Option<ChannelRow>> {
    c.query_row(
        &format!("SELECT {COLS} FROM live_channels WHERE id = ?1"),
        [id],
        channel_row,
    )
    .optional()
    .map_err(Error::catalog("reading a live channel"))
}

/// Channels of one owner (all channels with `None`), newest first, after
/// the `(created_at, id)` of the previous page's last, at most `limit`.
pub fn channels(
    c: &Connection,
    owner: Option<&str>,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<ChannelRow>> {
    let (at, id) = match after {
        Some((at, id)) => (Some(at), id),
        None => (None, String::new()),
    };
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM live_channels WHERE (?1 IS NULL OR owner_id = ?1)
             AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .map_err(Error::catalog("listing live channels"))?;
    let rows = stmt
        .query_map(params![owner, at, id, limit], channel_row)
        .map_err(Error::catalog("listing live channels"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing live channels"))?;
    Ok(rows)
}

/// Channels the box should be running (started again at boot).
pub fn running_channels(c: &Connection) -> Result<Vec<ChannelRow>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM live_channels WHERE desired = 'running' ORDER BY created_at"
        ))
        .map_err(Error::catalog("listing live channels"))?;
    let rows = stmt
        .query_map([], channel_row)
        .map_err(Error::catalog("listing live channels"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(Error::catalog("listing live channels"))?;
    Ok(rows)
}

/// Marks a channel stopped; false if it already was (or does not exist).
/// A stop is `live.stopped`: its webhook deliveries commit with it.
pub fn stop_channel(c: &Connection, id: &str, at: i64) -> Result<bool> {
    super::atomically(c, || {
        let n = c
            .execute(
                "UPDATE live_channels SET desired = 'stopped', stopped_at = ?2
                 WHERE id = ?1 AND desired = 'running'",
                params![id, at],
            )
            .map_err(Error::catalog("stopping a live channel"))?;
        if n == 1 {
            crate::webhooks::record(c, crate::webhooks::Event::LiveStopped { channel_id: id })?;
        }
        Ok(n == 1)
    })
}

/// Lists a video made from the channel's recording.
pub fn add_recording(c: &Connection, id: &str, video_id: &str) -> Result<()> {
    c.execute(
        "UPDATE live_channels SET recordings = json_insert(recordings, '$[#]', ?2) WHERE id = ?1",
        params![id, video_id],
    )
    .map_err(Error::catalog("listing a recording"))?;
    Ok(())
}
