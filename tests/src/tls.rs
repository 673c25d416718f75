//! TLS for the tests: a private certificate authority (rcgen) issuing
//! certificates for 127.0.0.1 and localhost, and an HTTPS front that
//! terminates TLS and passes the bytes on to a plain test server, counting
//! the connections and handshakes it saw.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority of its own, with its files in a temporary
/// directory.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

/// A certificate the CA issued, as PEM files.
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA (its certificate at [`TestCa::ca_file`]).
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wasmnode test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("CA dir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write CA");
        Self { cert, key, dir }
    }

    /// The CA's certificate (PEM), for `tls.ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA's certificate, for a test client.
    pub fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.cert.pem().as_bytes()).expect("CA certificate")
    }

    /// A certificate for 127.0.0.1 and localhost, written as `NAME.pem` and
    /// `NAME.key`.
    pub fn issue(&self, name: &str) -> Issued {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("issue");
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTPS front for a plain HTTP test server.
pub struct TlsFront {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Serves `identity` on a free port, passing each connection on to the
    /// server at `backend` (`http://HOST:PORT`).
    pub async fn start(identity: &Issued, backend: &str) -> Self {
        Self::serve(identity, backend, None).await
    }

    /// As [`TlsFront::start`], admitting only clients that present a
    /// certificate `clients` issued.
    pub async fn start_mutual(identity: &Issued, backend: &str, clients: &TestCa) -> Self {
        Self::serve(identity, backend, Some(clients)).await
    }

    async fn serve(identity: &Issued, backend: &str, clients: Option<&TestCa>) -> Self {
        let backend: SocketAddr = backend
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("backend address");
        let chain = CertificateDer::pem_file_iter(&identity.cert)
            .expect("certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(&identity.key).expect("key");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocols");
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = tokio_rustls::rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone()).expect("client CA");
                let verifier =
                    tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (connections, handshakes) = (Arc::default(), Arc::default());
        let (seen, done): (Arc<AtomicUsize>, Arc<AtomicUsize>) =
            (Arc::clone(&connections), Arc::clone(&handshakes));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self {
            url,
            connections,
            handshakes,
            _task: task,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}
