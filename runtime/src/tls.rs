//! TLS for everything the node fetches (rustls): every HTTPS client trusts
//! the platform's roots (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`)
//! and the certificates of the operator's CA file, installed once at start.
//! A peer whose certificate is not trusted fails at once with an error that
//! says so; it is never retried as if the network had hiccuped.

use std::path::Path;
use std::sync::OnceLock;

static TRUST: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Reads the PEM certificates of `ca_file`.
pub fn load_roots(ca_file: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca_file.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "the CA file {} holds no usable PEM certificates: {e}",
            ca_file.display()
        )
    })?;
    if roots.is_empty() {
        return Err(format!(
            "the CA file {} holds no certificates",
            ca_file.display()
        ));
    }
    Ok(roots)
}

/// Trusts `roots` beside the platform's, for every client built afterwards
/// (the first call wins; a node has one trust configuration).
pub fn install(roots: Vec<reqwest::Certificate>) {
    let _ = TRUST.set(roots);
}

/// A client builder that trusts the platform's roots and the installed ones.
pub fn client() -> reqwest::ClientBuilder {
    TRUST
        .get()
        .into_iter()
        .flatten()
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root.clone())
        })
}

/// What went wrong, when `e` is a TLS failure (an untrusted or invalid
/// certificate, a failed handshake) rather than a network one.
pub fn failure(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        // An I/O error hides what it wraps from `source()`; look inside
        // (the TLS error arrives wrapped twice).
        let mut inner = err;
        while let Some(io) = inner.downcast_ref::<std::io::Error>()
            && let Some(wrapped) = io.get_ref()
        {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        source = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(why) => format!(
            "the server's certificate is not accepted ({why:?}); trust its CA with tls.ca_file"
        ),
        other => format!("the TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_roots(&dir.path().join("none.pem")).unwrap_err();
        assert!(missing.contains("cannot read the CA file"), "{missing}");
        std::fs::write(dir.path().join("empty.pem"), b"not a certificate").unwrap();
        assert!(load_roots(&dir.path().join("empty.pem")).is_err());
    }
}
