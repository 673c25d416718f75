//! URLs that tasks and peers name, checked against the operator's
//! allowlists by their parsed parts (scheme, host, port, path prefix),
//! never as strings: userinfo is refused, and a host's resolved addresses
//! must not be loopback, private, link-local or otherwise internal unless an
//! entry names that host explicitly. The checked addresses are the ones to
//! connect to, so a name cannot resolve differently a moment later.

use std::net::{IpAddr, SocketAddr};

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// Not a URL, or not one the node fetches.
    #[error("`{url}` is not a usable URL: {why}")]
    Invalid {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong.
        why: String,
    },
    /// No entry of the allowlist admits it.
    #[error("`{url}` is not on the allowlist ({setting})")]
    NotAllowed {
        /// The URL as given (credentials removed).
        url: String,
        /// The setting that holds the allowlist.
        setting: &'static str,
    },
    /// Its host resolves to an internal address.
    #[error(
        "`{url}` leads to the internal address {address}, which only an explicit allowlist entry for its host admits ({setting})"
    )]
    Internal {
        /// The URL as given (credentials removed).
        url: String,
        /// The address.
        address: IpAddr,
        /// The setting that holds the allowlist.
        setting: &'static str,
    },
    /// Its host does not resolve.
    #[error("`{url}`: its host does not resolve: {why}")]
    Unresolved {
        /// The URL as given (credentials removed).
        url: String,
        /// Why.
        why: String,
    },
}

/// The port part of an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    /// The scheme's default port.
    Default,
    /// Exactly this one.
    Exact(u16),
    /// Any (`:*`, or a bare `:`).
    Any,
}

/// One entry: `*`, or `SCHEME://HOST[:PORT|:*][/PATH-PREFIX]` where HOST may
/// be `*` (any host, internal addresses excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: String,
    host: Option<String>,
    port: Port,
    path: String,
}

impl Rule {
    fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
            format!("allowlist entry `{entry}` needs a scheme (http:// or https://)")
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("allowlist entry `{entry}`: only http and https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "allowlist entry `{}` may not hold credentials",
                redact(entry)
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = match port {
                    "" | "*" => Port::Any,
                    p => Port::Exact(
                        p.parse()
                            .map_err(|_| format!("allowlist entry `{entry}`: bad port `{p}`"))?,
                    ),
                };
                (host, port)
            }
            _ => (authority, Port::Default),
        };
        if host.is_empty() {
            return Err(format!("allowlist entry `{entry}` names no host"));
        }
        let host = (host != "*").then(|| host.trim_matches(['[', ']']).to_ascii_lowercase());
        Ok(Self {
            scheme,
            host,
            port,
            path: path.to_string(),
        })
    }

    fn admits(&self, url: &reqwest::Url) -> bool {
        let host = url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        let port_ok = match self.port {
            Port::Any => true,
            Port::Exact(p) => url.port_or_known_default() == Some(p),
            Port::Default => url.port().is_none(),
        };
        url.scheme() == self.scheme
            && self.host.as_ref().is_none_or(|h| host.as_ref() == Some(h))
            && port_ok
            && url.path().starts_with(&self.path)
    }
}

/// An operator's list of URLs the node may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlAllowlist {
    rules: Vec<Rule>,
    any: bool,
    setting: &'static str,
}

/// A URL that passed the allowlist, with the addresses to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The parsed URL.
    pub url: reqwest::Url,
    /// Its host, and the addresses it resolved to (all checked).
    pub pinned: Option<(String, Vec<SocketAddr>)>,
}

