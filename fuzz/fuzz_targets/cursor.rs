//! Page cursors come back from clients: any string is refused or decodes to
//! a value that re-encodes to the same cursor, and a decoded video id is
//! one the catalog could have issued.
#![no_main]

use api::cursor;
use api::origin::valid_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((at, id)) = cursor::parse_created(s) {
        assert!(valid_id(&id), "{id:?}");
        assert_eq!(
            cursor::parse_created(&cursor::created(at, &id)).unwrap(),
            (at, id)
        );
    }
    if let Ok((at, id)) = cursor::parse_since(s) {
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            cursor::parse_since(&cursor::since(at, &id)).unwrap(),
            (at, id)
        );
    }
    if let Ok(n) = cursor::parse_seq(s) {
        assert_eq!(cursor::parse_seq(&cursor::seq(n)).unwrap(), n);
    }
    if let Ok(n) = cursor::parse_offset(s) {
        assert_eq!(cursor::parse_offset(&cursor::offset(n)).unwrap(), n);
    }
});
