//! How the node reaches its control plane: over HTTPS, trusting the
//! platform's roots and `tls.ca_file`, presenting the node's client
//! certificate when one is configured; over plain `http` only on this
//! machine or when the operator says so (`control_plane.allow_plain_http`),
//! since the token and every report would travel in clear.

use super::settings::ControlPlaneSection;
use std::path::Path;

/// Why the control plane cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Not an http(s) URL.
    #[error("the control plane URL `{0}` is not an http(s) URL")]
    Invalid(String),
    /// Plain http beyond this machine without the operator's consent.
    #[error(
        "the control plane `{0}` is reached over plain http, so its token and every report would travel in clear; use https, or set control_plane.allow_plain_http = true"
    )]
    InClear(String),
    /// The client certificate or key cannot be used.
    #[error("the control plane client certificate: {0}")]
    Identity(String),
}

/// How to reach one control plane: the node's trust and its identity.
#[derive(Clone, Default)]
pub struct Transport {
    identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl Transport {
    /// A client builder trusting the node's roots, presenting its identity.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let builder = wasmnode_runtime::tls::client();
        match &self.identity {
            Some(identity) => builder.identity(identity.clone()),
            None => builder,
        }
    }
}

/// The transport for the control plane at `url`.
pub fn client(url: &str, settings: &ControlPlaneSection) -> Result<Transport, TransportError> {
    let shown = wasmnode_runtime::urls::redact(url);
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| TransportError::Invalid(shown.clone()))?;
    if wasmnode_runtime::urls::in_clear(&parsed) && !settings.allow_plain_http {
        return Err(TransportError::InClear(shown));
    }
    let identity = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => Some(identity(cert, key)?),
        _ => None,
    };
    Ok(Transport { identity })
}

/// The certificate chain of `cert` with the private key of `key`.
fn identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, TransportError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| TransportError::Identity(format!("cannot read {}: {e}", path.display())))
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        TransportError::Identity(format!(
            "{} and {} are not a PEM certificate and its key: {e}",
            cert.display(),
            key.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow_plain_http: bool) -> ControlPlaneSection {
        ControlPlaneSection {
            allow_plain_http,
            ..Default::default()
        }
    }

    #[test]
    fn plain_http_beyond_this_machine_needs_the_operators_consent() {
        let refused = client("http://cp.example.com:8080", &settings(false)).unwrap_err();
        assert!(matches!(refused, TransportError::InClear(_)), "{refused}");
        assert!(client("http://cp.example.com:8080", &settings(true)).is_ok());
        assert!(client("https://cp.example.com", &settings(false)).is_ok());
        assert!(client("http://127.0.0.1:8080", &settings(false)).is_ok());
    }

    #[test]
    fn the_refusal_never_shows_the_urls_credentials() {
        let refused = client("http://user:hunter2@cp.example.com", &settings(false)).unwrap_err();
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        assert!(client("ftp://cp.example.com", &settings(false)).is_err());
    }

    #[test]
    fn an_unusable_client_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("node.pem"), dir.path().join("node.key"));
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let settings = ControlPlaneSection {
            client_cert: Some(cert),
            client_key: Some(key),
            ..Default::default()
        };
        let refused = client("https://cp.example.com", &settings).unwrap_err();
        assert!(matches!(refused, TransportError::Identity(_)), "{refused}");
        let missing = ControlPlaneSection {
            client_cert: Some(dir.path().join("none.pem")),
            ..settings
        };
        let refused = client("https://cp.example.com", &missing).unwrap_err();
        assert!(refused.to_string().contains("cannot read"), "{refused}");
    }
}
