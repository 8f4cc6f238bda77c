//! Speed control (FR6: 0.5×, 1×, 2×, 3×): the picture re-timed with
//! `setpts`, the sound with `atempo`, which keeps its pitch. One `atempo`
//! takes factors in [0.5, 2] on every FFmpeg this box may link (newer ones
//! take up to 100), so a factor outside that range is a chain of filters
//! whose product is the factor.

/// The speeds a creator may pick; 1 is the recording as it was.
pub const SPEEDS: [f64; 4] = [0.5, 1.0, 2.0, 3.0];

/// Whether `speed` is one of [`SPEEDS`].
pub fn is_allowed(speed: f64) -> bool {
    SPEEDS.contains(&speed)
}

/// `setpts` for the picture at `speed`: timestamps divided by it, from the
/// first picture (so a trimmed clip starts at 0).
pub fn video_filter(speed: f64) -> String {
    if speed == 1.0 {
        "setpts=PTS-STARTPTS".into()
    } else {
        format!("setpts=(PTS-STARTPTS)/{}", num(speed))
    }
}

/// The `atempo` chain for `speed` (empty for 1): each factor within one
/// filter's range, their product `speed`.
pub fn audio_filter(speed: f64) -> String {
    tempo_factors(speed)
        .iter()
        .map(|f| format!("atempo={}", num(*f)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One `atempo`'s range on the oldest FFmpeg this box supports.
const TEMPO_MIN: f64 = 0.5;
const TEMPO_MAX: f64 = 2.0;

fn tempo_factors(speed: f64) -> Vec<f64> {
    let mut left = speed;
    let mut out = Vec::new();
    // Bounded: a factor is at least halved or doubled towards 1 each time.
    while left > TEMPO_MAX && out.len() < 16 {
        out.push(TEMPO_MAX);
        left /= TEMPO_MAX;
    }
    while left < TEMPO_MIN && out.len() < 16 {
        out.push(TEMPO_MIN);
        left /= TEMPO_MIN;
    }
    if (left - 1.0).abs() > 1e-9 {
        out.push(left);
    }
    out
}

/// A number as filter arguments take it: no trailing zeros, never an
/// exponent.
pub(super) fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_designs_speeds_are_allowed() {
        for s in SPEEDS {
            assert!(is_allowed(s));
        }
        for s in [0.0, -1.0, 0.25, 1.5, 4.0, f64::NAN, f64::INFINITY] {
            assert!(!is_allowed(s), "{s}");
        }
    }

    #[test]
    fn atempo_is_chained_within_one_filters_range() {
        assert_eq!(audio_filter(1.0), "");
        assert_eq!(audio_filter(0.5), "atempo=0.5");
        assert_eq!(audio_filter(2.0), "atempo=2");
        assert_eq!(audio_filter(3.0), "atempo=2,atempo=1.5");
        assert_eq!(audio_filter(0.2), "atempo=0.5,atempo=0.5,atempo=0.8");
        for s in [0.2, 0.5, 0.75, 2.0, 3.0, 5.0, 10.0] {
            let f = tempo_factors(s);
            assert!(
                f.iter().all(|x| (TEMPO_MIN..=TEMPO_MAX).contains(x)),
                "{s}: {f:?}"
            );
            let product: f64 = f.iter().product();
            assert!((product - s).abs() < 1e-9, "{s}: {f:?}");
        }
    }

    #[test]
    fn the_picture_is_retimed_from_its_first_frame() {
        assert_eq!(video_filter(1.0), "setpts=PTS-STARTPTS");
        assert_eq!(video_filter(2.0), "setpts=(PTS-STARTPTS)/2");
        assert_eq!(video_filter(0.5), "setpts=(PTS-STARTPTS)/0.5");
    }

    #[test]
    fn numbers_are_plain() {
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.000_000_1), "0");
        assert_eq!(num(12.25), "12.25");
    }
}
