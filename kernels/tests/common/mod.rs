//! Deterministic synthetic frames and PNM helpers shared by the tests.
#![allow(dead_code)]

use kernels::cpu::{chroma_size, Nv12Frame, P010Frame};

/// 75% colour bars as BT.601 limited-range Y'CbCr: white, yellow, cyan,
/// green, magenta, red, blue, black.
pub const BARS_601: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];

/// A test card: colour bars over the top two thirds; below, a luma gradient
/// (left half) and a 4-pixel checkerboard (right half) on neutral chroma.
pub fn test_card(width: u32, height: u32) -> Nv12Frame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let bars_end = h * 2 / 3;
    let bar = |x: usize| BARS_601[(x * 8 / w).min(7)];
    let mut y = vec![0u8; w * h];
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = if r < bars_end {
                bar(c).0
            } else if c < w / 2 {
                (16 + (c * 219 / (w / 2).max(1)) + (r - bars_end) % 3) as u8
            } else if ((c / 4) + (r / 4)) % 2 == 0 {
                235
            } else {
                16
            };
        }
    }
    let mut uv = vec![128u8; 2 * cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            if 2 * r < bars_end {
                let (_, cb, cr) = bar((2 * c).min(w - 1));
                uv[2 * (r * cw + c)] = cb;
                uv[2 * (r * cw + c) + 1] = cr;
            }
        }
    }
    Nv12Frame::new(width, height, y, uv).unwrap()
}

/// A 10-bit P010 ramp: luma rises 0..=1023 along the diagonal, Cb along x,
/// Cr along y; samples stored `value10 << 6`.
pub fn p010_ramp(width: u32, height: u32) -> P010Frame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let span = (w + h - 2).max(1);
    let mut y = vec![0u16; w * h];
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = (((r + c) * 1023 / span) as u16) << 6;
        }
    }
    let mut uv = vec![0u16; 2 * cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            uv[2 * (r * cw + c)] = ((c * 1023 / (cw - 1).max(1)) as u16) << 6;
            uv[2 * (r * cw + c) + 1] = ((r * 1023 / (ch - 1).max(1)) as u16) << 6;
        }
    }
    P010Frame::new(width, height, y, uv).unwrap()
}

/// A 1-pixel luma checkerboard of 0 and 255 on neutral chroma.
pub fn pixel_checkerboard(width: u32, height: u32) -> Nv12Frame {
    let (cw, ch) = chroma_size(width, height);
    let y = (0..height)
        .flat_map(|r| (0..width).map(move |c| if (r + c) % 2 == 0 { 0 } else { 255 }))
        .collect();
    Nv12Frame::new(width, height, y, vec![128; 2 * (cw * ch) as usize]).unwrap()
}

/// Largest absolute difference between two 8-bit buffers of equal length.
pub fn max_diff_u8(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "buffer lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Largest absolute difference between two float buffers of equal length.
pub fn max_diff_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "buffer lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A binary PGM (`channels` 1) or PPM (`channels` 3).
pub fn encode_pnm(width: usize, height: usize, channels: usize, data: &[u8]) -> Vec<u8> {
    assert_eq!(data.len(), width * height * channels);
    let magic = if channels == 3 { "P6" } else { "P5" };
    let mut out = format!("{magic}\n{width} {height}\n255\n").into_bytes();
    out.extend_from_slice(data);
    out
}

/// Parses what [`encode_pnm`] writes: (width, height, channels, samples).
pub fn decode_pnm(bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..at]).unwrap().to_owned());
    }
    let channels = match fields[0].as_str() {
        "P5" => 1,
        "P6" => 3,
        other => panic!("not a binary PGM/PPM: {other}"),
    };
    assert_eq!(fields[3], "255");
    let (w, h) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let data = bytes[at + 1..].to_vec();
    assert_eq!(data.len(), w * h * channels, "truncated PNM");
    (w, h, channels, data)
}
