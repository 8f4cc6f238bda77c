//! Signed playback: the token a private video's creator (or an admin) asks
//! for, and what the origin hands the domain to check a presented token.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/videos/{id}/playback-token`. Every member is optional (an
/// empty body is `{}`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaybackTokenRequest {
    /// Seconds the token is valid: 1 to the box's `playback.max_ttl_secs`
    /// (24 h unless configured); `playback.default_ttl_secs` (1 h) when
    /// absent.
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_secs: Option<u64>,
    /// Only requests whose `Referer` is this URL, or a URL under it, are
    /// served (an `http(s)://` origin or URL prefix). A browser that sends
    /// no `Referer` is refused.
    #[schema(max_length = 512, pattern = r"^https?://\S+$")]
    pub referrer: Option<String>,
    /// Only clients in this prefix are served: CIDR (`203.0.113.0/24`,
    /// `2001:db8::/32`) or one address.
    #[schema(min_length = 2, max_length = 49)]
    pub ip_prefix: Option<String>,
}

/// A playback token and the URLs that carry it. The URLs are paths on this
/// origin (or the CDN in front of it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaybackToken {
    /// A JWT (EdDSA or RS256, `kid` in its header) whose claims are the
    /// video (`sub`), `iat`, `exp` and, when asked for, `ref` and `ip`.
    pub token: String,
    /// RFC 3339; every request with the token is refused (403) from then.
    pub expires_at: String,
    /// `/hls/{id}/master.m3u8?token=…`: give it to any HLS player; every
    /// playlist served with a token names its files with the token.
    pub master_url: String,
    /// `/play/{id}?token=…`: the box's player page for the video.
    pub player_url: String,
}

/// A token the domain issued (the handler adds the URLs).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// What a token's restrictions are checked against: the request as the
/// origin saw it.
#[derive(Debug, Clone, Default)]
pub struct PlaybackClient {
    /// The connection's peer (absent when the router is driven in
    /// process).
    pub peer: Option<IpAddr>,
    /// `X-Forwarded-For` as received (all its lines, comma-joined); used
    /// only where the box is told to trust it.
    pub forwarded_for: Option<String>,
    /// `Referer` as received.
    pub referer: Option<String>,
}

/// A token that checked out.
#[derive(Debug, Clone, Copy)]
pub struct PlaybackGrant {
    pub expires_at: SystemTime,
    /// A shared cache may keep the response under a key that includes the
    /// token (the CDN is configured to, and the token has no IP or
    /// referrer restriction, which only the origin can enforce).
    pub shareable: bool,
}
