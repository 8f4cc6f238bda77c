//! The shipper's side of the spool: reads committed records from a durable
//! cursor on and moves the cursor past what was delivered.

use std::fs::{self, File};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{read_record, segment_path, segments, Next, Pos, Shared};
use crate::engagement::events::Event;
use crate::error::{Error, Result};

pub(super) fn read_cursor(dir: &Path) -> Result<Pos> {
    let path = dir.join("cursor");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Config(format!(
                "spool cursor {} is unreadable ({e}); move it aside to re-deliver from the oldest segment",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pos::default()),
        Err(e) => Err(Error::io("reading", path.display())(e)),
    }
}

/// The shipper's side: reads committed records from the cursor on.
pub struct Reader {
    dir: PathBuf,
    pos: Pos,
    file: Option<Open>,
    shared: Arc<Shared>,
}

/// The segment being read, where, and its size once it is closed (a
/// closed segment no longer grows: its size is read once, not per record).
struct Open {
    segment: u64,
    reader: BufReader<File>,
    at: u64,
    closed_size: Option<u64>,
}

/// A batch read from the spool, delivered with `Reader::commit`.
pub struct Batch {
    pub events: Vec<Event>,
    pub end: Pos,
    bytes: u64,
}

impl Reader {
    pub(super) fn open(dir: &Path, shared: Arc<Shared>) -> Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            pos: read_cursor(dir)?,
            file: None,
            shared,
        })
    }

    /// Waits until there may be something new to read.
    pub async fn wait(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.shared.new_data.notified()).await;
    }

    /// Up to `max` committed events from the cursor on (none: caught up).
    pub fn read(&mut self, max: usize) -> Result<Batch> {
        let mut events = Vec::with_capacity(max.min(1 << 16));
        let mut pos = self.pos;
        let mut bytes = 0u64;
        let mut committed = *self.shared.committed.lock();
        while events.len() < max {
            if pos >= committed {
                // More may have been synced since this read began.
                committed = *self.shared.committed.lock();
                if pos >= committed {
                    break;
                }
            }
            let reopen =
                !matches!(&self.file, Some(o) if o.segment == pos.segment && o.at == pos.offset);
            if reopen {
                let path = segment_path(&self.dir, pos.segment);
                let mut f = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // A segment that never was (the cursor was at the
                        // start of a fresh spool): move on.
                        pos = Pos {
                            segment: pos.segment + 1,
                            offset: 0,
                        };
                        continue;
                    }
                    Err(e) => return Err(Error::io("opening", path.display())(e)),
                };
                f.seek(SeekFrom::Start(pos.offset))
                    .map_err(Error::io("reading", path.display()))?;
                self.file = Some(Open {
                    segment: pos.segment,
                    reader: BufReader::with_capacity(1 << 20, f),
                    at: pos.offset,
                    closed_size: None,
                });
            }
            let o = self.file.as_mut().expect("opened above");
            let size = if pos.segment == committed.segment {
                committed.offset
            } else {
                match o.closed_size {
                    Some(n) => n,
                    None => {
                        let n = o.reader.get_ref().metadata().map_err(Error::io(
                            "reading",
                            segment_path(&self.dir, pos.segment).display(),
                        ))?;
                        *o.closed_size.insert(n.len())
                    }
                }
            };
            let next = read_record(&mut o.reader, size.saturating_sub(o.at));
            let next = next.map_err(|e| {
                Error::io("reading", segment_path(&self.dir, pos.segment).display())(e)
            })?;
            match next {
                Next::Record(e, len) => {
                    o.at += len;
                    pos.offset += len;
                    bytes += len;
                    events.push(*e);
                }
                Next::End if pos.segment < committed.segment => {
                    pos = Pos {
                        segment: pos.segment + 1,
                        offset: 0,
                    };
                }
                Next::End => break,
                Next::Corrupt(why) => {
                    let path = segment_path(&self.dir, pos.segment);
                    // Synced data that no longer reads back: keep the file
                    // for inspection and carry on with the next segment.
                    tracing::error!(
                        segment = %path.display(),
                        offset = pos.offset,
                        "spool: corrupt record ({why}); the rest of this segment is skipped and kept as .corrupt"
                    );
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                    self.file = None;
                    pos = Pos {
                        segment: pos.segment + 1,
                        offset: 0,
                    };
                }
            }
        }
        Ok(Batch {
            events,
            end: pos,
            bytes,
        })
    }

    /// Moves past `batch` without recording it (a read-only look at what
    /// is pending).
    pub fn skip(&mut self, batch: &Batch) {
        self.pos = batch.end;
    }

    /// Records `batch` as delivered: the cursor moves past it durably and
    /// fully delivered segments but the newest are removed.
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        let path = self.dir.join("cursor");
        let tmp = self.dir.join("cursor.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&batch.end).expect("a position serialises"))?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(Error::io("writing", path.display()))?;
        self.pos = batch.end;
        let s = &self.shared;
        s.shipped
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        s.bytes_pending
            .fetch_sub(batch.bytes as i64, Ordering::Relaxed);
        // The oldest pending event is now the next one; peek at it cheaply
        // by taking the newest delivered receive time as a lower bound.
        let next_oldest = if s.appended.load(Ordering::Relaxed) <= s.shipped.load(Ordering::Relaxed)
        {
            0
        } else {
            batch.events.last().map_or(0, |e| e.received)
        };
        s.oldest_pending.store(next_oldest, Ordering::Relaxed);
        // Fully delivered segments go, except the newest of them (at most
        // 64 MiB): after a restart its ids, with the rest of the spool's,
        // seed the recent-id filter (`Spool::recent`), so that a client
        // re-sending a batch whose 202 a crash swallowed is not counted
        // twice — the store no longer checks ids it has not been sent.
        for seg in segments(&self.dir)? {
            if seg + 1 < batch.end.segment {
                let p = segment_path(&self.dir, seg);
                fs::remove_file(&p).map_err(Error::io("removing", p.display()))?;
            }
        }
        Ok(())
    }
}
