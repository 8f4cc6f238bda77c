//! The rules of an endpoint: which URLs may be registered and which
//! addresses a delivery may connect to, and the events an endpoint takes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use api::wire::WebhookEvent;

/// The URL an endpoint is registered with, or why not: `http`/`https`, a
/// host, no credentials (they would be shown in every listing and log) and
/// no fragment (never sent anyway). Unless `allow_private`, a host that is
/// a non-public address literal or a `localhost` name is refused here;
/// names are checked again against what they resolve to at each delivery.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be http or https, not {}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user:password@ (put credentials in the path or query if the receiver needs them)".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let host = url.host().ok_or_else(|| "must name a host".to_owned())?;
    if !allow_private {
        let refused = match host {
            url::Host::Ipv4(ip) => !public_ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => !public_ip(IpAddr::V6(ip)),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if refused {
            return Err("is not a public address (the box's webhooks.allow_private is off)".into());
        }
    }
    Ok(url)
}

/// Whether `ip` is a public unicast address: not loopback, private
/// (RFC 1918, unique-local), link-local, shared (CGNAT), unspecified,
/// broadcast, multicast, documentation, benchmarking or reserved. What a
/// delivery may connect to when private targets are not allowed.
pub fn public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT, the operator's side of it.
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24: IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4: reserved.
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    // An IPv4 address in IPv6 clothing is judged as IPv4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its low bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = s;
        return public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // ::/96, IPv4-compatible (deprecated): nothing public lives there.
        || s[..6] == [0; 6]
        // fc00::/7 unique-local, fe80::/10 link-local, fec0::/10 site-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 2001:db8::/32 documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8))
}

/// The events as stored and shown: each once, in the vocabulary's order.
pub fn canonical_events(events: &[WebhookEvent]) -> Vec<WebhookEvent> {
    WebhookEvent::ALL
        .into_iter()
        .filter(|e| events.contains(e))
        .collect()
}

/// The stored names back as events (a name this binary does not know —
/// written by a newer one — is left out).
pub fn events_of(names: &[String]) -> Vec<WebhookEvent> {
    names
        .iter()
        .filter_map(|n| WebhookEvent::parse(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        for ok in [
            "https://hooks.example.com/in",
            "http://example.com:8080/a?b=c",
            "https://93.184.216.34/x",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "http://",
            "example.com/in",
            "javascript:alert(1)",
        ] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_targets_only_when_allowed() {
        for private in [
            "http://127.0.0.1:9000/",
            "http://localhost/",
            "http://api.localhost./",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
        ] {
            assert!(check_url(private, false).is_err(), "{private}");
            assert!(check_url(private, true).is_ok(), "{private}");
        }
        assert!(public_ip("8.8.8.8".parse().unwrap()));
        assert!(public_ip("2606:4700:4700::1111".parse().unwrap()));
        assert!(
            public_ip("64:ff9b::808:808".parse().unwrap()),
            "NAT64 of 8.8.8.8"
        );
        assert!(!public_ip("198.19.0.1".parse().unwrap()));
        assert!(!public_ip("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn events_are_kept_once_in_order() {
        use WebhookEvent::*;
        assert_eq!(
            canonical_events(&[UploadExpired, VideoReady, UploadExpired]),
            [VideoReady, UploadExpired]
        );
        let names = vec!["live.stopped".to_owned(), "from.the.future".to_owned()];
        assert_eq!(events_of(&names), [LiveStopped]);
    }
}
