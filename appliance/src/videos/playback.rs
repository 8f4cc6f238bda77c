//! Signed playback (`api::Playback`): playback tokens for a video's owner
//! or an admin, and the check of every token the origin is shown.
//!
//! A token is a JWT (RFC 7519) signed with the `[playback]` key pair:
//! EdDSA (Ed25519) or RS256, whichever the private key is; `kid` in its
//! header names the key; its claims are `sub` (the video), `iat`, `exp`
//! and, when asked for, `ref` (an allowed referrer prefix) and `ip` (an
//! allowed client prefix, CIDR). Nothing is stored: a token is good until
//! it expires, for that video only, and the only way to withdraw tokens
//! early is a new key pair without the old public key in
//! `playback.accepted`. Keys are read once, at start-up; a key that cannot
//! be read, or a private key that does not match its public key, stops the
//! box (`Tokens::usable`) rather than failing on the first request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::service::OriginLookup;
use api::wire::{
    IssuedToken, PlaybackClient, PlaybackGrant, PlaybackTokenRequest, Principal, Video,
};
use api::{ApiError, ApiResult, ErrorCode};
use ipnet::IpNet;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Videos;
use crate::error::{Error, Result};
use crate::store::catalog as cat;

/// Longest `ref` a token may carry: it travels in every URL of a playlist.
const MAX_REFERRER: usize = 512;
/// Smallest RSA key that signs tokens (NIST SP 800-57: 112-bit security).
const MIN_RSA_BITS: usize = 2048;

/// The claims of a playback token, all of them: anything else in a token
/// makes it one the box did not issue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
}

/// The box's playback keys, as configured.
pub struct Tokens(State);

enum State {
    /// `playback.kid` is empty: no tokens, private videos never served.
    Off,
    On(Box<Keys>),
    /// Configured but unusable: why (the box refuses to start).
    Broken(String),
}

struct Keys {
    kid: String,
    alg: Algorithm,
    signer: EncodingKey,
    /// Every accepted key id: the signing key's public half and the
    /// rotated-out ones.
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
    default_ttl: u64,
    max_ttl: u64,
    cdn_keys_by_token: bool,
    trust_forwarded_for: bool,
}

/// Why a presented token is refused: the 403's message and its
/// `details.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Off,
    Malformed,
    UnknownKey,
    Signature,
    Expired,
    OtherVideo,
    Address,
    Referrer,
}

impl Refusal {
    fn into_error(self) -> ApiError {
        let (reason, message) = match self {
            Self::Off => ("off", "signed playback is not configured on this box"),
            Self::Malformed => ("malformed", "the playback token is not one this box issues"),
            Self::UnknownKey => (
                "kid",
                "the playback token names a key this box does not accept",
            ),
            Self::Signature => (
                "signature",
                "the playback token's signature does not check out",
            ),
            Self::Expired => ("expired", "the playback token has expired"),
            Self::OtherVideo => ("video", "the playback token is for another video"),
            Self::Address => ("ip", "the playback token is not valid from this address"),
            Self::Referrer => ("referrer", "the playback token is not valid from this page"),
        };
        ApiError::forbidden(message).with_details(serde_json::json!({ "reason": reason }))
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn from_config(c: &settings::Playback) -> Self {
        if !c.enabled() {
            return Self(State::Off);
        }
        match Keys::load(c) {
            Ok(keys) => Self(State::On(Box::new(keys))),
            Err(why) => Self(State::Broken(why)),
        }
    }

    /// Start-up check: keys that are configured but unusable stop the box.
    pub fn usable(&self) -> Result<()> {
        match &self.0 {
            State::Broken(why) => Err(Error::Config(why.clone())),
            State::Off | State::On(_) => Ok(()),
        }
    }

    fn keys(&self) -> Option<&Keys> {
        match &self.0 {
            State::On(keys) => Some(keys),
            State::Off | State::Broken(_) => None,
        }
    }

    /// A token for `video_id` issued at `now` (seconds since the epoch),
    /// with its expiry.
    fn issue_at(
        &self,
        video_id: &str,
        req: PlaybackTokenRequest,
        now: u64,
    ) -> ApiResult<(String, u64)> {
        match self.keys() {
            Some(keys) => keys.issue_at(video_id, req, now),
            None => Err(ApiError::new(
                ErrorCode::Unavailable,
                "signed playback is not configured on this box ([playback] in appliance.toml)",
            )),
        }
    }

    fn verify(
        &self,
        token: &str,
        video_id: &str,
        client: &PlaybackClient,
    ) -> std::result::Result<PlaybackGrant, Refusal> {
        self.keys()
            .ok_or(Refusal::Off)?
            .verify(token, video_id, client)
    }
}

impl Keys {
    fn issue_at(
        &self,
        video_id: &str,
        req: PlaybackTokenRequest,
        now: u64,
    ) -> ApiResult<(String, u64)> {
        let ttl = req.ttl_secs.unwrap_or(self.default_ttl);
        if !(1..=self.max_ttl).contains(&ttl) {
            return Err(ApiError::invalid(
                "ttlSecs",
                format!("must be 1–{} seconds", self.max_ttl),
            ));
        }
        let referrer = req.referrer.map(checked_referrer).transpose()?;
        let ip = req.ip_prefix.as_deref().map(checked_prefix).transpose()?;
        let claims = Claims {
            sub: video_id.to_owned(),
            iat: now,
            exp: now + ttl,
            referrer,
            ip: ip.map(|net| net.to_string()),
        };
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signer)
            .map_err(|e| ApiError::internal(format!("signing a playback token: {e}")))?;
        Ok((token, claims.exp))
    }

