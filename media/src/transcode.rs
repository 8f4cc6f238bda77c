//! The job: probe → plan → the first playable rung → the rest of the ladder
//! → package. When the source can be the top rung as it is (`remux`), that
//! rung and the audio are copied first (seconds) and one decode then feeds
//! the lower rungs; otherwise a first decode makes the lowest rung and the
//! audio, and a second one the others. Each time the ladder can play one
//! more rung, [`ProgressEvent::Playable`] says so (the caller may publish
//! what is in the staging directory then). The output as a whole is staged
//! next to the destination and moved into place only when complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use hardware::{BackendRequest, Inventory, Placement, Reservation, Workload};

use crate::backend::{EncoderSettings, Stages};
use crate::encode_pass::{self, Pass};
use crate::error::{MediaError, Result};
use crate::package::Ladder;
use crate::plan::LadderPlan;
use crate::playlist;
use crate::probe::{probe, Limits, SourceInfo};
use crate::remux::{self, Remux};
use crate::thumbnail::POSTER;

#[derive(Debug, Clone)]
pub struct TranscodeOptions {
    pub backend: BackendRequest,
    /// Rung heights to produce (subset of the standard ladder; empty = all).
    pub rungs: Vec<u32>,
    pub limits: Limits,
    pub encoder: EncoderSettings,
    /// Set from another thread to stop the job: it ends with
    /// `MediaError::Cancelled` and leaves nothing behind.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Whether a source that qualifies becomes the top rung as it is
    /// (`remux`); off, every rung is encoded.
    pub remux_source: bool,
    /// For a source that is not remuxed: encode the lowest rung (and the
    /// audio) in a pass of its own first, so the video plays sooner, at the
    /// cost of decoding the source twice; off, one pass makes every rung.
    pub early_rung: bool,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            backend: BackendRequest::Auto,
            rungs: Vec::new(),
            limits: Limits::default(),
            encoder: EncoderSettings::default(),
            cancel: None,
            remux_source: true,
            early_rung: true,
        }
    }
}

