//! Bundle time, CPU only: turns FFmpeg's software decode of a clip (raw
//! `nv12` or `p010le` frames) into the clip's description: a hash of every
//! frame as the identity rung must produce it, and a few whole frames.

use std::io::Read;
use std::path::Path;

use kernels::cpu::{self, P010Frame};

use crate::clips::{frame_sha256, Clip, Sample};
use crate::error::{KitError, Result};

pub struct Args<'a> {
    pub clip: &'a Path,
    pub codec: &'a str,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
    /// Raw frames, `-` for stdin.
    pub raw: &'a Path,
    pub samples: &'a [usize],
}

pub fn run(a: &Args<'_>) -> Result<Clip> {
    if !matches!(a.codec, "h264" | "hevc") || !matches!(a.bit_depth, 8 | 10) {
        return Err(KitError::Invalid(format!(
            "{} {}-bit: the kit checks h264/hevc at 8 or 10 bits",
            a.codec, a.bit_depth
        )));
    }
    let dir = a.clip.parent().unwrap_or(Path::new("."));
    let stem = a
        .clip
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| KitError::Invalid(format!("{}: no file name", a.clip.display())))?
        .to_owned();
    let mut input: Box<dyn Read> = if a.raw == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(a.raw).map_err(KitError::io(a.raw))?)
    };
    let (cw, ch) = cpu::chroma_size(a.width, a.height);
    let (luma, chroma) = ((a.width * a.height) as usize, (2 * cw * ch) as usize);
    let bytes_per_sample = if a.bit_depth > 8 { 2 } else { 1 };
    let mut buf = vec![0u8; (luma + chroma) * bytes_per_sample];
    let mut clip = Clip {
        file: stem.clone(),
        codec: a.codec.to_owned(),
        bit_depth: a.bit_depth,
        width: a.width,
        height: a.height,
        identity_sha256: Vec::new(),
        samples: Vec::new(),
    };
    loop {
        match input.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(KitError::io(a.raw)(e)),
        }
        let (y, uv) = if a.bit_depth > 8 {
            let words: Vec<u16> = buf
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            let src = P010Frame::new(
                a.width,
                a.height,
                words[..luma].to_vec(),
                words[luma..].to_vec(),
            )?;
            let mut out = cpu::resize_p010(&src, &[(a.width, a.height)])?;
            let f = out.remove(0);
            (f.y, f.uv)
        } else {
            (buf[..luma].to_vec(), buf[luma..].to_vec())
        };
        let n = clip.identity_sha256.len();
        clip.identity_sha256.push(frame_sha256(&y, &uv));
        if a.samples.contains(&n) {
            let file = format!("{stem}.f{n:04}.nv12");
            let path = dir.join(&file);
            std::fs::write(&path, [y, uv].concat()).map_err(KitError::io(&path))?;
            clip.samples.push(Sample { frame: n, file });
        }
    }
    if clip.identity_sha256.is_empty() {
        return Err(KitError::Invalid(format!(
            "{}: no whole frame of {}x{} in the raw input",
            a.raw.display(),
            a.width,
            a.height
        )));
    }
    let desc = dir.join(format!("{stem}.json"));
    let text = serde_json::to_vec_pretty(&clip).map_err(|source| KitError::Json {
        path: desc.clone(),
        source,
    })?;
    std::fs::write(&desc, text).map_err(KitError::io(&desc))?;
    Ok(clip)
}
