//! The CPU reference against committed golden files, and properties of the
//! maths that a wrong filter or matrix would break.
//!
//! Tolerances: 1 code value for 8-bit planes and RGB, 1e-5 for the tensor.
//! Regenerate the golden files with `KERNELS_BLESS=1 cargo test --release -p
//! kernels --test golden` (and review the diff: they are images).

mod common;

use std::path::PathBuf;

use common::{decode_pnm, encode_pnm, max_diff_f32, max_diff_u8, p010_ramp, test_card};
use kernels::cpu::{self, chroma_size, Matrix, Normalisation, Nv12Frame, P010Frame, Range};

const LADDER: [(u32, u32); 4] = [(96, 54), (64, 36), (32, 18), (160, 90)];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blessing() -> bool {
    std::env::var_os("KERNELS_BLESS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file `name`, or writes it when blessing.
fn check_pnm(name: &str, width: usize, height: usize, channels: usize, actual: &[u8]) {
    let path = golden_dir().join(name);
    if blessing() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, encode_pnm(width, height, channels, actual)).unwrap();
        return;
    }
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with KERNELS_BLESS=1", path.display()));
    let (w, h, c, expected) = decode_pnm(&bytes);
    assert_eq!((w, h, c), (width, height, channels), "{name}: shape");
    let diff = max_diff_u8(&expected, actual);
    assert!(
        diff <= 1,
        "{name}: differs from golden by {diff} code values"
    );
}

fn check_nv12(name: &str, frame: &Nv12Frame) {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = chroma_size(frame.width, frame.height);
    check_pnm(&format!("{name}.y.pgm"), w, h, 1, &frame.y);
    check_pnm(
        &format!("{name}.uv.pgm"),
        2 * cw as usize,
        ch as usize,
        1,
        &frame.uv,
    );
}

#[test]
fn golden_resize_nv12_ladder() {
    let src = test_card(128, 72);
    let rungs = cpu::resize_nv12(&src, &LADDER).unwrap();
    check_nv12("card_128x72", &src);
    for r in &rungs {
        check_nv12(&format!("resize_nv12_{}x{}", r.width, r.height), r);
    }
}

#[test]
fn golden_resize_p010_ladder() {
    let src = p010_ramp(128, 72);
    let rungs = cpu::resize_p010(&src, &[(96, 54), (32, 18)]).unwrap();
    for r in &rungs {
        check_nv12(&format!("resize_p010_{}x{}", r.width, r.height), r);
    }
}

#[test]
fn golden_rgb() {
    let src = test_card(128, 72);
    let rgb = cpu::nv12_to_rgb(&src, 128, 72, Matrix::Bt601, Range::Limited).unwrap();
    check_pnm("rgb_bt601_limited_128x72.ppm", 128, 72, 3, &rgb.data);
    let rgb = cpu::nv12_to_rgb(&src, 64, 36, Matrix::Bt709, Range::Full).unwrap();
    check_pnm("rgb_bt709_full_64x36.ppm", 64, 36, 3, &rgb.data);
}

