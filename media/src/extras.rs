//! What a finished ladder gets beside its playlists, made from the ladder
//! itself rather than from the source (so they can be made, or remade,
//! from a published ladder alone): a poster from the top rung that is
//! neither black nor blurred, a storyboard sprite with its WebVTT
//! thumbnails track from the lowest rung, and an MP4 download remuxed from
//! the top rung and the audio rendition. Every file is written under a
//! temporary name and renamed into place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::download::{self, DOWNLOAD};
use crate::error::{MediaError, Result};
use crate::ladder::Ladder;
use crate::storyboard::{self, STORYBOARD_IMAGE, STORYBOARD_VTT};
use crate::thumbnail::{ladder_poster, POSTER};

/// The files [`write_all`] wrote into the ladder directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Extras {
    pub poster: PathBuf,
    pub storyboard_image: PathBuf,
    pub storyboard_vtt: PathBuf,
    /// The MP4 download. Every ladder has a video rung, so this is always
    /// written; `None` is never returned today.
    pub download: Option<PathBuf>,
    /// Tiles in the storyboard, one every `interval_secs`.
    pub tiles: u32,
    pub interval_secs: f64,
    /// Where on the timeline the poster was taken (seconds).
    pub poster_time_secs: f64,
}

/// Writes `poster.jpg` (replacing the transcode's), `storyboard.jpg`,
/// `storyboard.vtt` and `download.mp4` into `ladder_dir`, a finished
/// ladder (`master.m3u8`, a folder per rung, `audio/` when there is sound).
/// The storyboard is decoded on one thread while the poster and the
/// download are made on another.
pub fn write_all(ladder_dir: &Path) -> Result<Extras> {
    crate::init();
    let started = Instant::now();
    let ladder = Ladder::open(ladder_dir)?;
    let top = ladder.top()?;
    let lowest = ladder.lowest()?;
    let audio = ladder.audio()?;
    let poster = ladder_dir.join(POSTER);
    let download = ladder_dir.join(DOWNLOAD);
    let (layout, poster_choice) = std::thread::scope(|s| {
        let board = s.spawn(|| storyboard::write(&lowest, ladder_dir));
        let choice = ladder_poster(&top, &poster)
            .and_then(|c| download::write(&top, audio.as_ref(), &download).map(|_| c));
        let layout = board.join().map_err(|_| MediaError::Worker {
            stage: "storyboard".into(),
            reason: "the thread panicked".into(),
        })?;
        Ok::<_, MediaError>((layout?, choice?))
    })?;
    tracing::info!(
        dir = %ladder_dir.display(),
        tiles = layout.tiles,
        interval = layout.interval,
        poster_at = poster_choice.time,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "poster, storyboard and download written"
    );
    Ok(Extras {
        poster,
        storyboard_image: ladder_dir.join(STORYBOARD_IMAGE),
        storyboard_vtt: ladder_dir.join(STORYBOARD_VTT),
        download: Some(download),
        tiles: layout.tiles,
        interval_secs: layout.interval,
        poster_time_secs: poster_choice.time,
    })
}

#[cfg(test)]
mod tests;