impl UrlAllowlist {
    /// The list of `entries` held by the setting named `setting` (for
    /// messages); `*` admits any URL whose host is not internal.
    pub fn new(entries: &[String], setting: &'static str) -> Result<Self, String> {
        let any = entries.iter().any(|e| e.trim() == "*");
        let rules = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| *e != "*")
            .map(Rule::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            any,
            setting,
        })
    }

    /// Whether the list admits nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.any
    }

    /// Checks `url` by its parts; returns it parsed and whether an entry
    /// named its host explicitly (only such an entry admits internal
    /// addresses).
    pub fn check(&self, url: &str) -> Result<(reqwest::Url, bool), UrlRefused> {
        let parsed = parse(url)?;
        let shown = redact(url);
        let explicit = self
            .rules
            .iter()
            .any(|r| r.host.is_some() && r.admits(&parsed));
        if explicit || self.any || self.rules.iter().any(|r| r.admits(&parsed)) {
            Ok((parsed, explicit))
        } else {
            Err(UrlRefused::NotAllowed {
                url: shown,
                setting: self.setting,
            })
        }
    }

    /// Checks `url` and resolves its host: every address must be public
    /// unless an entry names the host explicitly. Connect to the returned
    /// addresses only.
    pub async fn admit(&self, url: &str) -> Result<Admitted, UrlRefused> {
        let (parsed, explicit) = self.check(url)?;
        let shown = redact(url);
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addresses: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| UrlRefused::Unresolved {
                    url: shown.clone(),
                    why: e.to_string(),
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(UrlRefused::Unresolved {
                url: shown,
                why: "no addresses".into(),
            });
        }
        if !explicit && let Some(internal) = addresses.iter().find(|a| is_internal(a.ip())) {
            return Err(UrlRefused::Internal {
                url: shown,
                address: internal.ip(),
                setting: self.setting,
            });
        }
        let pinned = host.parse::<IpAddr>().is_err().then_some((host, addresses));
        Ok(Admitted {
            url: parsed,
            pinned,
        })
    }
}

impl Admitted {
    /// `builder` connecting to the checked addresses only, and following no
    /// redirect (a redirect would lead past the check).
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let builder = builder.redirect(reqwest::redirect::Policy::none());
        match &self.pinned {
            Some((host, addresses)) => builder.resolve_to_addrs(host, addresses),
            None => builder,
        }
    }
}

