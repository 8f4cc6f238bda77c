//! The origin's path grammar: whatever a client puts after `/hls/{id}/`,
//! only the shapes the packager writes are served, and none leaves the
//! video's folder.
#![no_main]

use api::origin::{classify, FileKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(kind) = classify(path) else {
        return;
    };
    assert!(!path.starts_with('/'), "absolute: {path:?}");
    assert!(path.split('/').count() <= 2, "too deep: {path:?}");
    for part in path.split('/') {
        assert!(!part.is_empty() && !part.starts_with('.'), "{path:?}");
        assert!(
            part.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'),
            "unsafe byte in {path:?}"
        );
    }
    let ext_ok = match kind {
        FileKind::Playlist => path.ends_with(".m3u8"),
        FileKind::InitSegment => path.ends_with("/init.mp4"),
        FileKind::MediaSegment => path.ends_with(".m4s"),
        FileKind::Poster => path == "poster.jpg",
    };
    assert!(ext_ok, "{kind:?} for {path:?}");
});
