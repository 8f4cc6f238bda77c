//! How hits are ordered and paged: every hit has a [`Key`] (a primary
//! score, a secondary count, and a unique `seq` that breaks the last
//! ties), the [`Ranked`] collector keeps the best `limit` of the hits
//! strictly after a cursor's key, and a cursor is that key, encoded. Paging
//! by key rather than by offset means a page never repeats a hit of the
//! one before, however deep, as long as the hits' keys have not changed in
//! between; and it costs the same on page 50 as on page 1.
//!
//! Also the text rules the index and its queries share ([`words`],
//! [`prefixes`]), so that what is indexed and what is looked up are cut
//! the same way.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use super::index::{FIELD_POP, FIELD_SEQ, FIELD_TREND};
use super::Kind;

/// Where a hit ranks: higher `primary` first, then higher `secondary`,
/// then lower `seq` (unique per document: a user's or sound's catalog
/// rowid, a hashtag's hash), so the order is total and the same on every
/// call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    pub primary: f64,
    pub secondary: u64,
    pub seq: u64,
}

impl Key {
    /// `Less` when `self` ranks before `other`.
    pub fn order(&self, other: &Key) -> Ordering {
        other
            .primary
            .total_cmp(&self.primary)
            .then(other.secondary.cmp(&self.secondary))
            .then(self.seq.cmp(&other.seq))
    }

    /// The key of a document of `kind` with text score `score`.
    pub fn of(kind: Kind, score: Score, pop: u64, trend: f64, seq: u64) -> Key {
        Key {
            primary: Self::primary_of(kind, score, pop, trend),
            secondary: match kind {
                Kind::Users => 0,
                Kind::Sounds | Kind::Hashtags => pop,
            },
            seq,
        }
    }

    /// The first thing a hit is ranked by; what the collector compares
    /// before it reads anything else of a document.
    pub fn primary_of(kind: Kind, score: Score, pop: u64, trend: f64) -> f64 {
        match kind {
            // Followers, then registration order.
            Kind::Users => pop as f64,
            // Relevance and use multiply: a title that matches better
            // wins among equally used sounds, and a sound used 100× more
            // wins over a slightly better match (the log keeps a hit from
            // burying every other match). A prefix-only query scores 0,
            // so it ranks by use alone.
            Kind::Sounds => (1.0 + f64::from(score)) * (std::f64::consts::E + pop as f64).ln(),
            // The last trending score, then videos carrying the tag.
            Kind::Hashtags => trend,
        }
    }

    /// The cursor of the page after this key.
    pub fn cursor(&self, kind: Kind) -> String {
        format!(
            "{}{:x}-{:x}-{:x}",
            kind.letter(),
            self.primary.to_bits(),
            self.secondary,
            self.seq
        )
    }

    /// A cursor [`Key::cursor`] made for `kind`; anything else is refused.
    pub fn parse_cursor(kind: Kind, cursor: &str) -> Option<Key> {
        let rest = cursor.strip_prefix(kind.letter())?;
        let mut parts = rest.split('-');
        let mut hex = || -> Option<u64> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(p, 16).ok()
        };
        let key = Key {
            primary: f64::from_bits(hex()?),
            secondary: hex()?,
            seq: hex()?,
        };
        (parts.next().is_none() && !key.primary.is_nan()).then_some(key)
    }
}

/// Collects the best `limit` hits ranked strictly after `after`.
pub struct Ranked {
    pub kind: Kind,
    pub limit: usize,
    pub after: Option<Key>,
}

/// A hit of one segment, ordered worst first (the heap's top is the hit
/// to drop when a better one comes).
struct Entry(Key, DocId);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.order(&other.0)
    }
}

pub struct RankedSegment {
    kind: Kind,
    segment: SegmentOrdinal,
    limit: usize,
    after: Option<Key>,
    pop: Arc<dyn ColumnValues<u64>>,
    trend: Arc<dyn ColumnValues<f64>>,
    seq: Arc<dyn ColumnValues<u64>>,
    best: BinaryHeap<Entry>,
}

