//! Test clips and their CPU reference: an Annex B elementary stream beside a
//! JSON description written at bundle time (`gpukit reference`) from
//! FFmpeg's software decode.

use std::path::{Path, PathBuf};

use kernels::cpu::Nv12Frame;
use serde::{Deserialize, Serialize};

use crate::error::{KitError, Result};

/// The rungs every clip is scaled into besides its own size (the identity
/// rung, which must reproduce the CPU decode).
pub const LADDER: [(u32, u32); 4] = [(1280, 720), (854, 480), (640, 360), (426, 240)];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Clip {
    /// The elementary stream, relative to the description.
    pub file: String,
    /// `h264` or `hevc`.
    pub codec: String,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
    /// SHA-256 of each displayed frame as 8-bit NV12 at the clip's own size
    /// (10-bit frames through the CPU reference of the P010 kernel).
    pub identity_sha256: Vec<String>,
    /// Frames kept whole, for PSNR.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub frame: usize,
    /// Tight 8-bit NV12 at the clip's size, relative to the description.
    pub file: String,
}

impl Clip {
    /// Every description (`*.json`) in `dir`, sorted by name.
    pub fn all_in(dir: &Path) -> Result<Vec<(PathBuf, Clip)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(KitError::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read(&p).map_err(KitError::io(&p))?;
                let clip = serde_json::from_slice(&text).map_err(|source| KitError::Json {
                    path: p.clone(),
                    source,
                })?;
                Ok((p, clip))
            })
            .collect()
    }

    pub fn name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// The rungs the check decodes into: the clip's own size first.
    pub fn rungs(&self) -> Vec<(u32, u32)> {
        std::iter::once((self.width, self.height))
            .chain(LADDER.iter().copied().filter(|&(w, _)| w < self.width))
            .collect()
    }

    /// A kept frame, read back as an NV12 frame.
    pub fn load_sample(&self, dir: &Path, sample: &Sample) -> Result<Nv12Frame> {
        let path = dir.join(&sample.file);
        let bytes = std::fs::read(&path).map_err(KitError::io(&path))?;
        let luma = (self.width * self.height) as usize;
        let (cw, ch) = kernels::cpu::chroma_size(self.width, self.height);
        if bytes.len() != luma + 2 * (cw * ch) as usize {
            return Err(KitError::Invalid(format!(
                "{}: {} bytes is not one {}x{} NV12 frame",
                path.display(),
                bytes.len(),
                self.width,
                self.height
            )));
        }
        let uv = bytes[luma..].to_vec();
        let mut y = bytes;
        y.truncate(luma);
        Ok(Nv12Frame::new(self.width, self.height, y, uv)?)
    }
}

/// SHA-256 of a tight NV12 frame's planes, luma then chroma.
pub fn frame_sha256(y: &[u8], uv: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(y);
    h.update(uv);
    hex::encode(h.finalize())
}
