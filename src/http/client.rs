//! Who the client is: the connection's peer, unless the peer is a trusted proxy, in which
//! case the address the proxy names. Every door and the gateway's limits use this one
//! answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

use ipnet::{IpNet, Ipv6Net};

/// The client's address: the peer's, unless the peer is a configured proxy, in which case
/// the nearest untrusted address in `X-Forwarded-For` (else `X-Real-IP`).
#[derive(Clone, Debug)]
pub(crate) struct ClientIp {
    trusted: Arc<Vec<IpNet>>,
}

impl ClientIp {
    pub(crate) fn new(trusted: Vec<IpNet>) -> ClientIp {
        ClientIp {
            trusted: Arc::new(trusted),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a connection from `peer` that sent `headers`.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        // Walk the chain from the nearest hop back; the first address no trusted proxy
        // added is the client. (Nginx overwrites the header, so it holds one address.)
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| parse_hop(s.trim()))
            .collect();
        if let Some(ip) = forwarded.iter().rev().find(|ip| !self.is_trusted(**ip)) {
            return *ip;
        }
        if let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_hop(v.trim()))
        {
            return ip;
        }
        forwarded.first().copied().unwrap_or(peer)
    }

    /// The client of an axum request (the connection's peer comes from `ConnectInfo`;
    /// without it — a router served without connect info — the unspecified address).
    pub(crate) fn of_request<B>(&self, request: &axum::http::Request<B>) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.resolve(peer, request.headers())
    }
}

/// One hop of `X-Forwarded-For`: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// What a per-IP budget belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network — a single host can use any address in it).
pub(crate) fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Net::new_assert(v6, 64).network()),
        v4 => v4,
    }
}

/// The client's address as the gateway resolved it (a request extension for handlers,
/// such as the sockets, that go on counting after the upgrade).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr(pub IpAddr);

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = ClientIp::new(vec![]);
        let spoof = headers(&[("x-forwarded-for", "9.9.9.9"), ("x-real-ip", "8.8.8.8")]);
        assert_eq!(none.resolve(ip("203.0.113.7"), &spoof), ip("203.0.113.7"));

        let proxies = ClientIp::new(vec![
            parse_network("127.0.0.1").unwrap(),
            parse_network("10.0.0.0/8").unwrap(),
        ]);
        // From the proxy: the nearest untrusted hop.
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(proxies.resolve(ip("127.0.0.1"), &chain), ip("203.0.113.9"));
        // X-Real-IP when there is no X-Forwarded-For; the peer when there is neither.
        let real = headers(&[("x-real-ip", "203.0.113.5")]);
        assert_eq!(proxies.resolve(ip("10.9.9.9"), &real), ip("203.0.113.5"));
        assert_eq!(
            proxies.resolve(ip("10.9.9.9"), &HeaderMap::new()),
            ip("10.9.9.9")
        );
        // Garbage in the header is skipped, not trusted.
        let junk = headers(&[("x-forwarded-for", "not-an-ip, 203.0.113.8:4711")]);
        assert_eq!(proxies.resolve(ip("127.0.0.1"), &junk), ip("203.0.113.8"));
        // IPv4-mapped peers are their IPv4 address.
        assert_eq!(
            proxies.resolve(ip("::ffff:127.0.0.1"), &chain),
            ip("203.0.113.9")
        );
        // An untrusted peer's headers are ignored even if they name a proxy.
        assert_eq!(proxies.resolve(ip("192.0.2.1"), &chain), ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa::1")),
            rate_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(rate_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    use crate::config::parse_network;

    #[test]
    fn networks_match_by_prefix() {
        let net = parse_network("192.168.0.0/16").unwrap();
        assert!(net.contains(&"192.168.44.1".parse::<IpAddr>().unwrap()));
        assert!(!net.contains(&"192.169.0.1".parse::<IpAddr>().unwrap()));
        assert!(
            parse_network("0.0.0.0/0")
                .unwrap()
                .contains(&"1.2.3.4".parse::<IpAddr>().unwrap())
        );
        assert!(
            parse_network("::1")
                .unwrap()
                .contains(&"::1".parse::<IpAddr>().unwrap())
        );
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("example.com").is_none());
    }
}
