//! Axes of a chart: the range shown, where the ticks go (1-2-5 steps, or
//! decades on a log scale) and where a value lands between the ends.

use super::chart::Scale;

/// A linear range and its ticks: a 1-2-5 step, widened to whole steps.
fn linear_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let n = ((hi - lo) / step).round() as usize;
    (lo, hi, (0..=n).map(|i| lo + step * i as f64).collect())
}

/// A log range in whole decades and its ticks (1-2-5 within a decade or
/// two, powers of ten beyond).
fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let lo = 10f64.powf(lo.max(1e-12).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
    let decades = (hi / lo).log10().round() as i32;
    let mut ticks = Vec::new();
    for d in 0..=decades {
        let base = lo * 10f64.powi(d);
        ticks.push(base);
        if decades <= 2 && d < decades {
            ticks.push(base * 2.0);
            ticks.push(base * 5.0);
        }
    }
    (lo, hi, ticks)
}

/// Maps values onto pixels along one axis.
pub(super) struct Map {
    scale: Scale,
    pub(super) lo: f64,
    hi: f64,
    pub(super) ticks: Vec<f64>,
}

impl Map {
    /// `values` with room over the top (`headroom`, a fraction) for text.
    pub(super) fn new(scale: Scale, values: &[f64], from_zero: bool, headroom: f64) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        match scale {
            Scale::Log => {
                let positive: Vec<f64> = finite.filter(|v| *v > 0.0).collect();
                let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = positive.iter().copied().fold(0.0, f64::max);
                let (lo, hi) = if positive.is_empty() {
                    (1.0, 10.0)
                } else {
                    (lo, hi * (1.0 + headroom * 3.0))
                };
                let (lo, hi, ticks) = log_ticks(lo, hi);
                Self {
                    scale,
                    lo,
                    hi,
                    ticks,
                }
            }
            Scale::Linear => {
                let all: Vec<f64> = finite.collect();
                let mut lo = all.iter().copied().fold(f64::INFINITY, f64::min);
                let mut hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if all.is_empty() {
                    (lo, hi) = (0.0, 1.0);
                }
                if from_zero {
                    lo = lo.min(0.0);
                    hi = hi.max(0.0);
                }
                if hi - lo < 1e-12 {
                    hi = lo + lo.abs().max(1.0);
                }
                hi += (hi - lo) * headroom;
                let (lo, hi, ticks) = linear_ticks(lo, hi);
                Self {
                    scale,
                    lo,
                    hi,
                    ticks,
                }
            }
        }
    }

    /// 0 at `lo`, 1 at `hi`.
    pub(super) fn frac(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Log => (v.max(self.lo).log10() - self.lo.log10()) / (self.hi / self.lo).log10(),
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
        };
        f.clamp(0.0, 1.0)
    }
}
