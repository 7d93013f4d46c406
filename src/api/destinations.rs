//! Where `POST /api/fetch` may connect: public addresses only, unless
//! `serve --fetch-allow CIDR` opens a range.
//!
//! A server that sends requests on a caller's behalf must not become the
//! caller's way into the server's own network (SSRF): loopback, private
//! (RFC 1918, unique-local, shared CGNAT space), link-local (where cloud
//! metadata services answer, `169.254.169.254`), unspecified, multicast and
//! reserved addresses are refused with 403 and nothing is sent. IPv6 forms
//! that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged
//! by that address. The check is made on what a name resolves to, by the
//! client's own resolver ([`GuardedResolver`]), which hands the client only
//! the addresses it checked: the connection goes to one of them, so a name
//! whose answer changes between a check and a connect (DNS rebinding) gains
//! nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The ranges opened with `--fetch-allow`.
#[derive(Debug, Clone, Default)]
pub struct FetchPolicy {
    allowed: Vec<IpNet>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} resolves to {address}, {kind}; nothing was sent (a server can open a range with `shroud serve --fetch-allow CIDR`)")]
pub struct Refused {
    /// The host as the caller wrote it (never a secret: references are not
    /// allowed in a URL's host).
    pub what: String,
    pub address: IpAddr,
    pub kind: &'static str,
}

impl FetchPolicy {
    /// A policy that also allows `ranges`.
    pub fn allowing(ranges: Vec<IpNet>) -> Self {
        FetchPolicy { allowed: ranges }
    }

    /// Parses one `--fetch-allow` value (`10.0.0.0/8`, `::1/128`, or a bare
    /// address for just that address).
    pub fn parse_range(text: &str) -> Result<IpNet, String> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(net.trunc());
        }
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{text:?} is not a CIDR range (e.g. 10.0.0.0/8) or an address"))
    }

    /// Whether a connection to `address` is allowed; the reason when not.
    pub fn check(&self, address: IpAddr) -> Result<(), &'static str> {
        if self.allowed.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match forbidden_kind(address) {
            Some(kind) => Err(kind),
            None => Ok(()),
        }
    }

    /// Checks every address `host` resolved to; the allowed ones, or why the
    /// first was refused when none is allowed.
    pub fn filter(
        &self,
        host: &str,
        addresses: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for address in addresses {
            match self.check(address.ip()) {
                Ok(()) => allowed.push(address),
                Err(kind) => {
                    first_refusal.get_or_insert(Refused {
                        what: format!("`{host}`"),
                        address: address.ip(),
                        kind,
                    });
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(refused)) => Err(refused),
            _ => Ok(allowed),
        }
    }
}

/// What kind of address a request must not reach, if it is one.
fn forbidden_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
                Some("a private address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if first & 0xff00 == 0xff00 {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("a loopback address")
    } else if a == 0 {
        Some("the unspecified address")
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("a private address")
    } else if v4.is_link_local() {
        Some("a link-local address (where cloud metadata services answer)")
    } else if v4.is_multicast() {
        Some("a multicast address")
    } else if v4.is_broadcast() || a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 one stands for: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:ab:cd::`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail());
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// The fetch client's resolver: resolves with the system's, keeps only the
/// addresses the policy allows.
#[derive(Debug)]
pub struct GuardedResolver {
    pub policy: Arc<FetchPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.filter(&host, found)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal inside a client error, if the resolver refused.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<&'static str> {
        FetchPolicy::default().check(text.parse().unwrap()).err()
    }

    #[test]
    fn inner_addresses_are_refused_and_public_ones_allowed() {
        for inner in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(kind(inner).is_some(), "{inner} was allowed");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(public), None, "{public} was refused");
        }
    }

    #[test]
    fn allowed_ranges_open_only_themselves() {
        let policy = FetchPolicy::allowing(vec![FetchPolicy::parse_range("10.0.0.0/8").unwrap()]);
        assert!(policy.check("10.9.8.7".parse().unwrap()).is_ok());
        assert!(policy.check("192.168.0.1".parse().unwrap()).is_err());
        assert!(FetchPolicy::parse_range("127.0.0.1").is_ok());
        assert!(FetchPolicy::parse_range("not-a-range").is_err());
        let mixed: Vec<SocketAddr> = vec![
            "127.0.0.1:80".parse().unwrap(),
            "93.184.216.34:80".parse().unwrap(),
        ];
        let kept = FetchPolicy::default().filter("example", mixed).unwrap();
        assert_eq!(
            kept,
            vec!["93.184.216.34:80".parse::<SocketAddr>().unwrap()]
        );
    }
}
