//! The page cursors the API hands out: opaque to clients, one codec per
//! kind of list, each refusing (400) any string it did not produce. Kept
//! here, with the wire types, so one module owns what goes over the wire
//! and the fuzz target (`fuzz/fuzz_targets/cursor.rs`) can reach it.

use crate::error::{ApiError, ApiResult};
use crate::origin::valid_id;

/// A refused cursor: a 400 naming the `cursor` parameter.
pub fn bad() -> ApiError {
    ApiError::invalid(
        "cursor",
        "not one this server issued: pass a page's `nextCursor` as it came",
    )
}

/// After (creation time, id): a creator's videos and live channels,
/// newest first.
pub fn created(at: i64, id: &str) -> String {
    hex::encode(format!("{at}:{id}"))
}

pub fn parse_created(cursor: &str) -> ApiResult<(i64, String)> {
    let raw = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    let t = t.parse().map_err(|_| bad())?;
    if id.is_empty() || !valid_id(id) {
        return Err(bad());
    }
    Ok((t, id.to_owned()))
}

/// After (time, user id): follower lists, newest first.
pub fn since(at: i64, id: &str) -> String {
    format!("{at}.{id}")
}

pub fn parse_since(cursor: &str) -> ApiResult<(i64, String)> {
    let (at, id) = cursor.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

/// After a sequence number: comments and replies, jobs.
pub fn seq(n: i64) -> String {
    n.to_string()
}

pub fn parse_seq(cursor: &str) -> ApiResult<i64> {
    cursor.parse().map_err(|_| bad())
}

/// From an offset into a ranked list: a hashtag's videos, search results.
pub fn offset(n: usize) -> String {
    format!("o{n}")
}

pub fn parse_offset(cursor: &str) -> ApiResult<usize> {
    cursor
        .strip_prefix('o')
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = created(1234, "abc");
        assert_eq!(parse_created(&c).unwrap(), (1234, "abc".to_owned()));
        for bad in ["zz", "", &hex::encode("nocolon"), &hex::encode("1:../x")] {
            assert!(parse_created(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_since("12.abc").unwrap(), (12, "abc".into()));
        for bad in ["", "x.y", "12.", "12.a'b", "12"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_seq(&seq(-7)).unwrap(), -7);
        assert_eq!(parse_offset(&offset(40)).unwrap(), 40);
        assert!(parse_offset("40").is_err() && parse_seq("x").is_err());
        assert_eq!(parse_seq("x").unwrap_err().field(), Some("cursor"));
    }
}
