//! Serving the API over HTTPS (`api.tls_cert` and `api.tls_key`): the
//! certificate chain and key are read once at start; a client must finish
//! its handshake within the header timeout.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the API cannot serve HTTPS as configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be used.
    #[error("api.tls_cert {path}: {why}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The key file cannot be used.
    #[error("api.tls_key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The key does not go with the certificate, or rustls refused them.
    #[error("api.tls_cert and api.tls_key cannot serve HTTPS: {0}")]
    Refused(String),
}

/// An acceptor serving the chain in `cert` with the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: shown(cert),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: shown(cert),
            why: "no PEM certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: shown(key),
        why: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_certificate_or_key_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api.key"));
        let missing = acceptor(&cert, &key).err().unwrap();
        assert!(matches!(missing, TlsError::Certificate { .. }), "{missing}");
        std::fs::write(&cert, "no certificate here").unwrap();
        let empty = acceptor(&cert, &key).err().unwrap();
        assert!(empty.to_string().contains("no PEM certificate"), "{empty}");
    }
}
