//! Feed sessions behind opaque cursors: a ranked list is computed once,
//! pages are cut from it, and a session never shows a video twice.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine as _;

use crate::error::{InferenceError, Result};

pub(crate) struct Session<E> {
    pub user: String,
    pub list: Vec<E>,
    pub pos: usize,
    pub served: HashSet<u32>,
    pub touched: i64,
}

pub(crate) struct Sessions<E> {
    map: HashMap<u64, Session<E>>,
    order: VecDeque<u64>,
    cap: usize,
    ttl: i64,
}

impl<E> Sessions<E> {
    pub fn new(cap: usize, ttl: i64) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
            ttl,
        }
    }

    pub fn insert(&mut self, id: u64, session: Session<E>) {
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(id, session);
        self.order.push_back(id);
    }

    /// The live session `id` of `user`, if it has not expired.
    pub fn get(&mut self, id: u64, user: &str, now: i64) -> Option<&mut Session<E>> {
        let expired = self
            .map
            .get(&id)
            .is_some_and(|s| now - s.touched > self.ttl);
        if expired {
            self.map.remove(&id);
            return None;
        }
        self.map.get_mut(&id).filter(|s| s.user == user)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

const PREFIX: &str = "c1.";

pub fn encode_cursor(session: u64, page: u32) -> String {
    let mut raw = [0u8; 12];
    raw[..8].copy_from_slice(&session.to_le_bytes());
    raw[8..].copy_from_slice(&page.to_le_bytes());
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// Parses a cursor made by [`encode_cursor`]; anything else is refused.
pub fn decode_cursor(cursor: &str) -> Result<(u64, u32)> {
    let bad = |why: &str| InferenceError::BadCursor(why.to_string());
    let body = cursor
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("unknown cursor format"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| bad("cursor is not valid base64url"))?;
    let raw: [u8; 12] = raw
        .try_into()
        .map_err(|_| bad("cursor has the wrong length"))?;
    let mut s = [0u8; 8];
    s.copy_from_slice(&raw[..8]);
    let mut p = [0u8; 4];
    p.copy_from_slice(&raw[8..]);
    Ok((u64::from_le_bytes(s), u32::from_le_bytes(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(0xdead_beef_1234, 7);
        assert_eq!(decode_cursor(&c).unwrap(), (0xdead_beef_1234, 7));
        for bad in [
            "",
            "c1.",
            "c1.!!!!",
            "xx.AAAAAAAAAAAAAAAA",
            "c1.AAAA",
            &c[..c.len() - 2],
        ] {
            assert!(
                matches!(decode_cursor(bad), Err(InferenceError::BadCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sessions_expire_belong_to_one_user_and_are_capped() {
        let mut s: Sessions<u32> = Sessions::new(2, 60);
        let mk = |user: &str| Session {
            user: user.into(),
            list: vec![1, 2],
            pos: 0,
            served: HashSet::new(),
            touched: 0,
        };
        s.insert(1, mk("a"));
        assert!(s.get(1, "b", 10).is_none());
        assert!(s.get(1, "a", 10).is_some());
        assert!(s.get(1, "a", 100).is_none());
        s.insert(2, mk("a"));
        s.insert(3, mk("a"));
        s.insert(4, mk("a"));
        assert_eq!(s.len(), 2);
    }
}