/// Progress of a job, in the order it happens. Rung percentages only rise.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    Started {
        rungs: Vec<String>,
        expected_frames: u64,
        placement: String,
    },
    Rung {
        rung: String,
        percent: u8,
    },
    /// The ladder in `dir` (the staging directory) can now play `rungs`
    /// (their `playlist` paths are in `dir`): their files and the audio are
    /// complete, and `master` (also written to `dir/master.m3u8`) lists
    /// exactly them. Sent once per new rung, in
    /// order, while the job waits: a caller publishing the files copies
    /// them before returning.
    Playable {
        dir: PathBuf,
        rungs: Vec<RenditionSummary>,
        /// The audio track's folder in `dir`, when there is audio.
        audio: Option<String>,
        master: String,
        /// The whole ladder's top rung (width, height), as it will be.
        size: (u32, u32),
    },
    /// The fingerprint of the audio, from the decode that made (or, for a
    /// copied track, checked) it. Sent once, before the first `Playable`,
    /// when the source has audio that decodes: a caller that must vet the
    /// sound before serving it (the copyright check) does so here, while
    /// the job waits, and can still stop it before anything is playable.
    AudioFingerprint {
        fingerprint: crate::fingerprint::AudioFingerprint,
    },
    Packaging,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenditionSummary {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub segments: usize,
    pub duration_secs: f64,
    pub playlist: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct LadderOutput {
    pub dir: PathBuf,
    pub master: PathBuf,
    pub poster: PathBuf,
    pub source: SourceInfo,
    pub plan: LadderPlan,
    pub placement: Placement,
    pub frames: u64,
    pub renditions: Vec<RenditionSummary>,
    pub audio: Option<PathBuf>,
    /// The fingerprint of the audio (`None` without audio), also told by
    /// [`ProgressEvent::AudioFingerprint`] before the first `Playable`.
    #[serde(skip)]
    pub fingerprint: Option<crate::fingerprint::AudioFingerprint>,
    /// What was wrong with the input and worked around (dropped damaged
    /// packets, a truncated tail); empty for a clean input.
    pub repairs: Vec<String>,
}

/// Transcodes `input` into an HLS ladder in `out_dir`. `out_dir` must be
/// absent, empty, or hold an earlier ladder (which is replaced).
pub fn transcode(
    input: &Path,
    out_dir: &Path,
    opts: &TranscodeOptions,
    inventory: &Inventory,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> Result<LadderOutput> {
    crate::init();
    let source = probe(input, &opts.limits)?;
    let mut plan = LadderPlan::new(&source, &opts.rungs)?;
    let scanned = if opts.remux_source {
        remux::scan(&source, &plan)
    } else {
        Err("remuxing is off".into())
    };
    let remux = match scanned {
        Ok(r) => {
            plan.follow_source(r.key_frames.clone());
            Some(r)
        }
        Err(why) => {
            tracing::info!(input = %input.display(), "encoding every rung (the source cannot be one: {why})");
            None
        }
    };
    check_destination(out_dir)?;
    let reservation = inventory.reserve(opts.backend, &workload(&source, &plan))?;
    let staging = staging_dir(out_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| MediaError::io("clearing", &staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| MediaError::io("creating", &staging, e))?;
    let job = Job {
        source: &source,
        plan: &plan,
        staging: &staging,
        opts,
        progress,
    };
    match job.build(remux.as_ref(), reservation, out_dir) {
        Ok(out) => {
            publish(&staging, out_dir)?;
            progress(ProgressEvent::Completed);
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

struct Job<'a> {
    source: &'a SourceInfo,
    plan: &'a LadderPlan,
    staging: &'a Path,
    opts: &'a TranscodeOptions,
    progress: &'a (dyn Fn(ProgressEvent) + Sync),
}

impl Job<'_> {
    fn build(
        &self,
        remux: Option<&Remux>,
        reservation: Reservation,
        out_dir: &Path,
    ) -> Result<LadderOutput> {
        let plan = self.plan;
        let mut placement = reservation.placement;
        // Held for the whole job, unless a GPU failure moves it to the CPU.
        let mut reservation = Some(reservation);
        (self.progress)(ProgressEvent::Started {
            rungs: plan.rungs.iter().map(|r| r.name.clone()).collect(),
            expected_frames: plan.expected_frames,
            placement: placement.to_string(),
        });
        let ladder = Ladder::new(self.staging, plan, self.progress);
        let all: Vec<usize> = (0..plan.rungs.len()).collect();
        let has_audio = plan.audio.is_some();
        let mut repairs = RepairNotes::new();
        let fingerprinted: Option<crate::fingerprint::AudioFingerprint>;
        let frames = match remux {
            Some(r) => {
                // First playable: the source's own video and audio, copied
                // (the copied audio decoded beside the copy, once, for its
                // fingerprint, told before anything is playable).
                let copied =
                    remux::run(self.source, plan, r, self.staging, self.opts, self.progress)?;
                fingerprinted = copied.fingerprint.clone();
                if let Some(fingerprint) = copied.fingerprint {
                    (self.progress)(ProgressEvent::AudioFingerprint { fingerprint });
                }
                repairs.add(copied.repairs);
                ladder.set_audio(copied.audio)?;
                ladder.add_rung(0, copied.video)?;
                // Then one decode for the lower rungs (none: it only checks
                // the source); the audio was decoded with the copy already.
                let pass = Pass {
                    rungs: &all[1..],
                    suffix: "",
                    audio: None,
                };
                let out = self.pass(&pass, &ladder, &mut placement, &mut reservation)?;
                repairs.add(out.repairs);
                if !repairs.is_empty() {
                    // Damaged: what was copied (a copy carries any damage of
                    // the source as it is) is replaced by encodes, in new
                    // folders (what was served stays as it was).
                    tracing::warn!(input = %self.source.path.display(), repairs = ?repairs.0, "the source is damaged: its copied rung and audio are replaced by encodes");
                    let top = Pass {
                        rungs: &all[..1],
                        suffix: REPLACED,
                        audio: has_audio.then_some(REPLACED_AUDIO),
                    };
                    let again = self.pass(&top, &ladder, &mut placement, &mut reservation)?;
                    if again.audio.is_some() {
                        ladder.set_audio(again.audio)?;
                    }
                    repairs.add(again.repairs);
                }
                out.frames
            }
            None => {
                // First playable: the lowest rung and the audio; then the rest
                // (or every rung in one pass).
                let (low, rest) = match all.split_last() {
                    Some((low, rest)) if self.opts.early_rung => (std::slice::from_ref(low), rest),
                    _ => (&all[..], &[][..]),
                };
                let first = Pass {
                    rungs: low,
                    suffix: "",
                    audio: has_audio.then_some(playlist::AUDIO_DIR),
                };
                let out = self.pass(&first, &ladder, &mut placement, &mut reservation)?;
                fingerprinted = out.fingerprint.clone();
                if let Some(fingerprint) = out.fingerprint {
                    (self.progress)(ProgressEvent::AudioFingerprint { fingerprint });
                }
                ladder.set_audio(out.audio)?;
                repairs.add(out.repairs);
                if !rest.is_empty() {
                    let second = Pass {
                        rungs: rest,
                        suffix: "",
                        audio: None,
                    };
                    let more = self.pass(&second, &ladder, &mut placement, &mut reservation)?;
                    repairs.add(more.repairs);
                }
                out.frames
            }
        };
        let repairs = repairs.0;
        (self.progress)(ProgressEvent::Packaging);
        let finished = ladder.finish(out_dir)?;
        // Poster, storyboard and MP4 download, from the finished ladder.
        crate::extras::write_all(self.staging)?;
        Ok(LadderOutput {
            dir: out_dir.to_owned(),
            master: out_dir.join(playlist::MASTER),
            poster: out_dir.join(POSTER),
            source: self.source.clone(),
            plan: plan.clone(),
            placement,
            frames,
            renditions: finished.renditions,
            audio: finished.audio,
            fingerprint: fingerprinted,
            repairs,
        })
    }

    /// One decode pass on the job's placement; a GPU failure (not a refusal
    /// of the input) reruns on the CPU what the pass had not finished, and
    /// gives the GPU reservation back.
    fn pass(
        &self,
        pass: &Pass<'_>,
        ladder: &Ladder<'_>,
        placement: &mut Placement,
        reservation: &mut Option<Reservation>,
    ) -> Result<encode_pass::PassOutput> {
        let run = |pass: &Pass<'_>, placement: Placement| {
            Stages::for_placement(placement).and_then(|stages| {
                encode_pass::run(
                    self.source,
                    self.plan,
                    pass,
                    ladder,
                    self.staging,
                    &stages,
                    self.opts,
                    self.progress,
                )
            })
        };
        let result = run(pass, *placement);
        match result {
            Err(e) if placement.uses_gpu() && gpu_fault(&e) => {
                GPU_FALLBACKS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(input = %self.source.path.display(), placement = %placement, error = %e, "GPU path failed; rerunning what was left of the pass on the CPU");
                reservation.take();
                *placement = Placement::CPU;
                // Rungs this pass finished may be published: they stay.
                let dir = |i: usize| format!("{}{}", self.plan.rungs[i].name, pass.suffix);
                let left: Vec<usize> = pass
                    .rungs
                    .iter()
                    .copied()
                    .filter(|&i| !ladder.has_track(i, &dir(i)))
                    .collect();
                for &i in &left {
                    clear(&self.staging.join(dir(i)))?;
                }
                if let Some(audio) = pass.audio {
                    clear(&self.staging.join(audio))?;
                }
                run(
                    &Pass {
                        rungs: &left,
                        suffix: pass.suffix,
                        audio: pass.audio,
                    },
                    *placement,
                )
            }
            other => other,
        }
    }
}

/// The folder suffix of a rung encoded to replace a copied one, and the
/// folder of audio encoded to replace copied audio.
const REPLACED: &str = "v2";
const REPLACED_AUDIO: &str = "audiov2";

/// What every pass repaired, each thing said once.
struct RepairNotes(Vec<String>);

impl RepairNotes {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn add(&mut self, more: Vec<String>) {
        for r in more {
            if !self.0.contains(&r) {
                self.0.push(r);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn clear(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(MediaError::io("clearing", dir, e))
        }
        _ => Ok(()),
    }
}

/// Jobs whose GPU attempt failed and were rerun on the CPU, since start.
static GPU_FALLBACKS: AtomicU64 = AtomicU64::new(0);

pub fn gpu_fallbacks() -> u64 {
    GPU_FALLBACKS.load(Ordering::Relaxed)
}

/// Failures the CPU may not share: everything but a refusal of the input
/// and a cancel.
fn gpu_fault(e: &MediaError) -> bool {
    e.reject_code().is_none() && !matches!(e, MediaError::Cancelled | MediaError::InvalidRequest(_))
}

/// The shape of a job, for placement: the rungs it encodes (a remuxed top
/// rung costs no encoder).
pub fn workload(source: &SourceInfo, plan: &LadderPlan) -> Workload {
    let rungs = match plan.encoded_rungs() {
        [] => &plan.rungs[..],
        some => some,
    };
    Workload {
        codec: source.video.codec.clone(),
        bit_depth: source.video.bit_depth,
        width: source.video.width,
        height: source.video.height,
        rotated: plan.rotation != 0,
        rungs: rungs.iter().map(|r| (r.width, r.height)).collect(),
    }
}

fn staging_dir(out_dir: &Path) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ladder".into());
    out_dir.with_file_name(format!(".{name}.partial"))
}

fn check_destination(out_dir: &Path) -> Result<()> {
    if out_dir.file_name().is_none() {
        return Err(MediaError::InvalidRequest(format!(
            "`{}` cannot be an output directory",
            out_dir.display()
        )));
    }
    match std::fs::read_dir(out_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MediaError::io("reading", out_dir, e)),
        Ok(mut entries) => {
            if entries.next().is_none() || out_dir.join(playlist::MASTER).is_file() {
                Ok(())
            } else {
                Err(MediaError::InvalidRequest(format!(
                    "`{}` is not empty and holds no earlier ladder; refusing to overwrite it",
                    out_dir.display()
                )))
            }
        }
    }
}

/// Swaps the finished staging directory into place.
fn publish(staging: &Path, out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        let old = out_dir.with_file_name(format!(
            ".{}.old",
            out_dir.file_name().expect("checked").to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(out_dir, &old).map_err(|e| MediaError::io("moving aside", out_dir, e))?;
        std::fs::rename(staging, out_dir).map_err(|e| MediaError::io("publishing", out_dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| MediaError::io("removing", &old, e))?;
    } else {
        if let Some(parent) = out_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| MediaError::io("creating", parent, e))?;
        }
        std::fs::rename(staging, out_dir).map_err(|e| MediaError::io("publishing", out_dir, e))?;
    }
    Ok(())
}

pub(crate) fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>, stage: &str) -> Result<T> {
    h.join().unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        Err(MediaError::Worker {
            stage: stage.into(),
            reason,
        })
    })
}
