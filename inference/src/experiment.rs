//! A/B experiments between two rankers, and the impressions that let both
//! the experiment report and the ranker's training see what each viewer
//! was shown.
//!
//! Assignment is deterministic: a viewer's variant is a hash of the
//! experiment's name and the viewer's id, so every page, every restart and
//! every process (the server, the report, a recount) agrees on it without
//! storing anything, and renaming the experiment reshuffles viewers.

use std::sync::Arc;

use crate::rank::Ranker;

/// Which ranker a viewer's feed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The current ranker (everyone, when no experiment runs).
    Control,
    /// The ranker under test.
    Candidate,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Candidate => "candidate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "control" => Some(Self::Control),
            "candidate" => Some(Self::Candidate),
            _ => None,
        }
    }
}

/// A running experiment: `share` of viewers get `candidate`.
pub struct Experiment {
    pub name: String,
    pub share: f32,
    pub candidate: Arc<Ranker>,
}

impl Experiment {
    pub fn variant_of(&self, user: &str) -> Variant {
        assign(&self.name, user, self.share)
    }
}

/// The variant of `user` in experiment `name` with `share` of viewers on
/// the candidate (clamped to 0..1). Stable across processes and releases:
/// FNV-1a of name, NUL, viewer, then MurmurHash3's 64-bit finaliser (plain
/// FNV's high bits are lopsided for ids that differ only in their last
/// characters: `user1`, `user2`, …), not the standard library's hasher,
/// whose output may change.
pub fn assign(name: &str, user: &str, share: f32) -> Variant {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0u8]).chain(user.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // The top 24 bits as a fraction in [0, 1).
    let x = (h >> 40) as f32 / (1u64 << 24) as f32;
    if x < share.clamp(0.0, 1.0) {
        Variant::Candidate
    } else {
        Variant::Control
    }
}

/// One video shown on a feed page: who saw it, where, from which source
/// and ranker. Training takes shown-and-skipped videos as negatives,
/// weighted by how likely their position was to be looked at.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Impression {
    pub user: String,
    pub video: String,
    /// 0-based position in the viewer's session (page after page).
    pub position: u32,
    /// Unix seconds.
    pub ts: i64,
    pub variant: Variant,
}

/// How likely a viewer looked at position `p` (0-based): the DCG discount,
/// 1 / log2(p + 2), the usual examination model for a ranked list.
pub fn examination(position: u32) -> f32 {
    1.0 / (f64::from(position) + 2.0).log2() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_stable_and_near_the_share() {
        let n = 10_000;
        let cand = (0..n)
            .filter(|i| assign("exp1", &format!("user{i}"), 0.3) == Variant::Candidate)
            .count();
        assert!((2_700..3_300).contains(&cand), "{cand}");
        assert_eq!(assign("exp1", "alice", 0.5), assign("exp1", "alice", 0.5));
        assert_eq!(assign("exp1", "alice", 0.0), Variant::Control);
        assert_eq!(assign("exp1", "alice", 1.0), Variant::Candidate);
        // Another experiment reshuffles: not everyone keeps their side.
        let moved = (0..1000)
            .filter(|i| {
                let u = format!("user{i}");
                assign("a", &u, 0.5) != assign("b", &u, 0.5)
            })
            .count();
        assert!(moved > 300, "{moved}");
    }

    #[test]
    fn examination_falls_with_position() {
        assert!((examination(0) - 1.0).abs() < 1e-6);
        assert!(examination(1) < examination(0));
        assert!(examination(9) > 0.2);
    }
}
