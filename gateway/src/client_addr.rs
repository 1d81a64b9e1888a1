//! The address a request comes from, for the per-address rate limits.
//!
//! Behind a load balancer every request's peer is the balancer, so all
//! clients would share one sign-up and login budget. `TRUSTED_PROXIES`
//! names the proxies in front of the gateway: a request whose peer is one
//! of them counts against the nearest address in `X-Forwarded-For` that is
//! not a trusted proxy (read from the right, where each proxy appends the
//! address it saw). From any other peer the header is ignored, so a client
//! cannot choose the address it is counted against by sending one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use poem::http::HeaderMap;
use poem::Request;

use crate::state::AppState;

/// The client address of `req`: its peer, or, when the peer is a trusted
/// proxy, the address the proxies forwarded.
pub fn client_ip(req: &Request) -> IpAddr {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let trusted = req
        .data::<AppState>()
        .map_or(&[][..], |s| &s.config.trusted_proxies[..]);
    resolve(peer, req.headers(), trusted)
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Several headers read as one list, in order (RFC 9110, 5.3).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .collect();
    for hop in hops.into_iter().rev() {
        // Anything that is not an address was not written by a proxy we
        // trust: stop at the last hop known.
        let Some(ip) = parse_hop(hop.trim()) else {
            return client;
        };
        client = ip;
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// `192.0.2.1`, `2001:db8::1`, or either with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let headers = forwarded(&["198.51.100.9"]);
        assert_eq!(resolve(ip("203.0.113.5"), &headers, &[]), ip("203.0.113.5"));
    }

    #[test]
    fn an_untrusted_peer_cannot_name_its_own_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["10.0.0.1, 198.51.100.9"]);
        assert_eq!(
            resolve(ip("203.0.113.5"), &headers, &trusted),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn behind_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client sent a made-up first hop; the proxies appended the
        // client's real address, then their own.
        let headers = forwarded(&["1.2.3.4, 198.51.100.9", "10.0.0.7"]);
        assert_eq!(
            resolve(ip("10.0.0.2"), &headers, &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn hops_may_carry_ports_and_be_ipv6() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let headers = forwarded(&["[2001:db8::7]:4711, 10.0.0.3:80"]);
        assert_eq!(
            resolve(ip("fd00::1"), &headers, &trusted),
            ip("2001:db8::7")
        );
        let headers = forwarded(&["198.51.100.9:5000"]);
        assert_eq!(
            resolve(ip("::ffff:10.0.0.2"), &headers, &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn a_trusted_peer_without_a_usable_header_is_counted_as_itself() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        let headers = forwarded(&["198.51.100.9, not-an-address, 10.0.0.5"]);
        assert_eq!(resolve(ip("10.0.0.2"), &headers, &trusted), ip("10.0.0.5"));
        // Every hop trusted: the farthest one.
        let headers = forwarded(&["10.0.0.9, 10.0.0.5"]);
        assert_eq!(resolve(ip("10.0.0.2"), &headers, &trusted), ip("10.0.0.9"));
    }
}
