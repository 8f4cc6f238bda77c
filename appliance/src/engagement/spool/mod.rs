//! The local event spool: what makes `202 Accepted` true. Events are
//! appended to segment files and `fdatasync`ed before the request is
//! answered; the shipper reads them from a durable cursor and delivers them
//! to the analytics store, however long that store is away.
//!
//! Writes go through one writer thread that commits everything queued since
//! its last `fdatasync` in one go (group commit), so the cost of durability
//! is one sync per burst, not per request.
//!
//! On disk: `<dir>/<segment:020>.log` files of records
//! `[len u32 LE][crc32 u32 LE][JSON event]`, and `<dir>/cursor` (JSON
//! position of the first record not yet delivered, replaced atomically).
//! A torn record at the end of the last segment (a crash mid-write, never
//! acknowledged) is cut off when the spool is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::engagement::events::Event;
use crate::error::{Error, Result};

mod reader;

use self::reader::read_cursor;
pub use self::reader::Reader;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 8;
/// No single event comes near this; a larger length is corruption.
const MAX_RECORD: u32 = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

struct Append {
    bytes: Vec<u8>,
    records: u64,
    oldest: i64,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

struct Shared {
    /// End of what has been synced: readers never go past it.
    committed: Mutex<Pos>,
    appended: AtomicU64,
    shipped: AtomicU64,
    /// Receive time of the oldest event not yet delivered (0: none).
    oldest_pending: AtomicI64,
    bytes_pending: AtomicI64,
    new_data: tokio::sync::Notify,
}

pub struct Spool {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.log"))
}

fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("listing", dir.display()))? {
        let entry = entry.map_err(Error::io("listing", dir.display()))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir.display()))
}

