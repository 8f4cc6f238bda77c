//! CPU reference implementations of every kernel, operation for operation
//! the same float32 maths as `kernels.cu` (so results agree to the rounding
//! of the last step, in practice exactly), on tightly packed host frames.
//!
//! They are the oracle for the GPU tests and golden files, and a real CPU
//! path for hosts without a GPU (single-threaded, so slow on large frames).

use crate::abi::{self, Rect};
use crate::{KernelError, Result};

/// Largest width or height any kernel accepts: keeps every coordinate exact
/// in float32 and every index inside `i32`.
pub const MAX_DIMENSION: u32 = 1 << 15;

/// Y'CbCr → R'G'B' matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matrix {
    /// ITU-R BT.601 (SD): Kr = 0.299, Kb = 0.114.
    Bt601,
    /// ITU-R BT.709 (HD): Kr = 0.2126, Kb = 0.0722.
    Bt709,
}

/// Quantisation range of the 8-bit samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Range {
    /// "TV" range: Y' 16..=235, Cb/Cr 16..=240.
    Limited,
    /// "PC" range: 0..=255 for all three.
    Full,
}

/// Per-channel tensor normalisation: `(x / 255 - mean[c]) / std[c]`, channels
/// in R, G, B order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalisation {
    /// The ImageNet statistics most vision backbones are trained with.
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// `x / 255` unchanged.
    pub const UNIT: Self = Self {
        mean: [0.0; 3],
        std: [1.0; 3],
    };

    pub(crate) fn abi(&self) -> abi::Norm {
        abi::Norm {
            mean: self.mean,
            stddev: self.std,
        }
    }
}

/// Size of the chroma plane of a 4:2:0 frame (odd sizes rounded up).
pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

/// An 8-bit NV12 frame with tight pitch: `y` is `width * height` bytes, `uv`
/// is the interleaved Cb,Cr plane, `2 * cw * ch` bytes (see [`chroma_size`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nv12Frame {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub uv: Vec<u8>,
}

impl Nv12Frame {
    /// A frame from its planes, checked for size.
    pub fn new(width: u32, height: u32, y: Vec<u8>, uv: Vec<u8>) -> Result<Self> {
        let frame = Self {
            width,
            height,
            y,
            uv,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, y: u8, cb: u8, cr: u8) -> Result<Self> {
        check_size("frame", width, height)?;
        let (cw, ch) = chroma_size(width, height);
        let uv = [cb, cr].repeat(cw as usize * ch as usize);
        Self::new(width, height, vec![y; width as usize * height as usize], uv)
    }

    /// Checks the dimensions and plane sizes.
    pub fn validate(&self) -> Result<()> {
        check_planes("NV12", self.width, self.height, self.y.len(), self.uv.len())
    }
}

/// A P010 frame with tight pitch: 16-bit samples holding 10 significant bits
/// in the high bits (`value10 << 6`), planes laid out as in [`Nv12Frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P010Frame {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u16>,
    pub uv: Vec<u16>,
}