    fn verify(
        &self,
        token: &str,
        video_id: &str,
        client: &PlaybackClient,
    ) -> std::result::Result<PlaybackGrant, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let (alg, key) = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifiers.get(kid))
            .ok_or(Refusal::UnknownKey)?;
        // Only the algorithm of the key the token names (no `alg`
        // confusion), no clock leeway (the box issued it, on this clock).
        let mut validation = Validation::new(*alg);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| {
                // `ErrorKind` is non-exhaustive: whatever else it says, the
                // token is not one of ours.
                let kind = e.kind();
                if matches!(kind, ErrorKind::ExpiredSignature) {
                    Refusal::Expired
                } else if matches!(
                    kind,
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                ) {
                    Refusal::Signature
                } else {
                    Refusal::Malformed
                }
            })?
            .claims;
        if claims.sub != video_id {
            return Err(Refusal::OtherVideo);
        }
        if let Some(prefix) = &claims.ip {
            let net: IpNet = prefix.parse().map_err(|_| Refusal::Malformed)?;
            let from = self.client_ip(client).ok_or(Refusal::Address)?;
            if !net.contains(&from) {
                return Err(Refusal::Address);
            }
        }
        if let Some(allowed) = &claims.referrer {
            let from = client.referer.as_deref().ok_or(Refusal::Referrer)?;
            if !referrer_allows(allowed, from) {
                return Err(Refusal::Referrer);
            }
        }
        Ok(PlaybackGrant {
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
            // A restriction is the origin's to enforce: a shared cache
            // would hand the file to any address or page with the token.
            shareable: self.cdn_keys_by_token && claims.ip.is_none() && claims.referrer.is_none(),
        })
    }

    fn load(c: &settings::Playback) -> std::result::Result<Self, String> {
        // `Config::validate` made sure both are named when `kid` is set.
        let (Some(private), Some(public)) = (&c.private_key, &c.public_key) else {
            return Err("playback.kid is set: playback.private_key and playback.public_key name its key pair".into());
        };
        let (alg, signer) = signing_key(&read_pem("private_key", private)?).ok_or_else(|| {
            format!(
                "playback.private_key {}: not a PEM Ed25519 or RSA private key",
                private.display()
            )
        })?;
        let mut verifiers = HashMap::new();
        let public_pair = verifying_key(&read_pem("public_key", public)?)
            .filter(|(a, _)| *a == alg)
            .ok_or_else(|| {
                format!(
                    "playback.public_key {}: not a PEM public key of the private key's kind",
                    public.display()
                )
            })?;
        verifiers.insert(c.kid.clone(), public_pair);
        for (kid, path) in &c.accepted {
            let key =
                verifying_key(&read_pem(&format!("accepted.{kid}"), path)?).ok_or_else(|| {
                    format!(
                        "playback.accepted.{kid} {}: not a PEM Ed25519 or RSA public key",
                        path.display()
                    )
                })?;
            verifiers.insert(kid.clone(), key);
        }
        let keys = Self {
            kid: c.kid.clone(),
            alg,
            signer,
            verifiers,
            default_ttl: c.default_ttl_secs,
            max_ttl: c.max_ttl_secs,
            cdn_keys_by_token: c.cdn_keys_by_token,
            trust_forwarded_for: c.trust_forwarded_for,
        };
        // A pair that does not match would issue tokens nobody accepts.
        let (token, _) = keys
            .issue_at(
                "probe",
                PlaybackTokenRequest::default(),
                unix_secs(SystemTime::now()),
            )
            .map_err(|e| format!("playback.private_key {}: {}", private.display(), e.message))?;
        if keys
            .verify(&token, "probe", &PlaybackClient::default())
            .is_err()
        {
            return Err(format!(
                "playback.private_key {} and playback.public_key {} are not one key pair",
                private.display(),
                public.display()
            ));
        }
        // An RSA signature is as long as the modulus: the one way to see
        // the key's size through the crate, and shorter keys are breakable.
        let signature_bits = token.rsplit('.').next().map_or(0, |s| s.len() * 6);
        if alg == Algorithm::RS256 && signature_bits < MIN_RSA_BITS {
            return Err(format!(
                "playback.private_key {}: an RSA key needs at least {MIN_RSA_BITS} bits",
                private.display()
            ));
        }
        Ok(keys)
    }

    /// The address a token's IP prefix is checked against.
    fn client_ip(&self, client: &PlaybackClient) -> Option<IpAddr> {
        let forwarded = client
            .forwarded_for
            .as_deref()
            .filter(|_| self.trust_forwarded_for)
            // The last entry is the one the proxy in front appended: the
            // address it saw. Earlier ones are whatever the client sent.
            .and_then(|xff| xff.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        // `::ffff:a.b.c.d` (a dual-stack listener) is the IPv4 client.
        forwarded.or(client.peer).map(|ip| ip.to_canonical())
    }
}

