//! Deterministic synthetic frames and PNM helpers shared by the tests.
#![allow(dead_code)]

use kernels::cpu::{chroma_size, Nv12Frame};

pub use kernels::conformance::{p010_ramp, test_card, BARS_601};

/// A 1-pixel luma checkerboard of 0 and 255 on neutral chroma.
pub fn pixel_checkerboard(width: u32, height: u32) -> Nv12Frame {
    let (cw, ch) = chroma_size(width, height);
    let y = (0..height)
        .flat_map(|r| (0..width).map(move |c| if (r + c) % 2 == 0 { 0 } else { 255 }))
        .collect();
    Nv12Frame::new(width, height, y, vec![128; 2 * (cw * ch) as usize]).unwrap()
}

pub use kernels::conformance::{max_diff_f32, max_diff_u8};

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