impl P010Frame {
    /// A frame from its planes, checked for size.
    pub fn new(width: u32, height: u32, y: Vec<u16>, uv: Vec<u16>) -> Result<Self> {
        let frame = Self {
            width,
            height,
            y,
            uv,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks the dimensions and plane sizes.
    pub fn validate(&self) -> Result<()> {
        check_planes("P010", self.width, self.height, self.y.len(), self.uv.len())
    }
}

/// Packed 8-bit RGB, tight pitch (`3 * width` bytes per row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// float32 tensor in CHW layout (R plane, G plane, B plane), tightly packed.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

/// One-pass 1:N ladder resize: every size in `sizes` from the same source.
pub fn resize_nv12(src: &Nv12Frame, sizes: &[(u32, u32)]) -> Result<Vec<Nv12Frame>> {
    src.validate()?;
    sizes
        .iter()
        .map(|&(w, h)| resize_planes(src.width, src.height, &src.y, &src.uv, w, h, 1.0))
        .collect()
}

/// [`resize_nv12`] from a 10-bit P010 source into 8-bit NV12 (`value10 / 4`,
/// rounded to nearest, clamped).
pub fn resize_p010(src: &P010Frame, sizes: &[(u32, u32)]) -> Result<Vec<Nv12Frame>> {
    src.validate()?;
    sizes
        .iter()
        .map(|&(w, h)| resize_planes(src.width, src.height, &src.y, &src.uv, w, h, 0.25))
        .collect()
}

/// NV12 → packed RGB24 at `width` x `height` (the source size for a plain
/// conversion; any other size resizes with the same filter on the way).
pub fn nv12_to_rgb(
    src: &Nv12Frame,
    width: u32,
    height: u32,
    matrix: Matrix,
    range: Range,
) -> Result<RgbImage> {
    src.validate()?;
    check_size("RGB output", width, height)?;
    let k = colour(matrix, range);
    let mut data = Vec::with_capacity(3 * width as usize * height as usize);
    for y in 0..height {
        for x in 0..width {
            let c = sample_rgb(src, x, y, width, height, &k);
            data.extend([
                to_u8(c[0] * 255.0),
                to_u8(c[1] * 255.0),
                to_u8(c[2] * 255.0),
            ]);
        }
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// NV12 → normalised float32 RGB tensor (CHW) at `width` x `height`: resize,
/// colour conversion, then `(clamp(x, 0, 255) / 255 - mean[c]) / std[c]` on
/// the unrounded value `x`.
pub fn nv12_to_tensor(
    src: &Nv12Frame,
    width: u32,
    height: u32,
    matrix: Matrix,
    range: Range,
    norm: &Normalisation,
) -> Result<Tensor> {
    src.validate()?;
    check_size("tensor", width, height)?;
    let k = colour(matrix, range);
    let plane = width as usize * height as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for y in 0..height {
        for x in 0..width {
            let c = sample_rgb(src, x, y, width, height, &k);
            let at = y as usize * width as usize + x as usize;
            for ch in 0..3 {
                data[ch * plane + at] = normalise(c[ch], norm.mean[ch], norm.std[ch]);
            }
        }
    }
    Ok(Tensor {
        width,
        height,
        data,
    })
}

/// Limited-range black: Y' 16, Cb and Cr 128.
pub const BLACK: (u8, u8, u8) = (16, 128, 128);

/// Where each of two sources lands in a side-by-side `width` x `height`
/// frame: fitted into its half with its aspect kept (as tall as the frame
/// or as wide as the half, whichever comes first), centred, origin and
/// size even so the chroma rectangle is exactly half. `width` must be a
/// multiple of 4 and `height` even.
pub fn side_by_side_layout(sources: [(u32, u32); 2], width: u32, height: u32) -> Result<[Rect; 2]> {
    check_size("composed frame", width, height)?;
    if !width.is_multiple_of(4) || !height.is_multiple_of(2) {
        return Err(KernelError::Invalid(format!(
            "a side-by-side frame is a multiple of 4 wide and even tall, not {width}x{height}"
        )));
    }
    let half = width / 2;
    let mut out = [Rect::default(); 2];
    for (k, (slot, &(sw, sh))) in out.iter_mut().zip(&sources).enumerate() {
        check_size("source", sw, sh)?;
        let (sw, sh, bw, bh) = (
            u64::from(sw),
            u64::from(sh),
            u64::from(half),
            u64::from(height),
        );
        // Nearest even size: 2 * round(v / 2) in integers.
        let (w, h) = if sw * bh <= bw * sh {
            ((2 * ((sw * bh + sh) / (2 * sh))).clamp(2, bw), bh)
        } else {
            (bw, (2 * ((sh * bw + sw) / (2 * sw))).clamp(2, bh))
        };
        let (w, h) = (w as u32, h as u32);
        *slot = Rect {
            x: k as u32 * half + (((half - w) / 2) & !1),
            y: ((height - h) / 2) & !1,
            width: w,
            height: h,
        };
    }
    Ok(out)
}

/// Two NV12 frames side by side in one `width` x `height` frame, laid out
/// by [`side_by_side_layout`]: each tent-filtered into its rectangle,
/// [`BLACK`] around them (see `compose_nv12_sbs` in `kernels.cu`).
pub fn compose_nv12_sbs(
    a: &Nv12Frame,
    b: &Nv12Frame,
    width: u32,
    height: u32,
) -> Result<Nv12Frame> {
    a.validate()?;
    b.validate()?;
    let rects = side_by_side_layout([(a.width, a.height), (b.width, b.height)], width, height)?;
    let srcs = [a, b];
    let half = width / 2;
    let inside =
        |r: &Rect, x: u32, y: u32| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
    let mut out_y = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        for x in 0..width {
            let k = usize::from(x >= half);
            let (s, r) = (srcs[k], &rects[k]);
            out_y.push(if inside(r, x, y) {
                let ax = Axis::new(x - r.x, s.width, r.width);
                let ay = Axis::new(y - r.y, s.height, r.height);
                let [v] = filter_plane::<u8, 1>(&s.y, s.width, s.height, &ax, &ay);
                to_u8(v)
            } else {
                BLACK.0
            });
        }
    }
    let (dcw, dch) = chroma_size(width, height);
    let mut out_uv = Vec::with_capacity(2 * dcw as usize * dch as usize);
    for y in 0..dch {
        for x in 0..dcw {
            let k = usize::from(2 * x >= half);
            let s = srcs[k];
            let full = rects[k];
            let r = Rect {
                x: full.x / 2,
                y: full.y / 2,
                width: full.width / 2,
                height: full.height / 2,
            };
            if inside(&r, x, y) {
                let (scw, sch) = chroma_size(s.width, s.height);
                let ax = Axis::new(x - r.x, scw, r.width);
                let ay = Axis::new(y - r.y, sch, r.height);
                let [u, v] = filter_plane::<u8, 2>(&s.uv, scw, sch, &ax, &ay);
                out_uv.extend([to_u8(u), to_u8(v)]);
            } else {
                out_uv.extend([BLACK.1, BLACK.2]);
            }
        }
    }
    Nv12Frame::new(width, height, out_y, out_uv)
}

/// The conversion coefficients for a matrix and range, as passed to the GPU.
pub(crate) fn colour(matrix: Matrix, range: Range) -> abi::Colour {
    let (kr, kb): (f64, f64) = match matrix {
        Matrix::Bt601 => (0.299, 0.114),
        Matrix::Bt709 => (0.2126, 0.0722),
    };
    let kg = 1.0 - kr - kb;
    let (y_off, y_scale, c_scale): (f64, f64, f64) = match range {
        Range::Limited => (16.0, 1.0 / 219.0, 1.0 / 224.0),
        Range::Full => (0.0, 1.0 / 255.0, 1.0 / 255.0),
    };
    abi::Colour {
        y_off: y_off as f32,
        y_scale: y_scale as f32,
        c_scale: c_scale as f32,
        r_cr: (2.0 * (1.0 - kr)) as f32,
        g_cb: (2.0 * kb * (1.0 - kb) / kg) as f32,
        g_cr: (2.0 * kr * (1.0 - kr) / kg) as f32,
        b_cb: (2.0 * (1.0 - kb)) as f32,
    }
}

pub(crate) fn check_size(what: &str, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(KernelError::Invalid(format!(
            "{what} size {width}x{height} outside 1..={MAX_DIMENSION}"
        )));
    }
    Ok(())
}

fn check_planes(kind: &str, width: u32, height: u32, y_len: usize, uv_len: usize) -> Result<()> {
    check_size(kind, width, height)?;
    let (cw, ch) = chroma_size(width, height);
    let want_y = width as usize * height as usize;
    let want_uv = 2 * cw as usize * ch as usize;
    if y_len != want_y || uv_len != want_uv {
        return Err(KernelError::Invalid(format!(
            "{kind} {width}x{height} needs planes of {want_y} and {want_uv} samples, got {y_len} and {uv_len}"
        )));
    }
    Ok(())
}

/// One axis of the tent filter (see `make_axis` in `kernels.cu`).
struct Axis {
    s: f32,
    r: f32,
    i0: i32,
    i1: i32,
}

impl Axis {
    fn new(o: u32, src_n: u32, dst_n: u32) -> Self {
        let scale = src_n as f32 / dst_n as f32;
        let s = (o as f32 + 0.5) * scale - 0.5;
        let r = scale.max(1.0);
        Self {
            s,
            r,
            i0: (s - r).ceil() as i32,
            i1: (s + r).floor() as i32,
        }
    }

    fn weight(&self, i: i32) -> f32 {
        let d = i as f32 - self.s;
        (1.0 - d.abs() / self.r).max(0.0)
    }
}

fn clamp_index(i: i32, n: u32) -> usize {
    i.clamp(0, n as i32 - 1) as usize
}

trait Sample: Copy {
    fn value(self) -> f32;
}

impl Sample for u8 {
    fn value(self) -> f32 {
        f32::from(self)
    }
}

impl Sample for u16 {
    /// P010: the 10 significant bits sit in the high bits.
    fn value(self) -> f32 {
        f32::from(self >> 6)
    }
}

/// Tent-filters `C` interleaved components of a tight `w` x `h` plane at one
/// output position (see `filter_plane` in `kernels.cu`).
fn filter_plane<T: Sample, const C: usize>(
    plane: &[T],
    w: u32,
    h: u32,
    ax: &Axis,
    ay: &Axis,
) -> [f32; C] {
    let stride = w as usize * C;
    let mut acc = [0.0f32; C];
    let mut wsum = 0.0f32;
    for j in ay.i0..=ay.i1 {
        let wy = ay.weight(j);
        let row = &plane[clamp_index(j, h) * stride..];
        for i in ax.i0..=ax.i1 {
            let wx = ax.weight(i);
            let wgt = wx * wy;
            let ii = clamp_index(i, w) * C;
            for (c, a) in acc.iter_mut().enumerate() {
                *a += wgt * row[ii + c].value();
            }
            wsum += wgt;
        }
    }
    acc.map(|a| a / wsum)
}

fn to_u8(v: f32) -> u8 {
    (v + 0.5).floor().clamp(0.0, 255.0) as u8
}

fn normalise(v: f32, mean: f32, std: f32) -> f32 {
    let x = (v * 255.0).clamp(0.0, 255.0);
    (x / 255.0 - mean) / std
}

fn resize_planes<T: Sample>(
    sw: u32,
    sh: u32,
    y: &[T],
    uv: &[T],
    dw: u32,
    dh: u32,
    scale: f32,
) -> Result<Nv12Frame> {
    check_size("destination", dw, dh)?;
    let (scw, sch) = chroma_size(sw, sh);
    let (dcw, dch) = chroma_size(dw, dh);
    let mut out_y = Vec::with_capacity(dw as usize * dh as usize);
    for oy in 0..dh {
        let ay = Axis::new(oy, sh, dh);
        for ox in 0..dw {
            let ax = Axis::new(ox, sw, dw);
            let [v] = filter_plane::<T, 1>(y, sw, sh, &ax, &ay);
            out_y.push(to_u8(v * scale));
        }
    }
    let mut out_uv = Vec::with_capacity(2 * dcw as usize * dch as usize);
    for oy in 0..dch {
        let ay = Axis::new(oy, sch, dch);
        for ox in 0..dcw {
            let ax = Axis::new(ox, scw, dcw);
            let [u, v] = filter_plane::<T, 2>(uv, scw, sch, &ax, &ay);
            out_uv.extend([to_u8(u * scale), to_u8(v * scale)]);
        }
    }
    Nv12Frame::new(dw, dh, out_y, out_uv)
}

/// Luma and chroma resampled at output pixel (x, y) of a `dw` x `dh` image,
/// converted to R'G'B' in [0, 1], not yet clamped (see `sample_rgb` in
/// `kernels.cu`).
fn sample_rgb(src: &Nv12Frame, x: u32, y: u32, dw: u32, dh: u32, k: &abi::Colour) -> [f32; 3] {
    let (scw, sch) = chroma_size(src.width, src.height);
    let [luma] = filter_plane::<u8, 1>(
        &src.y,
        src.width,
        src.height,
        &Axis::new(x, src.width, dw),
        &Axis::new(y, src.height, dh),
    );
    let [u, v] = filter_plane::<u8, 2>(
        &src.uv,
        scw,
        sch,
        &Axis::new(x, scw, dw),
        &Axis::new(y, sch, dh),
    );
    let yn = (luma - k.y_off) * k.y_scale;
    let cb = (u - 128.0) * k.c_scale;
    let cr = (v - 128.0) * k.c_scale;
    [
        yn + k.r_cr * cr,
        yn - k.g_cb * cb - k.g_cr * cr,
        yn + k.b_cb * cb,
    ]
}
