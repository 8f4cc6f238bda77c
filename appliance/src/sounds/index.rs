//! The in-memory index over fingerprints: which entries (sounds, or
//! reference tracks) share sound with a query, and at what offset, in
//! milliseconds at a million entries.
//!
//! An inverted index from *reduced* items to postings. An item's top
//! [`KEY_BITS`] bits are its key (the first classifiers' outputs; the
//! matcher aligns on the top 12 bits the same way): a re-encode, a volume
//! change or a small shift flips some low bits of most items but leaves
//! many keys whole. Each entry posts only every `stride`-th item of its
//! first [`MAX_INDEXED_ITEMS`] (about 60 s) — `stride` chosen so every
//! entry posts about [`POSTINGS_PER_ENTRY`] items — while a query looks up
//! *every* one of its items: whatever the shift, each posted item of the
//! entry lines up with some item of the query, so sparse posting loses no
//! alignment, only votes. A posting is 6 bytes (entry number, item
//! position), so a million 30–60 s fingerprints take ~400 MB here instead
//! of the ~2 GB of their items; the full fingerprints stay in the catalog
//! and only the few best candidates are read back for verification.
//!
//! A query votes for (entry, position in entry − position in query) for
//! every key it shares; an alignment's score is its votes plus those of
//! the two neighbouring offsets (a shift that is not a whole number of
//! items splits the votes). Keys so common that their bucket is far above
//! the average (silence, steady tones) are skipped like stop words.

/// Bits of an item that make its key.
pub const KEY_BITS: u32 = 20;
/// Items of an entry that are indexed at most (≈ 60 s at 0.1238 s/item).
pub const MAX_INDEXED_ITEMS: usize = 485;
/// Postings each entry aims at (fewer for entries shorter than that).
pub const POSTINGS_PER_ENTRY: usize = 60;
/// Votes an alignment needs to be a candidate.
pub const MIN_VOTES: u32 = 3;

#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Posting {
    entry: u32,
    at: u16,
}

/// An entry that shares sound with the query: `offset` is (item index in
/// the entry) − (item index in the query) of the best alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub entry: u32,
    pub offset: i32,
    pub votes: u32,
}

pub struct Index {
    buckets: Vec<Vec<Posting>>,
    postings: usize,
    entries: u32,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

fn key(item: u32) -> usize {
    (item >> (32 - KEY_BITS)) as usize
}

/// How far apart an entry of `len` items posts its items.
fn stride(len: usize) -> usize {
    (len.min(MAX_INDEXED_ITEMS) / POSTINGS_PER_ENTRY).max(1)
}

impl Index {
    pub fn new() -> Self {
        Self {
            buckets: (0..1usize << KEY_BITS).map(|_| Vec::new()).collect(),
            postings: 0,
            entries: 0,
        }
    }

    /// Adds an entry; its number is the count of entries before it.
    pub fn insert(&mut self, items: &[u32]) -> u32 {
        let entry = self.entries;
        self.entries += 1;
        let indexed = &items[..items.len().min(MAX_INDEXED_ITEMS)];
        for (at, &item) in indexed.iter().enumerate().step_by(stride(items.len())) {
            self.buckets[key(item)].push(Posting {
                entry,
                at: at as u16,
            });
            self.postings += 1;
        }
        entry
    }

    /// Frees the slack of the buckets (after a bulk load).
    pub fn shrink(&mut self) {
        for b in &mut self.buckets {
            b.shrink_to_fit();
        }
    }

    /// Bytes the index holds (buckets and postings, by capacity).
    pub fn memory_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Vec<Posting>>()
            + self
                .buckets
                .iter()
                .map(|b| b.capacity() * std::mem::size_of::<Posting>())
                .sum::<usize>()
    }

    /// A bucket longer than this is a stop key.
    fn stop_len(&self) -> usize {
        let mean = self.postings >> KEY_BITS;
        (mean * 64).max(4096)
    }