#[test]
fn golden_tensor() {
    let src = test_card(128, 72);
    let t = cpu::nv12_to_tensor(
        &src,
        32,
        18,
        Matrix::Bt709,
        Range::Limited,
        &Normalisation::IMAGENET,
    )
    .unwrap();
    let path = golden_dir().join("tensor_bt709_limited_imagenet_32x18.f32");
    if blessing() {
        let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with KERNELS_BLESS=1", path.display()));
    let expected: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let diff = max_diff_f32(&expected, &t.data);
    assert!(diff <= 1e-5, "tensor differs from golden by {diff}");
}

#[test]
fn golden_compose_side_by_side() {
    // A 16:9 card and a portrait one, into a frame wider than both halves
    // need: pillarbox bars on both, the portrait one narrower.
    let a = test_card(128, 72);
    let b = test_card(48, 80);
    let out = cpu::compose_nv12_sbs(&a, &b, 256, 96).unwrap();
    check_nv12("compose_sbs_256x96", &out);
}

#[test]
fn side_by_side_keeps_aspect_and_fills_with_black() {
    let a = Nv12Frame::filled(160, 90, 200, 60, 190).unwrap();
    let b = Nv12Frame::filled(90, 160, 100, 200, 50).unwrap();
    let out = cpu::compose_nv12_sbs(&a, &b, 320, 90).unwrap();
    let rects = cpu::side_by_side_layout([(160, 90), (90, 160)], 320, 90).unwrap();
    // The 16:9 source fills its half exactly; the portrait one is as tall
    // as the frame, 9:16 wide (50.6 -> 50), centred in the right half.
    assert_eq!(
        rects[0],
        kernels::Rect {
            x: 0,
            y: 0,
            width: 160,
            height: 90
        }
    );
    assert_eq!(
        rects[1],
        kernels::Rect {
            x: 214,
            y: 0,
            width: 50,
            height: 90
        }
    );
    let w = 320usize;
    for y in 0..90usize {
        for x in 0..w {
            let v = out.y[y * w + x];
            let want = if x < 160 {
                200
            } else if (214..264).contains(&x) {
                100
            } else {
                cpu::BLACK.0
            };
            assert_eq!(v, want, "luma at {x},{y}");
        }
    }
    let (cw, ch) = chroma_size(320, 90);
    for y in 0..ch as usize {
        for x in 0..cw as usize {
            let p = &out.uv[2 * (y * cw as usize + x)..][..2];
            let want = if x < 80 {
                [60, 190]
            } else if (107..132).contains(&x) {
                [200, 50]
            } else {
                [cpu::BLACK.1, cpu::BLACK.2]
            };
            assert_eq!(p, want, "chroma at {x},{y}");
        }
    }
    // A frame whose halves are not even wide is refused.
    assert!(cpu::compose_nv12_sbs(&a, &b, 322, 90).is_err());
    assert!(cpu::compose_nv12_sbs(&a, &b, 320, 91).is_err());
}

#[test]
fn identity_resize_is_exact() {
    for (w, h) in [(128, 72), (33, 17), (1, 1), (2, 3)] {
        let src = test_card(w, h);
        let out = cpu::resize_nv12(&src, &[(w, h)]).unwrap();
        assert_eq!(out[0], src, "{w}x{h}");
    }
}

#[test]
fn constant_frame_stays_constant_at_every_rung() {
    let src = Nv12Frame::filled(127, 71, 93, 40, 201).unwrap();
    let sizes = [(96, 54), (64, 36), (31, 17), (1, 1), (300, 170), (127, 71)];
    for out in cpu::resize_nv12(&src, &sizes).unwrap() {
        let (w, h) = (out.width, out.height);
        assert!(out.y.iter().all(|&v| v == 93), "{w}x{h} luma");
        assert!(
            out.uv.chunks_exact(2).all(|p| p == [40, 201]),
            "{w}x{h} chroma"
        );
    }
}

#[test]
fn downscale_antialiases_a_pixel_checkerboard() {
    // Point or bilinear sampling would alias a 1-pixel checkerboard into
    // flat black or white; the tent averages it to grey (away from the
    // border, where clamping repeats the edge pixel).
    let src = common::pixel_checkerboard(64, 32);
    let out = cpu::resize_nv12(&src, &[(32, 16), (16, 8)]).unwrap();
    for o in out {
        let (w, h) = (o.width as usize, o.height as usize);
        for r in 1..h - 1 {
            let row = &o.y[r * w + 1..r * w + w - 1];
            assert!(row.iter().all(|&v| v == 128), "{w}x{h} row {r}: {row:?}");
        }
    }
}

#[test]
fn upscale_is_bilinear() {
    // A 2x upscale of [0, 100] puts the outer pixels on the edge value and
    // the inner ones at 1/4 and 3/4 of the way.
    let src = Nv12Frame::new(2, 1, vec![0, 100], vec![128, 128]).unwrap();
    let out = cpu::resize_nv12(&src, &[(4, 1)]).unwrap();
    assert_eq!(out[0].y, [0, 25, 75, 100]);
}

fn rgb_of(y: u8, cb: u8, cr: u8, matrix: Matrix, range: Range) -> [u8; 3] {
    let src = Nv12Frame::filled(4, 4, y, cb, cr).unwrap();
    let rgb = cpu::nv12_to_rgb(&src, 4, 4, matrix, range).unwrap();
    assert!(rgb.data.chunks_exact(3).all(|p| p == &rgb.data[..3]));
    [rgb.data[0], rgb.data[1], rgb.data[2]]
}

#[test]
fn limited_range_white_and_black() {
    for m in [Matrix::Bt601, Matrix::Bt709] {
        assert_eq!(
            rgb_of(235, 128, 128, m, Range::Limited),
            [255, 255, 255],
            "{m:?}"
        );
        assert_eq!(rgb_of(16, 128, 128, m, Range::Limited), [0, 0, 0], "{m:?}");
        assert_eq!(
            rgb_of(255, 128, 128, m, Range::Full),
            [255, 255, 255],
            "{m:?}"
        );
        assert_eq!(rgb_of(0, 128, 128, m, Range::Full), [0, 0, 0], "{m:?}");
    }
}

#[test]
fn bt601_colour_bars() {
    // 75% bars: R'G'B' components are 191 (0.75 * 255) or 0, within 1.
    let expected = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
        [0, 0, 0],
    ];
    for ((y, cb, cr), want) in common::BARS_601.into_iter().zip(expected) {
        let got = rgb_of(y, cb, cr, Matrix::Bt601, Range::Limited);
        assert!(
            max_diff_u8(&got, &want) <= 1,
            "({y},{cb},{cr}) -> {got:?}, want {want:?}"
        );
    }
}

