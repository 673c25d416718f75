//! The operator's settings of the local HTTP API (`[api]`).

use crate::config::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The local HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// API key required in `X-API-Key` or `Authorization: Bearer`; empty disables auth.
    pub api_key: String,
    /// Serve on a non-loopback address without an API key (not recommended).
    pub allow_unauthenticated_remote: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any); empty disables CORS.
    pub cors_origins: Vec<String>,
    /// Event streams (`GET /jobs/{id}/events`) open at once at most; more get 429.
    pub max_event_streams: usize,
    /// Connections open at once at most (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive
    /// connection is closed after as long.
    pub header_timeout_seconds: u64,
    /// Further `Host` values (`name:port`) a keyless loopback API answers.
    pub allowed_hosts: Vec<String>,
    /// Serve the web console at `/`.
    pub console: bool,
    /// Seconds between two samples of the console's charts (the last hour
    /// of them is kept: `GET /metrics/history`).
    pub chart_sample_seconds: u64,
    /// PEM certificate (chain) to serve the API over HTTPS with.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".parse().expect("valid default address"),
            api_key: String::new(),
            allow_unauthenticated_remote: false,
            max_body_bytes: 8 << 20,
            cors_origins: Vec::new(),
            max_event_streams: 256,
            max_connections: 1024,
            header_timeout_seconds: 10,
            allowed_hosts: Vec::new(),
            console: true,
            chart_sample_seconds: 10,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ApiSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "api.tls_cert and api.tls_key go together".into(),
            ));
        }
        if self.max_connections == 0
            || self.header_timeout_seconds == 0
            || self.chart_sample_seconds == 0
        {
            return Err(ConfigError::Invalid(
                "api.max_connections, api.header_timeout_seconds and api.chart_sample_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
