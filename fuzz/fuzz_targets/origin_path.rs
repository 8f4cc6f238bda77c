//! The origin's path grammar: whatever a client puts after `/hls/{id}/`
//! or `/live/{id}/`, only the shapes the packager and the live ladder
//! write are served, and none leaves the video's (or channel's) folder.
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
        // `init.mp4`, or a live run's (and its recording's) `init-{run}.mp4`.
        FileKind::InitSegment => path.rsplit('/').next().is_some_and(|f| {
            f == "init.mp4"
                || f.strip_prefix("init-")
                    .and_then(|r| r.strip_suffix(".mp4"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }),
        FileKind::MediaSegment => path.ends_with(".m4s"),
        FileKind::Poster => path == "poster.jpg",
        FileKind::Storyboard => path == "storyboard.jpg",
        FileKind::Thumbnails => path == "storyboard.vtt",
        FileKind::Download => path == "download.mp4",
    };
    assert!(ext_ok, "{kind:?} for {path:?}");
});