fn read_pem(what: &str, path: &Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("playback.{what} {}: {e}", path.display()))
}

fn signing_key(pem: &[u8]) -> Option<(Algorithm, EncodingKey)> {
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        return Some((Algorithm::EdDSA, key));
    }
    EncodingKey::from_rsa_pem(pem)
        .ok()
        .map(|key| (Algorithm::RS256, key))
}

fn verifying_key(pem: &[u8]) -> Option<(Algorithm, DecodingKey)> {
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Some((Algorithm::EdDSA, key));
    }
    DecodingKey::from_rsa_pem(pem)
        .ok()
        .map(|key| (Algorithm::RS256, key))
}

/// `referrer` as a token may carry it: an `http(s)://` URL or prefix.
fn checked_referrer(referrer: String) -> ApiResult<String> {
    let rest = referrer
        .strip_prefix("https://")
        .or_else(|| referrer.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.is_empty())
        && referrer.chars().count() <= MAX_REFERRER
        && !referrer
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(referrer)
    } else {
        Err(ApiError::invalid(
            "referrer",
            format!("must be an http:// or https:// URL of at most {MAX_REFERRER} characters"),
        ))
    }
}

/// `ipPrefix` as a network: CIDR, or one address (a /32 or /128); host
/// bits are dropped (`10.1.2.3/16` is `10.1.0.0/16`).
fn checked_prefix(prefix: &str) -> ApiResult<IpNet> {
    let prefix = prefix.trim();
    prefix
        .parse::<IpNet>()
        .or_else(|_| prefix.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            ApiError::invalid(
                "ipPrefix",
                "must be a CIDR prefix (203.0.113.0/24, 2001:db8::/32) or an address",
            )
        })
}

/// A `Referer` is allowed when it is the token's referrer or a URL under
/// it: `https://a.example` admits `https://a.example/watch?v=1` but not
/// `https://a.example.evil.net/`.
fn referrer_allows(allowed: &str, referer: &str) -> bool {
    match referer.strip_prefix(allowed) {
        Some("") => true,
        Some(rest) => allowed.ends_with('/') || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

impl api::Playback for Videos {
    async fn playback_token(
        &self,
        caller: &Principal,
        video_id: &str,
        req: PlaybackTokenRequest,
    ) -> ApiResult<IssuedToken> {
        let vid = video_id.to_owned();
        let row = self.catalog.read(move |c| cat::video(c, &vid)).await?;
        // Someone else's video is as absent as on its page: no hint that
        // a private video exists.
        if !row.is_some_and(|v| v.state != "deleting" && caller.may_manage(&v.owner_id)) {
            return Err(ApiError::not_found("video"));
        }
        let (token, exp) = self
            .playback
            .issue_at(video_id, req, unix_secs(SystemTime::now()))?;
        Ok(IssuedToken {
            token,
            expires_at: cat::rfc3339(i64::try_from(exp).unwrap_or(i64::MAX / 1000) * 1000),
        })
    }

    fn check_playback(
        &self,
        token: &str,
        video_id: &str,
        client: &PlaybackClient,
    ) -> ApiResult<PlaybackGrant> {
        self.playback
            .verify(token, video_id, client)
            .map_err(Refusal::into_error)
    }

    async fn signed_lookup(&self, video_id: &str, path: &str) -> ApiResult<OriginLookup> {
        self.ladder_lookup(video_id, path, true).await
    }

    async fn signed_video(&self, video_id: &str) -> ApiResult<Video> {
        let vid = video_id.to_owned();
        let row = self.catalog.read(move |c| cat::video(c, &vid)).await?;
        match row {
            Some(v) if v.state != "deleting" => Ok(crate::store::video_wire(&v)),
            Some(_) | None => Err(ApiError::not_found("video")),
        }
    }
}

#[cfg(test)]
#[path = "playback_tests.rs"]
mod tests;
