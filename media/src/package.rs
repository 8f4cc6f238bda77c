//! The ladder as it grows: finished tracks get their media playlists at
//! once, and the master playlist is rewritten each time one more rung can
//! be played, so a caller can publish the video after its first rung and
//! add the others as they finish ([`ProgressEvent::Playable`]). A master
//! never lists a rung before that rung's files are complete, nor any rung
//! before the audio rendition they all share. A track may be replaced (a
//! remuxed source found damaged is encoded after all): the new one lives
//! in its own folder, and the next master points there.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::cmaf::Track;
use crate::error::{MediaError, Result};
use crate::plan::LadderPlan;
use crate::playlist::{self, Bandwidth, Variant};
use crate::transcode::{ProgressEvent, RenditionSummary};

pub(crate) struct Ladder<'a> {
    dir: PathBuf,
    plan: &'a LadderPlan,
    progress: &'a (dyn Fn(ProgressEvent) + Sync),
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// One slot per planned rung, filled when its track is complete.
    rungs: Vec<Option<Track>>,
    /// `None` while the audio is still being written; `Some(None)` for a
    /// ladder without audio.
    audio: Option<Option<Track>>,
    /// Bumped by every change; the last announced master's version.
    version: u64,
    announced: u64,
}

impl<'a> Ladder<'a> {
    pub fn new(
        dir: &Path,
        plan: &'a LadderPlan,
        progress: &'a (dyn Fn(ProgressEvent) + Sync),
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            plan,
            progress,
            state: Mutex::new(State {
                rungs: vec![None; plan.rungs.len()],
                audio: plan.audio.is_none().then_some(None),
                version: 0,
                announced: 0,
            }),
        }
    }

    /// Whether rung `index`'s track is the one in folder `dir`.
    pub fn has_track(&self, index: usize, dir: &str) -> bool {
        self.state.lock().rungs[index]
            .as_ref()
            .is_some_and(|t| playlist::dir_name(t) == dir)
    }

    /// Rung `index` is complete (or replaced): its playlist is written and,
    /// when the audio is ready too, the master changes.
    pub fn add_rung(&self, index: usize, track: Track) -> Result<()> {
        playlist::write_media_playlist(&track)?;
        let mut st = self.state.lock();
        st.rungs[index] = Some(track);
        st.version += 1;
        self.announce(&mut st)
    }

    /// The audio is complete (or replaced); `None`: the ladder has none.
    pub fn set_audio(&self, track: Option<Track>) -> Result<()> {
        if let Some(t) = &track {
            playlist::write_media_playlist(t)?;
        }
        let mut st = self.state.lock();
        st.audio = Some(track);
        st.version += 1;
        self.announce(&mut st)
    }

    /// Rewrites the master with every complete rung and tells the caller,
    /// under the lock, so masters are announced in the order they grow.
    fn announce(&self, st: &mut State) -> Result<()> {
        let Some(audio) = &st.audio else {
            return Ok(());
        };
        let live = st.rungs.iter().filter(|r| r.is_some()).count();
        if live == 0 || st.version == st.announced {
            return Ok(());
        }
        let (variants, _) = self.variants(&st.rungs);
        let bws = playlist::write_master(
            &self.dir,
            &variants,
            self.plan.audio.as_ref().zip(audio.as_ref()),
        )?;
        let rungs = summaries(&variants, bws, &self.dir);
        let path = self.dir.join(playlist::MASTER);
        let master =
            std::fs::read_to_string(&path).map_err(|e| MediaError::io("reading", &path, e))?;
        st.announced = st.version;
        let top = &self.plan.rungs[0];
        (self.progress)(ProgressEvent::Playable {
            dir: self.dir.clone(),
            rungs,
            audio: audio.as_ref().map(playlist::dir_name),
            master,
            size: (top.width, top.height),
        });
        Ok(())
    }

    fn variants<'t>(&self, rungs: &'t [Option<Track>]) -> (Vec<Variant<'t>>, Vec<String>)
    where
        'a: 't,
    {
        let fps = self.plan.fps();
        self.plan
            .rungs
            .iter()
            .zip(rungs)
            .filter_map(|(rung, t)| {
                t.as_ref().map(|track| {
                    (
                        Variant {
                            rung,
                            track,
                            frame_rate: fps,
                        },
                        rung.name.clone(),
                    )
                })
            })
            .unzip()
    }

    /// The whole ladder, once every rung and the audio are in: the final
    /// master (written again, so a ladder is whole even if nobody listened)
    /// and what it holds, described as it will be once published at
    /// `published`.
    pub fn finish(self, published: &Path) -> Result<Finished> {
        let st = std::mem::take(&mut *self.state.lock());
        let missing: Vec<&str> = self
            .plan
            .rungs
            .iter()
            .zip(&st.rungs)
            .filter(|(_, t)| t.is_none())
            .map(|(r, _)| r.name.as_str())
            .collect();
        let Some(audio) = st.audio.clone().filter(|_| missing.is_empty()) else {
            return Err(MediaError::Worker {
                stage: "package".into(),
                reason: format!(
                    "the ladder is incomplete (missing: {missing:?}, audio done: {})",
                    st.audio.is_some()
                ),
            });
        };
        let (variants, _) = self.variants(&st.rungs);
        let bws: Vec<(String, Bandwidth)> = playlist::write_master(
            &self.dir,
            &variants,
            self.plan.audio.as_ref().zip(audio.as_ref()),
        )?;
        Ok(Finished {
            renditions: summaries(&variants, bws, published),
            audio: audio.map(|t| published.join(playlist::dir_name(&t)).join(playlist::MEDIA)),
        })
    }
}

/// The rungs of a master as they are (or will be) at `dir`.
fn summaries(
    variants: &[Variant<'_>],
    bws: Vec<(String, Bandwidth)>,
    dir: &Path,
) -> Vec<RenditionSummary> {
    variants
        .iter()
        .zip(bws)
        .map(|(v, (_, bw))| RenditionSummary {
            name: v.rung.name.clone(),
            width: v.rung.width,
            height: v.rung.height,
            codecs: v.track.codec.clone(),
            bandwidth: bw.peak,
            average_bandwidth: bw.average,
            segments: v.track.segments.len(),
            duration_secs: v.track.segments.iter().map(|s| s.duration_secs).sum(),
            playlist: dir.join(playlist::dir_name(v.track)).join(playlist::MEDIA),
        })
        .collect()
}

pub(crate) struct Finished {
    pub renditions: Vec<RenditionSummary>,
    pub audio: Option<PathBuf>,
}
