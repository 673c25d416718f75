//! TLS for everything the node fetches (rustls): every HTTPS client trusts
//! the platform's roots (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`)
//! and the certificates of the operator's CA file, installed once at start.
//! A peer whose certificate is not trusted fails at once with an error that
//! says so; it is never retried as if the network had hiccuped.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The operator's CA certificates.
#[derive(Debug)]
pub struct Roots(Vec<CertificateDer<'static>>);

static TRUST: OnceLock<Roots> = OnceLock::new();

/// Reads the PEM certificates of `ca_file`.
pub fn load_roots(ca_file: &Path) -> Result<Roots, String> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca_file.display()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
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
    Ok(Roots(roots))
}

/// Trusts `roots` beside the platform's, for every client built afterwards
/// (the first call wins; a node has one trust configuration).
pub fn install(roots: Roots) {
    let _ = TRUST.set(roots);
}

fn installed() -> &'static [CertificateDer<'static>] {
    TRUST.get().map_or(&[], |roots| roots.0.as_slice())
}

/// A client builder that trusts the platform's roots and the installed ones.
pub fn client() -> reqwest::ClientBuilder {
    installed()
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root)
        })
}

/// The rustls settings of clients that speak TLS themselves (tools'
/// outbound HTTP): the platform's roots and the installed ones. Built
/// once, on first use, after the trust was installed at start.
pub fn rustls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let platform = rustls_native_certs::load_native_certs().certs;
            for cert in platform.into_iter().chain(installed().iter().cloned()) {
                // A certificate rustls cannot use is left out, as reqwest does.
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
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