impl Collector for Ranked {
    type Fruit = Vec<(Key, DocAddress)>;
    type Child = RankedSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<RankedSegment> {
        let fast = reader.fast_fields();
        Ok(RankedSegment {
            kind: self.kind,
            segment,
            limit: self.limit,
            after: self.after,
            pop: fast.column_first_or_default::<u64>(FIELD_POP)?,
            trend: fast.column_first_or_default::<f64>(FIELD_TREND)?,
            seq: fast.column_first_or_default::<u64>(FIELD_SEQ)?,
            best: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        // Only sounds rank by text relevance.
        self.kind == Kind::Sounds
    }

    fn merge_fruits(
        &self,
        fruits: Vec<Vec<(Key, DocAddress)>>,
    ) -> tantivy::Result<Vec<(Key, DocAddress)>> {
        let mut all: Vec<(Key, DocAddress)> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| a.0.order(&b.0));
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for RankedSegment {
    type Fruit = Vec<(Key, DocAddress)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.limit == 0 {
            return;
        }
        // A short prefix matches a large share of the index: most hits
        // are dropped on their primary alone, before the other columns
        // are read (a strictly lower primary than the worst kept hit, or
        // a strictly higher one than the cursor's, cannot be on the page).
        let pop = self.pop.get_val(doc);
        let trend = match self.kind {
            Kind::Hashtags => self.trend.get_val(doc),
            Kind::Users | Kind::Sounds => 0.0,
        };
        let primary = Key::primary_of(self.kind, score, pop, trend);
        if self.best.len() >= self.limit
            && self
                .best
                .peek()
                .is_some_and(|worst| primary < worst.0.primary)
        {
            return;
        }
        if self.after.is_some_and(|after| primary > after.primary) {
            return;
        }
        let key = Key::of(self.kind, score, pop, trend, self.seq.get_val(doc));
        if self
            .after
            .is_some_and(|after| key.order(&after) != Ordering::Greater)
        {
            return;
        }
        if self.best.len() < self.limit {
            self.best.push(Entry(key, doc));
        } else if self
            .best
            .peek()
            .is_some_and(|worst| key.order(&worst.0) == Ordering::Less)
        {
            self.best.pop();
            self.best.push(Entry(key, doc));
        }
    }

    fn harvest(self) -> Vec<(Key, DocAddress)> {
        let segment = self.segment;
        self.best
            .into_iter()
            .map(|Entry(key, doc)| (key, DocAddress::new(segment, doc)))
            .collect()
    }
}

/// The words of a text as the index cuts them (tantivy's default
/// tokenizer: runs of letters and digits, lowercased), so a query's words
/// meet the indexed ones.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Every prefix of `word` of 1 to `max` characters (`word` lowercased
/// already): what a prefix lookup finds as one term instead of a walk
/// over the dictionary.
pub fn prefixes(word: &str, max: usize, out: &mut Vec<String>) {
    let mut end = 0;
    for (n, c) in word.chars().enumerate() {
        if n == max {
            break;
        }
        end += c.len_utf8();
        out.push(word[..end].to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_primary_then_secondary_then_seq() {
        let k = |p: f64, s: u64, q: u64| Key {
            primary: p,
            secondary: s,
            seq: q,
        };
        let mut keys = vec![k(1.0, 5, 3), k(2.0, 0, 9), k(1.0, 5, 1), k(1.0, 7, 8)];
        keys.sort_by(|a, b| a.order(b));
        assert_eq!(
            keys,
            vec![k(2.0, 0, 9), k(1.0, 7, 8), k(1.0, 5, 1), k(1.0, 5, 3)]
        );
    }

    #[test]
    fn cursors_round_trip_per_kind_and_refuse_anything_else() {
        let key = Key {
            primary: 12.5,
            secondary: 3,
            seq: 99,
        };
        let c = key.cursor(Kind::Sounds);
        assert_eq!(Key::parse_cursor(Kind::Sounds, &c), Some(key));
        // A cursor is for the kind that made it.
        assert_eq!(Key::parse_cursor(Kind::Users, &c), None);
        for bad in [
            "",
            "s",
            "s1-2",
            "s1-2-3-4",
            "s1--3",
            "sz-1-1",
            "s11111111111111111-1-1",
            "o40",
            &format!("s{:x}-1-1", f64::NAN.to_bits()),
        ] {
            assert_eq!(Key::parse_cursor(Kind::Sounds, bad), None, "{bad}");
        }
    }

    #[test]
    fn sounds_weigh_relevance_and_use() {
        let better_match = Key::of(Kind::Sounds, 2.0, 10, 0.0, 1);
        let worse_match = Key::of(Kind::Sounds, 1.0, 10, 0.0, 2);
        assert_eq!(better_match.order(&worse_match), Ordering::Less);
        let much_more_used = Key::of(Kind::Sounds, 1.0, 1000, 0.0, 3);
        assert_eq!(much_more_used.order(&better_match), Ordering::Less);
    }

    #[test]
    fn words_and_prefixes_cut_like_the_index() {
        assert_eq!(
            words("Lo-Fi  beats, Vol.2!"),
            ["lo", "fi", "beats", "vol", "2"]
        );
        assert!(words(" !! ").is_empty());
        let mut out = Vec::new();
        prefixes("café", 3, &mut out);
        assert_eq!(out, ["c", "ca", "caf"]);
        out.clear();
        prefixes("ü", 8, &mut out);
        assert_eq!(out, ["ü"]);
    }
}
