//! The parts of a URL a request needs, and resolving a redirect's
//! `Location` against the URL it came from.

use crate::FetchError;

/// An absolute `http` or `https` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// `host[:port]` as written.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL (the fragment is dropped).
    pub fn parse(text: &str) -> Result<Self, FetchError> {
        let invalid = |why: &str| FetchError::Invalid(format!("url `{text}` {why}"));
        let text = text.split('#').next().unwrap_or_default();
        let (https, rest) = if let Some(rest) = strip_prefix_ci(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "http://") {
            (false, rest)
        } else {
            return Err(invalid("must start with http:// or https://"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("must name a host (and no user information)"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("has a space or a control character in its host"));
        }
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            https,
            authority: authority.to_string(),
            path,
        })
    }

    /// `location` (a redirect's target) resolved against this URL.
    pub fn join(&self, location: &str) -> Result<Self, FetchError> {
        let location = location.trim();
        if strip_prefix_ci(location, "http://").is_some()
            || strip_prefix_ci(location, "https://").is_some()
        {
            return Self::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        if let Some(rest) = location.strip_prefix("//") {
            return Self::parse(&format!("{scheme}://{rest}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let path = self.path.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Self::parse(&format!("{scheme}://{}{path}", self.authority))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("HTTPS://Example.com:8443/a/b?q=1#frag").unwrap();
        assert!(url.https);
        assert_eq!(url.authority, "Example.com:8443");
        assert_eq!(url.path, "/a/b?q=1");
        assert_eq!(Url::parse("http://h").unwrap().path, "/");
        assert_eq!(Url::parse("http://h?x").unwrap().path, "/?x");
        for bad in [
            "ftp://h/",
            "h/path",
            "http:///p",
            "http://u@h/",
            "http://a b/",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(FetchError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let base = Url::parse("http://h:1/dir/page?x=1").unwrap();
        assert_eq!(base.join("/top").unwrap().to_string(), "http://h:1/top");
        assert_eq!(
            base.join("next").unwrap().to_string(),
            "http://h:1/dir/next"
        );
        assert_eq!(
            base.join("//other/p").unwrap().to_string(),
            "http://other/p"
        );
        assert_eq!(base.join("https://x/y").unwrap().to_string(), "https://x/y");
    }
}
