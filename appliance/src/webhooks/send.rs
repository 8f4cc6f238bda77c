//! One attempt of one delivery: a signed POST with a time limit, no
//! redirects followed (a 3xx is a failed attempt, not a way around the
//! target policy), no proxy from the environment, and — unless private
//! targets are allowed — a resolver that drops every non-public address a
//! name resolves to, so the check holds for the address actually dialled,
//! whatever DNS says after registration.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::model::public_ip;
use super::signing;
use crate::error::{Error, Result};

/// What came of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it is not a success (None for a 2xx).
    pub error: Option<String>,
    pub duration_ms: i64,
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

/// Resolves with the system resolver, then keeps the public addresses.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| public_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (webhooks.allow_private is off)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

impl Sender {
    pub fn new(cfg: &settings::Webhooks) -> Result<Self> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("appliance-webhooks/", env!("CARGO_PKG_VERSION")));
        if !cfg.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("webhooks: cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            allow_private: cfg.allow_private,
            timeout,
        })
    }

    /// POSTs `body` to `url` as event `id`, signed with `secret`.
    pub async fn send(&self, url: &str, secret: &str, id: &str, body: &str) -> Sent {
        let started = Instant::now();
        let (status, error) = match self.try_send(url, secret, id, body).await {
            Ok(s) if (200..300).contains(&s) => (Some(s), None),
            Ok(s) => (Some(s), Some(format!("HTTP {s}"))),
            Err(e) => (None, Some(e)),
        };
        Sent {
            status,
            error,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        }
    }

    async fn try_send(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        body: &str,
    ) -> std::result::Result<u16, String> {
        let target = url::Url::parse(url).map_err(|e| format!("the URL does not parse: {e}"))?;
        // A literal address is dialled without the resolver: check it here.
        if !self.allow_private {
            let literal = match target.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                Some(url::Host::Domain(_)) | None => None,
            };
            if literal.is_some_and(|ip| !public_ip(ip)) {
                return Err("not a public address (webhooks.allow_private is off)".into());
            }
        }
        let key = signing::key_of(secret).map_err(|e| format!("the endpoint's secret {e}"))?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signing::signature(&key, id, timestamp, body.as_bytes());
        // The answer's body is not read: only the status counts, and a
        // receiver's page must not fill the log.
        let response = self
            .client
            .post(target)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| self.describe(&e))?;
        Ok(response.status().as_u16())
    }

    /// A transport failure in a line: what failed, and the innermost cause
    /// (reqwest's own text names only the layer).
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("no answer within {} s", self.timeout.as_secs());
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else {
            "the request failed"
        };
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        format!("{what}: {cause}")
    }
}
