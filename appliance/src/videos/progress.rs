//! Progress bars for long CLI work: one bar per rung, fed by the engine's
//! progress events. Hidden when stderr is not a terminal.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use media::ProgressEvent;

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new(hidden: bool) -> Self {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub fn on_event(&self, event: &ProgressEvent) {
        let mut bars = self.bars.lock().expect("progress lock");
        match event {
            ProgressEvent::Started {
                rungs, placement, ..
            } => {
                let _ = self.multi.println(format!("transcoding on {placement}"));
                let style = ProgressStyle::with_template(
                    "{prefix:>7} [{bar:40.cyan/blue}] {pos:>3}% {elapsed}",
                )
                .expect("valid template")
                .progress_chars("=> ");
                for r in rungs {
                    let bar = self.multi.add(ProgressBar::new(100));
                    bar.set_style(style.clone());
                    bar.set_prefix(r.clone());
                    bars.insert(r.clone(), bar);
                }
            }
            ProgressEvent::Rung { rung, percent } => {
                if let Some(b) = bars.get(rung) {
                    b.set_position(u64::from(*percent));
                }
            }
            ProgressEvent::Playable { rungs, .. } => {
                let names: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
                let _ = self
                    .multi
                    .println(format!("playable: {}", names.join(", ")));
            }
            ProgressEvent::AudioFingerprint { fingerprint } => {
                let _ = self.multi.println(format!(
                    "audio fingerprinted: {} items ({:.1} s)",
                    fingerprint.items.len(),
                    fingerprint.duration_ms as f64 / 1000.0
                ));
            }
            ProgressEvent::Packaging => {
                let _ = self.multi.println("packaging");
            }
            ProgressEvent::Completed => {
                for b in bars.values() {
                    b.finish();
                }
            }
        }
    }

    pub fn finish(&self) {
        for b in self.bars.lock().expect("progress lock").values() {
            b.abandon();
        }
    }
}
