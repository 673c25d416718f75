//! The operator's settings of attached mode: the control plane
//! (`[control_plane]`) and GOLIAT-style dashboards (`[goliat]`).

use crate::config::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Attached mode (`wasmnode agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// The control plane's base URL.
    pub url: Option<String>,
    /// Token sent as `X-SPLAI-Token` (prefer `SPLAI_API_TOKEN`).
    pub token: String,
    /// Tasks in flight at once (default: `scheduler.max_concurrent_jobs`).
    pub max_parallel_tasks: Option<usize>,
    /// Wait between empty polls, milliseconds.
    pub poll_millis: u64,
    /// Longest wait between retries when the control plane is down, seconds.
    pub backoff_max_seconds: u64,
    /// Where the node is (sent at registration).
    pub locality: Option<String>,
    /// How often the node checks whether what it registered with (models,
    /// reachable backends, tools) changed, seconds; it registers again when
    /// it did.
    pub refresh_seconds: u64,
    /// Largest answer read from the control plane, bytes.
    pub max_answer_bytes: u64,
    /// PEM certificate (chain) the node presents to the control plane.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Talk to a control plane beyond loopback over plain `http://` (its
    /// token and every report travel in clear).
    pub allow_plain_http: bool,
    /// The control plane's lease term in seconds, when its leases run a
    /// fixed term from the assignment (heartbeats do not extend them): an
    /// assignment not started within it is not started at all.
    pub lease_seconds: Option<f64>,
}

impl Default for ControlPlaneSection {
    fn default() -> Self {
        Self {
            url: None,
            token: String::new(),
            max_parallel_tasks: None,
            poll_millis: 1500,
            backoff_max_seconds: 30,
            locality: None,
            refresh_seconds: 30,
            max_answer_bytes: 16 << 20,
            client_cert: None,
            client_key: None,
            allow_plain_http: false,
            lease_seconds: None,
        }
    }
}

impl ControlPlaneSection {
    /// The token, if one is configured.
    pub fn token(&self) -> Option<String> {
        (!self.token.is_empty()).then(|| self.token.clone())
    }

    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ConfigError::Invalid(
                "control_plane.client_cert and control_plane.client_key go together".into(),
            ));
        }
        if self
            .lease_seconds
            .is_some_and(|s| !(s.is_finite() && s > 0.0))
        {
            return Err(ConfigError::Invalid(
                "control_plane.lease_seconds must be a positive number of seconds".into(),
            ));
        }
        if self.max_parallel_tasks == Some(0) {
            return Err(ConfigError::Invalid(
                "control_plane.max_parallel_tasks must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Attached to a GOLIAT-style dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoliatSection {
    /// This machine's id (default: its primary IP address, else its host name).
    pub machine_id: String,
    /// Heartbeat interval, seconds.
    pub heartbeat_seconds: u64,
    /// Wait between polls while idle, seconds.
    pub poll_seconds: u64,
    /// The job each assignment runs (the config is mounted at `/config`).
    pub job: GoliatJob,
}

/// The job a GOLIAT assignment runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoliatJob {
    /// Task type recorded for the job.
    pub task_type: String,
    /// `wasm` or `image`.
    pub mode: String,
    /// WASI component (`wasm`).
    pub component: Option<String>,
    /// Arguments of the component.
    pub args: Vec<String>,
    /// Image (`image`).
    pub image: Option<String>,
    /// Command of the image.
    pub cmd: Vec<String>,
    /// Environment (`SPLIT_INDEX`, `CONFIG_PATH` and `MACHINE_ID` are added).
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub limits: wasmnode_runtime::LimitRequest,
}

impl Default for GoliatSection {
    fn default() -> Self {
        Self {
            machine_id: String::new(),
            heartbeat_seconds: 5,
            poll_seconds: 10,
            job: GoliatJob::default(),
        }
    }
}

impl Default for GoliatJob {
    fn default() -> Self {
        Self {
            task_type: "goliat".into(),
            mode: "wasm".into(),
            component: None,
            args: Vec::new(),
            image: None,
            cmd: Vec::new(),
            env: BTreeMap::new(),
            limits: wasmnode_runtime::LimitRequest::default(),
        }
    }
}
