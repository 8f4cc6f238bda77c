//! What was wrong with an input that the pipeline worked around, so it can
//! be published with the ladder (phone uploads are often damaged; a service
//! publishes what is decodable and says what it repaired).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Repairs {
    /// Video packets or frames the decoder could not decode (dropped; the
    /// decoder's error concealment covers what it can).
    pub video: AtomicU64,
    /// Audio packets dropped as undecodable (the gap is filled with silence).
    pub audio: AtomicU64,
    /// The container ended early (truncated or damaged tail).
    pub ended_early: AtomicBool,
}

impl Repairs {
    /// One sentence per repair, empty for a clean input.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.ended_early.load(Ordering::Relaxed) {
            out.push(
                "the file ends early (truncated or damaged); published up to its last decodable frame"
                    .to_owned(),
            );
        }
        match self.video.load(Ordering::Relaxed) {
            0 => {}
            n => out.push(format!(
                "{n} damaged video packet(s) or frame(s) dropped; the decoder concealed the rest"
            )),
        }
        match self.audio.load(Ordering::Relaxed) {
            0 => {}
            n => out.push(format!(
                "{n} damaged audio packet(s) dropped; the gaps are silent"
            )),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_input_has_no_repairs_and_each_kind_is_said_once() {
        let r = Repairs::default();
        assert!(r.describe().is_empty());
        r.video.fetch_add(3, Ordering::Relaxed);
        r.audio.fetch_add(1, Ordering::Relaxed);
        r.ended_early.store(true, Ordering::Relaxed);
        let d = r.describe();
        assert_eq!(d.len(), 3);
        assert!(d[0].contains("ends early") && d[1].starts_with("3 ") && d[2].starts_with("1 "));
    }
}
