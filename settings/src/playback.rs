//! `[playback]`: signed playback of private videos. The box signs playback
//! tokens (JWT) with one key pair and checks the tokens presented to its
//! origin with that key's public half or an older one kept for rotation.
//! Its own file so `lib.rs` only gains the section's field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest token lifetime the box accepts as configuration: a token cannot
/// be revoked, so it should not outlive a key rotation by much.
const MAX_TTL_LIMIT_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Playback {
    /// Key id of `private_key`, written in the header of every token the
    /// box issues (1–64 of `A-Za-z0-9._-`). Empty: signed playback is off
    /// (private videos are never served by the origin, and asking for a
    /// token is a 503).
    pub kid: String,
    /// PEM private key that signs tokens: Ed25519 (EdDSA) or RSA of at
    /// least 2048 bits (RS256), PKCS#8 (`openssl genpkey`); checked at
    /// start-up.
    pub private_key: Option<PathBuf>,
    /// Its PEM public key; a token whose header names `kid` is checked
    /// with it (checked at start-up to match `private_key`).
    pub public_key: Option<PathBuf>,
    /// Older public keys still accepted, by kid: rotate by signing with a
    /// new `kid`/key pair and keeping the old public key here until the
    /// last token it signed has expired (at most `max_ttl_secs`).
    pub accepted: BTreeMap<String, PathBuf>,
    /// Lifetime of a token when the request names none.
    pub default_ttl_secs: u64,
    /// Longest lifetime a request may ask for (`ttlSecs`).
    pub max_ttl_secs: u64,
    /// The CDN in front keys its cache by the `token` query parameter
    /// (nginx: `$request_uri` or `$arg_token` in `proxy_cache_key`): a
    /// response to a request with `?token=` whose token has no IP or
    /// referrer restriction may then be cached, publicly, until the token
    /// expires. Off: every signed response is `private, no-store`.
    pub cdn_keys_by_token: bool,
    /// The client address checked against a token's IP prefix is the last
    /// `X-Forwarded-For` entry (the address the proxy in front saw), not
    /// the connection's peer. Only when every request comes through a
    /// proxy that appends it: a client talking to the box directly could
    /// otherwise name any address.
    pub trust_forwarded_for: bool,
}

impl Default for Playback {
    fn default() -> Self {
        Self {
            kid: String::new(),
            private_key: None,
            public_key: None,
            accepted: BTreeMap::new(),
            default_ttl_secs: 3600,
            max_ttl_secs: 86400,
            cdn_keys_by_token: false,
            trust_forwarded_for: false,
        }
    }
}

/// What a key id may be: it travels in a JWT header and names a config key.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Playback {
    /// Whether tokens are issued and checked at all.
    pub fn enabled(&self) -> bool {
        !self.kid.is_empty()
    }

    /// Anchors the key files like every relative path of a config file
    /// (`anchor(variable, path)`, see `Config::anchor_paths`).
    pub(crate) fn anchor_paths(&mut self, anchor: &dyn Fn(&str, &mut PathBuf)) {
        if let Some(p) = self.private_key.as_mut() {
            anchor("APPLIANCE_PLAYBACK__PRIVATE_KEY", p);
        }
        if let Some(p) = self.public_key.as_mut() {
            anchor("APPLIANCE_PLAYBACK__PUBLIC_KEY", p);
        }
        for (kid, p) in self.accepted.iter_mut() {
            anchor(
                &format!("APPLIANCE_PLAYBACK__ACCEPTED__{}", kid.to_uppercase()),
                p,
            );
        }
    }

    /// The section's rules; the key files themselves are read (and their
    /// pair checked) when the box starts.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=self.max_ttl_secs).contains(&self.default_ttl_secs)
            || self.max_ttl_secs > MAX_TTL_LIMIT_SECS
        {
            return Err(format!(
                "playback.default_ttl_secs must be 1–max_ttl_secs and max_ttl_secs at most {MAX_TTL_LIMIT_SECS} (got {} and {})",
                self.default_ttl_secs, self.max_ttl_secs
            ));
        }
        if !self.enabled() {
            if self.private_key.is_some() || self.public_key.is_some() || !self.accepted.is_empty()
            {
                return Err(
                    "playback.kid is empty (signed playback off) but keys are configured: set playback.kid"
                        .into(),
                );
            }
            return Ok(());
        }
        if !valid_kid(&self.kid) {
            return Err(format!(
                "playback.kid must be 1–64 of A-Za-z0-9._- (got {:?})",
                self.kid
            ));
        }
        if self.private_key.is_none() || self.public_key.is_none() {
            return Err("playback.kid is set: playback.private_key and playback.public_key name its key pair".into());
        }
        for kid in self.accepted.keys() {
            if !valid_kid(kid) || *kid == self.kid {
                return Err(format!(
                    "playback.accepted: {kid:?} must be 1–64 of A-Za-z0-9._- and not playback.kid"
                ));
            }
        }
        Ok(())
    }
}
