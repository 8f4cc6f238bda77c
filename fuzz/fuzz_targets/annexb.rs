//! MP4 (`avcC`/`hvcC` + length-prefixed NAL units) to Annex B, as NVDEC is
//! fed from uploaded files: any bytes are refused or converted, never a
//! panic or a read past the packet, and the output is start codes and
//! exactly the input's NAL payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::backend::nvidia::AnnexB;

fuzz_target!(|data: &[u8]| {
    // [flags][extradata length: 2 bytes][extradata][packet]
    if data.len() < 3 {
        return;
    }
    let (hevc, key) = (data[0] & 1 == 1, data[0] & 2 == 2);
    let n = usize::from(u16::from_be_bytes([data[1], data[2]])).min(data.len() - 3);
    let (extradata, packet) = data[3..].split_at(n);
    let Ok(conv) = AnnexB::new(extradata, hevc) else {
        return;
    };
    let Ok(out) = conv.convert(packet, key) else {
        return;
    };
    if extradata.first() != Some(&1) {
        assert_eq!(out, packet, "Annex B input passes through");
    } else if !key {
        // Start codes add 4 bytes per NAL unit, length fields take ≥ 1.
        assert!(out.len() <= packet.len() * 4 + 4);
        assert!(out.is_empty() || out.starts_with(&[0, 0, 0, 1]));
    }
});
