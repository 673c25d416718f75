//! The control-plane interface the agent loop drives. Each protocol (SPLAI,
//! GOLIAT-style dashboards) is one adapter behind it, so the loop, the
//! outbox and the scheduler are shared.

use crate::identity::PublicIdentity;
use crate::job::JobRequest;
use crate::store::{Origin, OutboxItem};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// What the node tells the control plane about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registration {
    /// This node's id.
    pub worker_id: String,
    /// CPU cores.
    pub cpu: usize,
    /// Memory, e.g. `16384Mi`.
    pub memory: String,
    /// Whether a GPU is present.
    pub gpu: bool,
    /// Models in the local model cache or served by reachable backends.
    pub models: Vec<String>,
    /// Tools this node can run.
    pub tools: Vec<String>,
    /// Model backends configured and answering.
    pub backends: Vec<String>,
    /// Where the node is, if configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// The key that signs the node's receipts (a field the SPLAI gateway
    /// ignores; a control plane that checks receipts pins it).
    pub identity: PublicIdentity,
}

/// The node's dynamic state, sent with every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heartbeat {
    /// Jobs waiting.
    pub queue_depth: usize,
    /// Jobs running.
    pub running_tasks: usize,
    /// CPU utilisation, 0..1.
    pub cpu_utilization: f64,
    /// Memory utilisation, 0..1.
    pub memory_utilization: f64,
    /// `healthy`, `degraded` (it refuses new work: a full disk, a store that cannot be written) or `draining`.
    pub health: String,
    /// Seconds since the Unix epoch.
    pub timestamp_unix: u64,
}

/// One unit of work handed to the node.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The job to run (validated like any submitted job).
    pub request: JobRequest,
    /// The control-plane task behind it, for reporting.
    pub origin: Origin,
    /// Whom the usage ledger accounts it to (`splai:JOB`); the protocol
    /// itself when `None`.
    pub account: Option<String>,
}

/// What an adapter may read while it reports: the jobs' stored outputs and
/// the artifact store.
pub struct Reporting<'a> {
    /// The node.
    pub node: &'a crate::node::Node,
}

impl Reporting<'_> {
    /// Where output artifacts go.
    pub fn artifacts(&self) -> &wasmnode_runtime::ArtifactStore {
        self.node.artifacts()
    }

    /// The signed receipt of `job_id`'s run, if it has one.
    pub fn receipt(&self, job_id: &str) -> Result<Option<Vec<u8>>, CpError> {
        self.node
            .receipt(job_id)
            .map_err(|e| CpError::Unavailable(format!("cannot read the job's receipt: {e}")))
    }

    /// The stored output of `job_id` (null when it produced none).
    pub fn output(&self, job_id: &str) -> Result<Value, CpError> {
        let bytes = self
            .node
            .output(job_id)
            .map_err(|e| CpError::Unavailable(format!("cannot read the job's output: {e}")))?;
        Ok(bytes
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null))
    }
}

/// Why a control-plane call failed; the loop acts on the case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpError {
    /// The token was refused (401/403): keep trying slowly, say so clearly.
    #[error("the control plane refused our credentials: {0}")]
    Unauthorized(String),
    /// The control plane's certificate is not trusted: say so clearly, keep
    /// trying slowly (the operator fixes `tls.ca_file`).
    #[error("the control plane's TLS certificate is not accepted: {0}")]
    Tls(String),
    /// The control plane does not know this worker (404): register again.
    #[error("the control plane does not know this worker")]
    UnknownWorker,
    /// Down, slow or failing (network, timeout, 5xx, 429): retry with backoff.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
    /// It refused the request for good (other 4xx): do not retry it.
    #[error("the control plane rejected the request: {0}")]
    Rejected(String),
}

impl From<reqwest::Error> for CpError {
    /// A request that got no answer: an untrusted certificate, or the
    /// control plane being unreachable (the URL left out: it may hold a token).
    fn from(e: reqwest::Error) -> Self {
        match wasmnode_runtime::tls::failure(&e) {
            Some(why) => CpError::Tls(why),
            None => CpError::Unavailable(e.without_url().to_string()),
        }
    }
}

/// A control-plane protocol.
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// The control plane's base URL.
    fn url(&self) -> &str;
    /// An independent client for the same control plane (the heartbeat
    /// thread uses its own, on its own runtime).
    fn duplicate(&self) -> Result<Box<dyn ControlPlane>, CpError>;
    /// Registers the node; returns the heartbeat interval to use.
    async fn register(&self, registration: &Registration) -> Result<Duration, CpError>;
    /// Sends one heartbeat.
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), CpError>;
    /// Asks for at most `max` assignments.
    async fn poll(&self, max: usize) -> Result<Vec<Assignment>, CpError>;
    /// Delivers one report (reading what it needs through `reporting`); a
    /// duplicate the control plane already has counts as delivered.
    async fn report(&self, item: &OutboxItem, reporting: &Reporting<'_>) -> Result<(), CpError>;
    /// The local job ids the earlier attempts of `assignment`'s task would
    /// have had, newest first (none for protocols without attempts).
    fn earlier_attempts(&self, _assignment: &Assignment) -> Vec<String> {
        Vec::new()
    }
}