/// Parses an http(s) URL without credentials.
pub fn parse(url: &str) -> Result<reqwest::Url, UrlRefused> {
    let invalid = |why: &str| UrlRefused::Invalid {
        url: redact(url),
        why: why.into(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("only http and https URLs are fetched"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("URLs may not carry credentials (user@host)"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(parsed)
}

/// Whether `ip` is not a public internet address: loopback, private,
/// link-local, shared, documentation, multicast, unspecified or reserved
/// (IPv4-mapped IPv6 addresses are judged as IPv4).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

/// Whether what is sent to `url` crosses a network in clear: plain `http`
/// to a host other than this machine (`localhost` or a loopback address).
pub fn in_clear(url: &reqwest::Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    let host = url.host_str().unwrap_or_default();
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    }
}

/// `url` with any credentials and query string replaced by `***`, for
/// logs, errors and status pages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("***");
                let _ = parsed.set_password(None);
            }
            if parsed.query().is_some() {
                parsed.set_query(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => match url.split_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> UrlAllowlist {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        UrlAllowlist::new(&entries, "test.allowlist").unwrap()
    }

    #[test]
    fn plain_http_is_in_clear_unless_it_stays_on_this_machine() {
        let clear = |u: &str| in_clear(&reqwest::Url::parse(u).unwrap());
        assert!(clear("http://cp.example.com/"));
        assert!(clear("http://10.0.0.7:8080/"));
        assert!(!clear("https://cp.example.com/"));
        assert!(!clear("http://127.0.0.1:8080/"));
        assert!(!clear("http://[::1]:8080/"));
        assert!(!clear("http://localhost:8080/"));
        assert!(!clear("http://node.localhost/"));
        assert!(clear("http://localhost.example.com/"));
    }

    #[test]
    fn entries_match_by_scheme_host_port_and_path_prefix() {
        let l = list(&["https://hooks.example.com/done/", "http://127.0.0.1:18081"]);
        assert!(l.check("https://hooks.example.com/done/42").is_ok());
        assert!(l.check("https://HOOKS.example.com/done/").is_ok());
        assert!(l.check("https://hooks.example.com/other").is_err());
        assert!(
            l.check("http://hooks.example.com/done/1").is_err(),
            "scheme"
        );
        assert!(
            l.check("https://hooks.example.com:8443/done/1").is_err(),
            "port"
        );
        assert!(l.check("https://hooks.example.com.evil.net/done/").is_err());
        assert!(l.check("http://127.0.0.1:18081/x").is_ok());
        assert!(l.check("http://127.0.0.1:18082/x").is_err());
    }

    #[test]
    fn userinfo_is_refused_so_the_host_cannot_be_disguised() {
        let l = list(&["http://127.0.0.1:18081"]);
        let err = l
            .check("http://127.0.0.1:18081@127.0.0.1:18082/x")
            .unwrap_err();
        assert!(matches!(err, UrlRefused::Invalid { .. }), "{err}");
        assert!(
            !err.to_string().contains("18081@"),
            "credentials are not echoed: {err}"
        );
    }

    #[test]
    fn any_port_and_any_host_entries() {
        let l = list(&["http://127.0.0.1:*", "https://*/public/"]);
        assert!(l.check("http://127.0.0.1:1/").is_ok());
        assert!(l.check("https://anything.example/public/x").is_ok());
        assert!(l.check("https://anything.example/private").is_err());
        assert!(
            list(&["http://127.0.0.1:"])
                .check("http://127.0.0.1:9/")
                .is_ok()
        );
        assert!(list(&["*"]).check("ftp://x/").is_err(), "only http(s)");
        assert!(list(&[]).is_empty());
        assert!(UrlAllowlist::new(&["127.0.0.1".into()], "x").is_err());
        assert!(UrlAllowlist::new(&["https://u:p@host".into()], "x").is_err());
    }

    #[tokio::test]
    async fn internal_addresses_need_an_entry_naming_their_host() {
        let wildcard = list(&["*", "https://*/"]);
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:1/",
        ] {
            let err = wildcard.admit(url).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    UrlRefused::Internal { .. } | UrlRefused::Unresolved { .. }
                ),
                "{url}: {err}"
            );
        }
        let named = list(&["http://127.0.0.1:*"]);
        let admitted = named.admit("http://127.0.0.1:8080/x").await.unwrap();
        assert_eq!(admitted.url.port(), Some(8080));
        let localhost = list(&["http://localhost:*"])
            .admit("http://localhost:9/")
            .await
            .unwrap();
        let (host, addresses) = localhost.pinned.unwrap();
        assert_eq!(host, "localhost");
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn redaction_hides_credentials_and_queries() {
        assert_eq!(
            redact("https://user:pw@cp.example:8443/v1?token=x"),
            "https://***@cp.example:8443/v1?***"
        );
        assert_eq!(redact("http://cp:8080/"), "http://cp:8080/");
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Whatever URL a task supplies, it is admitted only when one
            /// entry matches it by scheme, host, port and path prefix.
            #[test]
            fn a_url_is_admitted_only_by_an_entry_matching_its_parts(
                scheme in prop_oneof![Just("http"), Just("https"), Just("ftp")],
                user in prop_oneof![Just(""), Just("a@"), Just("h.example:1@")],
                host in prop_oneof![Just("h.example"), Just("H.EXAMPLE"), Just("h.example.evil"), Just("x.example"), Just("127.0.0.1")],
                port in prop_oneof![Just(""), Just(":443"), Just(":8443"), Just(":80")],
                path in "(/[a-z]{0,3}){0,3}",
            ) {
                let url = format!("{scheme}://{user}{host}{port}{path}");
                let l = list(&["https://h.example/a", "http://127.0.0.1:80/"]);
                let admitted = l.check(&url).is_ok();
                let parsed = reqwest::Url::parse(&url);
                let by_parts = parsed.as_ref().is_ok_and(|u| {
                    u.username().is_empty() && u.password().is_none() && (
                        (u.scheme() == "https" && u.host_str() == Some("h.example")
                            && u.port_or_known_default() == Some(443) && u.port().is_none()
                            && u.path().starts_with("/a"))
                        || (u.scheme() == "http" && u.host_str() == Some("127.0.0.1")
                            && u.port_or_known_default() == Some(80)))
                });
                prop_assert_eq!(admitted, by_parts, "{}", url);
            }
        }
    }
}
