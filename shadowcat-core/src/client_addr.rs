use std::net::IpAddr;

use ipnet::IpNet;

/// Resolves the client address of a request.
///
/// The peer address of the TCP connection is the client unless the peer is a trusted
/// proxy. Only then are `X-Forwarded-For` and `Forwarded` read, walking the hops from the
/// right: each trusted hop is skipped and the first untrusted hop is the client. Entries
/// left of that hop are whatever the client chose to send, so they never matter.
#[derive(Debug, Clone, Default)]
pub struct ClientAddrResolver {
    trusted: Vec<IpNet>,
}

impl ClientAddrResolver {
    /// Builds a resolver that trusts forwarding headers only from peers in `trusted`.
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    /// Returns true if `addr` lies in one of the trusted proxy networks.
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = normalize_ip(addr);
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// Resolves the client address from the peer address and the request's forwarding
    /// headers.
    ///
    /// `forwarded_for` contains the values of every `X-Forwarded-For` header in order, and
    /// `forwarded` the values of every `Forwarded` header (RFC 7239). `Forwarded` wins
    /// when both are present. A hop that does not parse as an address ends the walk at
    /// the last trusted address, because nothing left of a garbled hop can be trusted.
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = normalize_ip(peer);
        if !self.is_trusted(peer) {
            return peer;
        }

        let forwarded_hops: Vec<&str> = forwarded
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(forwarded_for_param)
            .collect();
        let hops: Vec<&str> = if forwarded_hops.is_empty() {
            forwarded_for
                .into_iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .collect()
        } else {
            forwarded_hops
        };

        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(addr) = parse_hop(hop) else {
                return client;
            };
            client = addr;
            if !self.is_trusted(addr) {
                return addr;
            }
        }
        client
    }
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to its IPv4 form, so a client
/// counts as the same address whichever socket family it arrived on.
pub fn normalize_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Returns the `for=` value of one `Forwarded` element, if it has one.
fn forwarded_for_param(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Parses one hop: a bare address, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(normalize_ip(addr));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse::<IpAddr>().ok().map(normalize_ip);
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn resolver() -> ClientAddrResolver {
        ClientAddrResolver::new(vec!["10.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let client = resolver().resolve(ip("203.0.113.9"), ["198.51.100.1"], []);
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_uses_rightmost_untrusted_hop() {
        let client = resolver().resolve(ip("10.0.0.2"), ["1.1.1.1, 198.51.100.7", "10.0.0.5"], []);
        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn spoofed_leftmost_entries_change_nothing() {
        let honest = resolver().resolve(ip("10.0.0.2"), ["198.51.100.7"], []);
        let spoofed = resolver().resolve(ip("10.0.0.2"), ["6.6.6.6, 198.51.100.7"], []);
        assert_eq!(honest, spoofed);
    }

    #[test]
    fn forwarded_header_wins_and_parses_ports() {
        let client = resolver().resolve(
            ip("10.0.0.2"),
            ["192.0.2.1"],
            [r#"for="[2001:db8::1]:4711";proto=https, for=10.0.0.3"#],
        );
        assert_eq!(client, ip("2001:db8::1"));
    }

    #[test]
    fn garbled_hop_stops_at_last_trusted() {
        let client = resolver().resolve(ip("10.0.0.2"), ["unknown"], []);
        assert_eq!(client, ip("10.0.0.2"));
    }

    #[test]
    fn all_hops_trusted_returns_leftmost() {
        let client = resolver().resolve(ip("10.0.0.2"), ["10.1.1.1, 10.2.2.2"], []);
        assert_eq!(client, ip("10.1.1.1"));
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        assert_eq!(normalize_ip(ip("::ffff:192.0.2.4")), ip("192.0.2.4"));
        let client = resolver().resolve(ip("::ffff:10.0.0.2"), ["192.0.2.8:1234"], []);
        assert_eq!(client, ip("192.0.2.8"));
    }
}
