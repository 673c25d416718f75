//! What outbound HTTP the operator grants one tool: the hosts it may reach
//! (`allowed_hosts`), whether a host name may resolve to a private address,
//! and the caps on bodies and waits. Nothing is granted by default.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Caps on a tool's outbound requests (`[tools.NAME.http]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Most bytes of one request body the tool may send.
    pub max_request_bytes: u64,
    /// Most bytes of one response body the tool may receive; a longer body
    /// fails at the cap.
    pub max_response_bytes: u64,
    /// Longest wait, in seconds, for a connection, for the first byte of a
    /// response and between two parts of a body (a guest may ask for less).
    pub timeout_secs: u64,
    /// Most requests one task may send (redirect hops count).
    pub max_requests: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            timeout_secs: 30,
            max_requests: 100,
        }
    }
}

impl HttpLimits {
    /// The longest wait allowed for each step.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// One entry of `allowed_hosts`: `host`, `host:port`, `*.domain`,
/// `*.domain:port`, an IP address (`10.0.0.5`, `[fd00::1]:8080`), or `*`
/// (any host). Without a port, only the scheme's default port (80, 443).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Name(String),
    /// `*.domain`: any name below `.domain` (not `domain` itself).
    Below(String),
    Ip(IpAddr),
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("allowed host `{text}` {why}");
        if text.contains("://") || text.contains('/') {
            return Err(bad("must be a host[:port], not a URL"));
        }
        let (host, port) = split_port(text).map_err(|e| bad(&e))?;
        let host = host.to_ascii_lowercase();
        let matcher = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            check_name(domain).map_err(|e| bad(&e))?;
            HostMatch::Below(domain.to_string())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostMatch::Ip(ip)
        } else {
            check_name(&host).map_err(|e| bad(&e))?;
            HostMatch::Name(host)
        };
        Ok(Self {
            host: matcher,
            port,
        })
    }
}

/// Splits `host[:port]`, where an IPv6 host is written in brackets.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("has an invalid port `{p}`"))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| "has an unclosed `[`".to_string())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((ip, Some(port(p)?))),
            None if after.is_empty() => Ok((ip, None)),
            None => Err("has text after `]`".into()),
        };
    }
    match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Ok((text, None)),
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((text, None)),
    }
}

/// A DNS name: labels of letters, digits and `-`, no wildcard inside.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err("is not a host name (a wildcard may only be a leading `*.`)".into())
    }
}

impl HostPattern {
    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let port_ok = self.port.map_or(port == default_port, |p| p == port);
        port_ok
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Name(name) => host == name,
                HostMatch::Below(domain) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                HostMatch::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            }
    }
}

/// The outbound HTTP one tool is granted.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpGrant {
    hosts: Vec<HostPattern>,
    allow_private: bool,
    /// Caps on bodies and waits.
    pub limits: HttpLimits,
}

impl HttpGrant {
    /// A grant of `hosts` (see [`HostPattern`]); `None` when `hosts` is empty.
    pub fn new(
        hosts: &[String],
        allow_private: bool,
        limits: HttpLimits,
    ) -> Result<Option<Self>, String> {
        if hosts.is_empty() {
            return Ok(None);
        }
        if limits.max_response_bytes == 0 {
            return Err("http.max_response_bytes must be at least 1".into());
        }
        let hosts = hosts
            .iter()
            .map(|h| h.parse())
            .collect::<Result<Vec<HostPattern>, String>>()?;
        Ok(Some(Self {
            hosts,
            allow_private,
            limits,
        }))
    }

    /// Whether a request to `host:port` (lower-case, an IPv6 address without
    /// brackets) is granted; `default_port` is its scheme's.
    pub fn permits(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.hosts
            .iter()
            .any(|p| p.matches(host, port, default_port))
    }

    /// Whether the tool may connect to `ip`, which `host` resolved to: a
    /// public address always; another one only when the grant names that
    /// very address, or the operator allows private addresses.
    pub fn may_connect(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip)
            || self.allow_private
            || self
                .hosts
                .iter()
                .any(|p| p.host == HostMatch::Ip(ip) && host.parse::<IpAddr>() == Ok(ip))
    }
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local (cloud metadata), shared, reserved, documentation or
/// multicast, in either family (an IPv4-mapped IPv6 address counts as the
/// IPv4 address it carries).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64: carries an IPv4 address
        || first & 0xffc0 == 0xfec0) // site-local (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(hosts: &[&str], allow_private: bool) -> HttpGrant {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        HttpGrant::new(&hosts, allow_private, HttpLimits::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_host_without_a_port_is_granted_on_its_schemes_default_port_only() {
        let g = grant(&["example.com"], false);
        assert!(g.permits("example.com", 443, 443));
        assert!(g.permits("example.com", 80, 80));
        assert!(!g.permits("example.com", 8080, 443));
        assert!(!g.permits("www.example.com", 443, 443));
        assert!(!g.permits("example.com.evil.net", 443, 443));
        let g = grant(&["example.com:8080"], false);
        assert!(g.permits("example.com", 8080, 80));
        assert!(!g.permits("example.com", 80, 80));
    }

    #[test]
    fn a_wildcard_grants_names_below_the_domain_and_not_the_domain_itself() {
        let g = grant(&["*.example.org"], false);
        assert!(g.permits("api.example.org", 443, 443));
        assert!(g.permits("a.b.example.org", 443, 443));
        assert!(!g.permits("example.org", 443, 443));
        assert!(!g.permits("badexample.org", 443, 443));
        assert!(grant(&["*"], false).permits("anything.test", 80, 80));
    }

    #[test]
    fn ip_grants_match_the_address_in_either_notation() {
        let g = grant(&["127.0.0.1:9000", "[::1]:9001"], false);
        assert!(g.permits("127.0.0.1", 9000, 80));
        assert!(g.permits("::1", 9001, 80));
        assert!(!g.permits("127.0.0.2", 9000, 80));
        assert!(!g.permits("localhost", 9000, 80));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_entry_named() {
        for bad in [
            "https://example.com",
            "example.com/path",
            "exa*mple.com",
            "*example.com",
            "example.com:0",
            "example.com:http",
            "[::1",
            "",
        ] {
            let err = bad.parse::<HostPattern>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert_eq!(
            HttpGrant::new(&[], false, HttpLimits::default()).unwrap(),
            None
        );
    }

    #[test]
    fn private_loopback_link_local_and_mapped_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_name_reaches_a_private_address_only_when_the_operator_allows_it() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let strict = grant(&["localhost:9000", "127.0.0.1:9000"], false);
        assert!(!strict.may_connect("localhost", loopback));
        assert!(strict.may_connect("127.0.0.1", loopback));
        assert!(grant(&["localhost:9000"], true).may_connect("localhost", loopback));
        assert!(strict.may_connect("example.com", "93.184.216.34".parse().unwrap()));
    }
}
