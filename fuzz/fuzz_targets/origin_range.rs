//! The origin's Range and conditional planner: any combination of `Range`,
//! `If-Range`, `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` values gets a status the RFC allows and never a
//! byte outside the file.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use api::origin::decide;
use api::OriginMeta;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // Size from the first 3 bytes (0 – 16 MiB), then `\n`-separated header
    // values, one per name in turn (an empty value leaves the header out).
    let size = u64::from(data[0]) << 16 | u64::from(data[1]) << 8 | u64::from(data[2]);
    let meta = OriginMeta {
        body: None,
        size,
        last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        etag: "abc-1".into(),
        changing: false,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(data[3..].split(|b| *b == b'\n')) {
        if value.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let (status, range) = decide(&meta, &headers);
    match status {
        200 => assert_eq!(range, Some(0..size)),
        206 => {
            let r = range.expect("a 206 sends bytes");
            assert!(r.start < r.end && r.end <= size, "{r:?} of {size}");
        }
        304 | 412 | 416 => assert!(range.is_none()),
        other => panic!("status {other}"),
    }
    if status == 412 {
        assert!(headers.contains_key("if-match") || headers.contains_key("if-unmodified-since"));
    }
});
