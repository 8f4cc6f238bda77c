//! tus request headers from any text a client may send: `Upload-Metadata`,
//! `Upload-Checksum`, `Upload-Length`/`Upload-Offset` and `Tus-Resumable`
//! each parse or are refused with an error naming the header (400, or 412
//! for the version), never a panic; parsed metadata keeps its promises
//! (unique, non-empty keys) and maps onto a creation with a filename and a
//! title.
#![no_main]

use api::tus::{check_version, creation, parse_checksum, parse_metadata, parse_number};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Header values reach the parsers as text (non-ASCII is refused before).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_metadata(text) {
        Ok(pairs) => {
            for (i, (k, _)) in pairs.iter().enumerate() {
                assert!(!k.is_empty() && !k.contains([' ', ',']), "{k:?}");
                assert!(
                    pairs[..i].iter().all(|(other, _)| other != k),
                    "{k:?} twice"
                );
            }
        }
        Err(e) => assert_eq!(e.field(), Some("Upload-Metadata"), "{e}"),
    }
    match creation(1, Some(text)) {
        Ok(c) => {
            assert!(!c.filename.trim().is_empty());
            assert!(c.meta.title.chars().count() <= 150 || text.contains("title"));
            assert_eq!(c.metadata.as_deref(), Some(text));
        }
        Err(e) => assert_eq!(e.field(), Some("Upload-Metadata"), "{e}"),
    }
    match parse_checksum(text) {
        Ok(_) => {
            let t = text.trim_start().to_ascii_lowercase();
            assert!(t.starts_with("sha256 ") || t.starts_with("sha1 "), "{text:?}");
        }
        Err(e) => assert_eq!(e.field(), Some("Upload-Checksum"), "{e}"),
    }
    if let Some(n) = parse_number(text) {
        let digits = text.trim_start_matches('0');
        assert_eq!(n.to_string(), if digits.is_empty() { "0" } else { digits });
    }
    if let Err(e) = check_version(Some(text)) {
        assert_eq!(e.status().as_u16(), 412);
    }
});