#[test]
fn bt709_differs_from_bt601() {
    let a = rgb_of(65, 100, 212, Matrix::Bt601, Range::Limited);
    let b = rgb_of(65, 100, 212, Matrix::Bt709, Range::Limited);
    assert!(max_diff_u8(&a, &b) > 10, "{a:?} vs {b:?}");
}

#[test]
fn p010_ramp_maps_to_quarter_values() {
    let src = p010_ramp(64, 36);
    let out = cpu::resize_p010(&src, &[(64, 36)]).unwrap();
    let quarter = |v: &u16| ((u32::from(v >> 6) + 2) / 4).min(255) as u8;
    assert_eq!(out[0].y, src.y.iter().map(quarter).collect::<Vec<_>>());
    assert_eq!(out[0].uv, src.uv.iter().map(quarter).collect::<Vec<_>>());
    assert!(out[0].y.contains(&0) && out[0].y.contains(&255));
}

#[test]
fn p010_and_nv12_agree_on_8_bit_content() {
    // An 8-bit frame widened to P010 (v << 2, in the high bits) resizes to
    // the same rungs as the 8-bit frame.
    let card = test_card(128, 72);
    let widen = |v: &u8| u16::from(*v) << 8;
    let p010 = P010Frame::new(
        128,
        72,
        card.y.iter().map(widen).collect(),
        card.uv.iter().map(widen).collect(),
    )
    .unwrap();
    let a = cpu::resize_nv12(&card, &LADDER).unwrap();
    let b = cpu::resize_p010(&p010, &LADDER).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert!(max_diff_u8(&a.y, &b.y) <= 1 && max_diff_u8(&a.uv, &b.uv) <= 1);
    }
}

#[test]
fn tensor_of_mid_grey() {
    let norm = Normalisation::IMAGENET;
    let src = Nv12Frame::filled(64, 36, 128, 128, 128).unwrap();
    let t = cpu::nv12_to_tensor(&src, 16, 9, Matrix::Bt709, Range::Full, &norm).unwrap();
    let plane = 16 * 9;
    for c in 0..3 {
        let want = (0.5 - norm.mean[c]) / norm.std[c];
        let exact = (128.0 / 255.0 - norm.mean[c]) / norm.std[c];
        for &v in &t.data[c * plane..(c + 1) * plane] {
            assert!((v - exact).abs() <= 1e-5, "channel {c}: {v} vs {exact}");
            // Mid-grey is 128/255, half a code value above 0.5.
            assert!((v - want).abs() <= 1.0 / 255.0 / norm.std[c], "channel {c}");
        }
    }
}

#[test]
fn invalid_frames_are_errors() {
    assert!(Nv12Frame::new(4, 4, vec![0; 16], vec![0; 7]).is_err());
    assert!(Nv12Frame::filled(0, 4, 0, 0, 0).is_err());
    let src = Nv12Frame::filled(4, 4, 0, 0, 0).unwrap();
    assert!(cpu::resize_nv12(&src, &[(0, 2)]).is_err());
    assert!(cpu::nv12_to_rgb(&src, 1 << 16, 2, Matrix::Bt601, Range::Full).is_err());
}