pub fn encode(e: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    serde_json::to_writer(&mut *out, e).expect("an event always serialises");
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

enum Next {
    Record(Box<Event>, u64),
    End,
    Corrupt(String),
}

/// Reads one record at the reader's position; `End` at a clean end of file.
fn read_record(r: &mut impl Read, limit: u64) -> std::io::Result<Next> {
    if limit == 0 {
        return Ok(Next::End);
    }
    if limit < HEADER as u64 {
        return Ok(Next::Corrupt(format!("{limit} stray bytes")));
    }
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD || u64::from(len) + HEADER as u64 > limit {
        return Ok(Next::Corrupt(format!(
            "record of {len} bytes runs past the end"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Ok(Next::Corrupt("checksum mismatch".into()));
    }
    match serde_json::from_slice::<Event>(&payload) {
        Ok(e) => Ok(Next::Record(Box::new(e), HEADER as u64 + u64::from(len))),
        Err(e) => Ok(Next::Corrupt(format!("undecodable event: {e}"))),
    }
}

/// Scans a segment from `from`; the end of the last good record, the
/// records after `from` and the oldest receive time among them.
fn scan(path: &Path, from: u64) -> Result<(u64, u64, i64)> {
    let file = File::open(path).map_err(Error::io("opening", path.display()))?;
    let size = file
        .metadata()
        .map_err(Error::io("reading", path.display()))?
        .len();
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(from))
        .map_err(Error::io("reading", path.display()))?;
    let (mut at, mut n, mut oldest) = (from, 0u64, 0i64);
    loop {
        match read_record(&mut r, size - at).map_err(Error::io("reading", path.display()))? {
            Next::Record(e, len) => {
                at += len;
                n += 1;
                if oldest == 0 {
                    oldest = e.received;
                }
            }
            Next::End => break,
            Next::Corrupt(why) => {
                tracing::warn!(
                    segment = %path.display(),
                    offset = at,
                    dropped_bytes = size - at,
                    "spool: cutting off a torn tail ({why}); it was never acknowledged"
                );
                break;
            }
        }
    }
    Ok((at, n, oldest))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, repairing a torn tail.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::io("creating", dir.display()))?;
        let cursor = read_cursor(dir)?;
        let mut segs = segments(dir)?;
        if segs.is_empty() {
            let first = cursor.segment.max(1);
            File::create(segment_path(dir, first))
                .map_err(Error::io("creating", segment_path(dir, first).display()))?;
            sync_dir(dir)?;
            segs.push(first);
        }
        let last = *segs.last().expect("at least one segment");
        let mut pending = 0u64;
        let mut oldest = 0i64;
        let mut bytes = 0i64;
        let mut end = 0u64;
        for &s in segs.iter().filter(|&&s| s >= cursor.segment) {
            let from = if s == cursor.segment {
                cursor.offset
            } else {
                0
            };
            let (valid, n, old) = scan(&segment_path(dir, s), from)?;
            pending += n;
            bytes += (valid - from) as i64;
            if oldest == 0 {
                oldest = old;
            }
            if s == last {
                end = valid;
            }
        }
        let path = segment_path(dir, last);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(Error::io("opening", path.display()))?;
        if file
            .metadata()
            .map_err(Error::io("reading", path.display()))?
            .len()
            > end
        {
            file.set_len(end)
                .and_then(|_| file.sync_all())
                .map_err(Error::io("truncating", path.display()))?;
        }
        let shared = Arc::new(Shared {
            committed: Mutex::new(Pos {
                segment: last,
                offset: end,
            }),
            appended: AtomicU64::new(pending),
            shipped: AtomicU64::new(0),
            oldest_pending: AtomicI64::new(oldest),
            bytes_pending: AtomicI64::new(bytes),
            new_data: tokio::sync::Notify::new(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_owned(),
            segment: last,
            offset: end,
            file,
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(Error::io("starting the spool writer", dir.display()))?;
        if pending > 0 {
            tracing::info!(
                events = pending,
                "spool: undelivered events from before the restart"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            shared,
        })
    }

    /// Appends events durably; returns once they are on disk.
    pub async fn append(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(events.len() * 256);
        for e in events {
            encode(e, &mut bytes);
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        let oldest = events.iter().map(|e| e.received).min().unwrap_or(0);
        let sent = self.tx.lock().as_ref().map(|tx| {
            tx.send(Append {
                bytes,
                records: events.len() as u64,
                oldest,
                done,
            })
        });
        let closed = || Error::Task("the event spool is closed".into());
        match sent {
            Some(Ok(())) => {}
            Some(Err(_)) | None => return Err(closed()),
        }
        wait.await
            .map_err(|_| closed())?
            .map_err(Error::io("appending to the spool", self.dir.display()))
    }

    pub fn reader(&self) -> Result<Reader> {
        Reader::open(&self.dir, self.shared.clone())
    }

    /// Events accepted and not yet delivered.
    pub fn depth(&self) -> u64 {
        let s = &self.shared;
        s.appended
            .load(Ordering::Relaxed)
            .saturating_sub(s.shipped.load(Ordering::Relaxed))
    }

    /// Events accepted (synced) so far, counting those pending at open.
    pub fn appended(&self) -> u64 {
        self.shared.appended.load(Ordering::Relaxed)
    }

    /// Events delivered since open; reaches `appended()` taken at some
    /// moment once everything accepted before that moment is delivered
    /// (the shipper delivers in order).
    pub fn shipped(&self) -> u64 {
        self.shared.shipped.load(Ordering::Relaxed)
    }

    pub fn bytes_pending(&self) -> i64 {
        self.shared.bytes_pending.load(Ordering::Relaxed).max(0)
    }

    /// Age of the oldest undelivered event, ms (0 when all are delivered).
    pub fn lag_ms(&self, now: i64) -> i64 {
        match self.shared.oldest_pending.load(Ordering::Relaxed) {
            t if t == 0 || self.depth() == 0 => 0,
            t => (now - t).max(0),
        }
    }

    /// Calls `f` with every event received at or after `since` (ms) that
    /// the spool still holds: the newest delivered segment, kept for this,
    /// and everything after it. Read once at start, before any append.
    pub fn recent(&self, since: i64, mut f: impl FnMut(&Event)) -> Result<()> {
        let cursor = read_cursor(&self.dir)?;
        for seg in segments(&self.dir)? {
            if seg + 1 < cursor.segment {
                continue;
            }
            let path = segment_path(&self.dir, seg);
            let file = File::open(&path).map_err(Error::io("opening", path.display()))?;
            let size = file
                .metadata()
                .map_err(Error::io("reading", path.display()))?
                .len();
            let mut r = BufReader::with_capacity(1 << 20, file);
            let mut at = 0;
            // A corrupt record ends what can be read of a segment; the
            // shipper reports it when it gets there.
            while let Next::Record(e, len) =
                read_record(&mut r, size - at).map_err(Error::io("reading", path.display()))?
            {
                at += len;
                if e.received >= since {
                    f(&e);
                }
            }
        }
        Ok(())
    }

    /// Stops the writer after everything queued is synced.
    pub fn close(&self) {
        drop(self.tx.lock().take());
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    dir: PathBuf,
    segment: u64,
    offset: u64,
    file: File,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Append>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < 4096 {
                match rx.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            let outcome = self.commit(&group);
            for a in group {
                let _ = a.done.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }

    fn commit(&mut self, group: &[Append]) -> std::io::Result<()> {
        let total: usize = group.iter().map(|a| a.bytes.len()).sum();
        let mut buf = Vec::with_capacity(total);
        for a in group {
            buf.extend_from_slice(&a.bytes);
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let written = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Nothing of this group was acknowledged: take it back so the
            // next group does not land behind half a record.
            let _ = self.file.set_len(self.offset);
            return Err(e);
        }
        self.offset += buf.len() as u64;
        let records: u64 = group.iter().map(|a| a.records).sum();
        let oldest = group.iter().map(|a| a.oldest).min().unwrap_or(0);
        let _ = self.shared.oldest_pending.compare_exchange(
            0,
            oldest,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.shared
            .bytes_pending
            .fetch_add(buf.len() as i64, Ordering::Relaxed);
        self.shared.appended.fetch_add(records, Ordering::Relaxed);
        *self.shared.committed.lock() = Pos {
            segment: self.segment,
            offset: self.offset,
        };
        self.shared.new_data.notify_one();
        if self.offset >= SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        let file = File::create(segment_path(&self.dir, next))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = file;
        self.segment = next;
        self.offset = 0;
        *self.shared.committed.lock() = Pos {
            segment: next,
            offset: 0,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engagement::events::Kind;

    fn ev(i: usize) -> Event {
        let mut e = Event::action(Kind::Like, format!("e{i}"), "v", "c", "u");
        e.received = 1000 + i as i64;
        e
    }

    fn drain(r: &mut Reader) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let b = r.read(7).unwrap();
            if b.events.is_empty() {
                return out;
            }
            out.extend(b.events.iter().map(|e| e.id.clone()));
            r.commit(&b).unwrap();
        }
    }

    #[tokio::test]
    async fn appended_events_are_read_once_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let events: Vec<Event> = (0..20).map(ev).collect();
        spool.append(&events[..10]).await.unwrap();
        spool.append(&events[10..]).await.unwrap();
        assert_eq!(spool.depth(), 20);
        let mut r = spool.reader().unwrap();
        let b = r.read(5).unwrap();
        assert_eq!(b.events, events[..5]);
        r.commit(&b).unwrap();
        // What `Engagement::settle` waits on: accepted vs delivered.
        assert_eq!((spool.appended(), spool.shipped()), (20, 5));
        // Read but not committed: delivered again after a restart.
        let _ = r.read(5).unwrap();
        drop(r);
        spool.close();
        drop(spool);

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 15);
        // Pending at open counts as accepted; delivered counts from open.
        assert_eq!((spool.appended(), spool.shipped()), (15, 0));
        let mut r = spool.reader().unwrap();
        let ids = drain(&mut r);
        assert_eq!(ids, (5..20).map(|i| format!("e{i}")).collect::<Vec<_>>());
        assert_eq!(spool.depth(), 0);
        assert_eq!(spool.shipped(), spool.appended());
        assert_eq!(spool.lag_ms(5000), 0);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(&[ev(0), ev(1)]).await.unwrap();
        }
        // A crash in the middle of the next write.
        let seg = segment_path(dir.path(), 1);
        let mut half = Vec::new();
        encode(&ev(2), &mut half);
        half.truncate(half.len() / 2);
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&half)
            .unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 2);
        spool.append(&[ev(3)]).await.unwrap();
        let mut r = spool.reader().unwrap();
        assert_eq!(drain(&mut r), ["e0", "e1", "e3"]);
    }

    #[tokio::test]
    async fn segments_roll_over_and_delivered_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        // Pretend the first segment is full.
        {
            let seg = segment_path(dir.path(), 1);
            spool.append(&[ev(0)]).await.unwrap();
            let len = fs::metadata(&seg).unwrap().len();
            assert!(len > 0);
        }
        spool.close();
        fs::File::create(segment_path(dir.path(), 2)).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[ev(1), ev(2)]).await.unwrap();
        let mut r = spool.reader().unwrap();
        assert_eq!(drain(&mut r), ["e0", "e1", "e2"]);
        assert_eq!(
            segments(dir.path()).unwrap(),
            [1, 2],
            "the newest delivered stays"
        );
        spool.close();
        fs::File::create(segment_path(dir.path(), 3)).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[ev(3)]).await.unwrap();
        let mut r = spool.reader().unwrap();
        assert_eq!(drain(&mut r), ["e3"]);
        assert_eq!(segments(dir.path()).unwrap(), [2, 3]);
    }

    #[tokio::test]
    async fn recent_events_are_read_back_from_delivered_and_pending_segments() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[ev(0), ev(1)]).await.unwrap();
        spool.close();
        fs::File::create(segment_path(dir.path(), 2)).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[ev(2)]).await.unwrap();
        spool.close();
        fs::File::create(segment_path(dir.path(), 3)).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[ev(3), ev(4)]).await.unwrap();
        let mut r = spool.reader().unwrap();
        let b = r.read(4).unwrap();
        r.commit(&b).unwrap();
        // Segment 1 is gone, 2 (delivered, the newest such) is kept, and 3
        // holds e3 (delivered) and e4 (pending).
        assert_eq!(segments(dir.path()).unwrap(), [2, 3]);
        spool.close();
        let spool = Spool::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        // ev(i) was received at 1000 + i.
        spool.recent(1003, |e| seen.push(e.id.clone())).unwrap();
        assert_eq!(seen, ["e3", "e4"]);
        seen.clear();
        spool.recent(0, |e| seen.push(e.id.clone())).unwrap();
        assert_eq!(seen, ["e2", "e3", "e4"]);
    }

    #[tokio::test]
    async fn concurrent_appends_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = spool.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    s.append(&[ev(t * 1000 + i)]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut r = spool.reader().unwrap();
        let mut ids = drain(&mut r);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 400);
    }
}