    /// The `max` best-supported alignments with at least [`MIN_VOTES`],
    /// most votes first (one per entry).
    pub fn candidates(&self, query: &[u32], max: usize) -> Vec<Candidate> {
        let stop = self.stop_len();
        // (entry, offset) packed so a sort groups them.
        let mut votes: Vec<u64> = Vec::new();
        for (q, &item) in query.iter().enumerate() {
            let bucket = &self.buckets[key(item)];
            if bucket.len() > stop {
                continue;
            }
            for p in bucket {
                let (entry, at) = (p.entry, p.at);
                let offset = i64::from(at) - q as i64 + (1 << 31);
                votes.push((u64::from(entry) << 32) | offset as u64);
            }
        }
        votes.sort_unstable();
        // Runs of equal (entry, offset) → counts.
        let mut runs: Vec<(u64, u32)> = Vec::new();
        for v in votes {
            match runs.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => runs.push((v, 1)),
            }
        }
        let mut best: Vec<Candidate> = Vec::new();
        for (i, &(v, n)) in runs.iter().enumerate() {
            let near = |j: Option<usize>, want: u64| {
                j.and_then(|j| runs.get(j))
                    .filter(|r| r.0 == want)
                    .map_or(0, |r| r.1)
            };
            let score = n + near(i.checked_sub(1), v.wrapping_sub(1)) + near(Some(i + 1), v + 1);
            if score < MIN_VOTES {
                continue;
            }
            let entry = (v >> 32) as u32;
            let offset = ((v & 0xffff_ffff) as i64 - (1 << 31)) as i32;
            match best.last_mut() {
                Some(b) if b.entry == entry => {
                    if score > b.votes {
                        *b = Candidate {
                            entry,
                            offset,
                            votes: score,
                        };
                    }
                }
                _ => best.push(Candidate {
                    entry,
                    offset,
                    votes: score,
                }),
            }
        }
        best.sort_unstable_by(|a, b| b.votes.cmp(&a.votes).then(a.entry.cmp(&b.entry)));
        best.truncate(max);
        best
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Items with the slow drift of real fingerprints: each item flips a
    /// few bits of the one before.
    pub fn walk(seed: u64, len: usize) -> Vec<u32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut item = next() as u32;
        (0..len)
            .map(|_| {
                for _ in 0..3 {
                    item ^= 1 << (next() % 32);
                }
                item
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::walk;
    use super::*;

    #[test]
    fn a_shifted_and_noisy_excerpt_finds_its_entry_and_offset() {
        let mut index = Index::new();
        for seed in 0..2000 {
            index.insert(&walk(seed, 240 + (seed as usize % 240)));
        }
        let target = walk(777, 240 + 777 % 240);
        // 40 items in, 150 long, a low bit flipped in every third item.
        let query: Vec<u32> = target[40..190]
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 3 == 0 { x ^ 0x10 } else { x })
            .collect();
        let found = index.candidates(&query, 5);
        assert_eq!(found[0].entry, 777, "{found:?}");
        assert_eq!(found[0].offset, 40);
        assert!(found[0].votes >= 10, "{found:?}");
        // The runner-up is far behind.
        assert!(found.get(1).is_none_or(|c| c.votes * 3 < found[0].votes));
    }

    #[test]
    fn an_unrelated_query_finds_nothing() {
        let mut index = Index::new();
        for seed in 0..2000 {
            index.insert(&walk(seed, 300));
        }
        assert!(index.candidates(&walk(99_999, 300), 5).is_empty());
        assert!(Index::new().candidates(&walk(1, 50), 5).is_empty());
    }

    #[test]
    fn long_entries_post_about_sixty_items_and_short_ones_all() {
        let mut index = Index::new();
        index.insert(&walk(1, 4800));
        assert!((55..=70).contains(&index.postings), "{}", index.postings);
        index.insert(&walk(2, 30));
        assert!((85..=100).contains(&index.postings), "{}", index.postings);
        assert_eq!(index.entries, 2);
        assert_eq!(std::mem::size_of::<Posting>(), 6);
    }

    #[test]
    fn stop_keys_are_skipped() {
        let mut index = Index::new();
        // A steady tone: the same item over and over, in many entries.
        for _ in 0..100 {
            index.insert(&[0xABCD_0000; 485]);
        }
        // 100 × 60 postings in one bucket, above the 4096 floor.
        assert!(index.candidates(&[0xABCD_0000; 100], 5).is_empty());
    }
}
