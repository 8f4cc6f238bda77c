//! The arguments of a filter graph's source (`buffer`, `abuffer`) that
//! describe a decoded frame: one definition for every graph the crate
//! builds (the ladder's normaliser, the audio branch, the fingerprint
//! decode, the edit stage's composition, a live camera's resampler).

use ff::Rational;
use ffmpeg_next as ff;

/// `buffer` arguments for pictures like `first` in `time_base`. A frame
/// with no sample aspect ratio (0/1) is taken as square pixels.
pub(crate) fn buffer_args(first: &ff::frame::Video, time_base: Rational) -> String {
    let sar = first.aspect_ratio();
    let sar = if sar.numerator() > 0 {
        sar
    } else {
        Rational::new(1, 1)
    };
    format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        first.width(),
        first.height(),
        ff::ffi::AVPixelFormat::from(first.format()) as i32,
        time_base.numerator(),
        time_base.denominator(),
        sar.numerator(),
        sar.denominator()
    )
}

/// `abuffer` arguments for sound like `first` in `time_base`; its layout
/// is guessed from its channel count when the decoder gave none.
pub(crate) fn abuffer_args(first: &ff::frame::Audio, time_base: Rational) -> String {
    let channels = first.channels().max(1);
    let layout = if first.channel_layout().is_empty() {
        ff::ChannelLayout::default(i32::from(channels))
    } else {
        first.channel_layout()
    };
    format!(
        "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        time_base.numerator(),
        time_base.denominator(),
        first.rate(),
        first.format().name(),
        layout.bits()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_without_aspect_or_layout_gets_square_pixels_and_a_guessed_layout() {
        crate::init();
        let v = ff::frame::Video::new(ff::format::Pixel::YUV420P, 64, 48);
        assert_eq!(
            buffer_args(&v, Rational::new(1, 30)),
            format!(
                "video_size=64x48:pix_fmt={}:time_base=1/30:pixel_aspect=1/1",
                ff::ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32
            )
        );
        let mut a = ff::frame::Audio::empty();
        a.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
        a.set_rate(48_000);
        a.set_channels(2);
        let args = abuffer_args(&a, Rational::new(1, 48_000));
        assert_eq!(
            args,
            format!(
                "time_base=1/48000:sample_rate=48000:sample_fmt=fltp:channel_layout=0x{:x}",
                ff::ChannelLayout::STEREO.bits()
            )
        );
    }
}
