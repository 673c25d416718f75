//! What the job store keeps per job.

use crate::agent::report::Origin;
use crate::job::JobRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmnode_runtime::{TaskFailure, TaskMetrics, TaskOutcome};

/// A job's state (Job Protocol v1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for a slot.
    Queued,
    /// Running now.
    Running,
    /// Finished successfully.
    Finished,
    /// Failed (see the error).
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        Self::Queued,
        Self::Running,
        Self::Finished,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the job is done for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }

    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a protocol name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// An error code and message, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Machine-readable code (`TIMEOUT`, `INTERRUPTED`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// What a finished, failed or cancelled job produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The task's JSON output (null when it failed).
    pub output: Value,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Exit code, for programs and containers.
    pub exit_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<ErrorInfo>,
    /// Which executor ran it.
    pub executor: Option<String>,
    /// Resource usage.
    pub metrics: Option<TaskMetrics>,
}

impl JobResult {
    /// The record of a successful outcome.
    pub fn success(outcome: TaskOutcome) -> Self {
        Self {
            output: outcome.output,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            exit_code: outcome.exit_code,
            error: None,
            executor: Some(outcome.executor.to_string()),
            metrics: Some(outcome.metrics),
        }
    }

    /// The record of a failure (with whatever output was captured).
    pub fn failure(failure: &TaskFailure) -> Self {
        let captured = failure.captured.as_deref().cloned().unwrap_or_default();
        Self {
            output: Value::Null,
            stdout: captured.stdout,
            stderr: captured.stderr,
            exit_code: captured.exit_code,
            error: Some(ErrorInfo {
                code: failure.kind.code().into(),
                message: failure.message.clone(),
            }),
            executor: None,
            metrics: None,
        }
    }

    /// A result holding only an error.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: Some(ErrorInfo {
                code: code.into(),
                message: message.into(),
            }),
            ..Self::default()
        }
    }
}

/// Everything the node remembers about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The submitter's id.
    pub job_id: String,
    /// Submission order (FIFO within a priority).
    pub seq: u64,
    /// The request as accepted.
    pub request: JobRequest,
    /// blake3 of the canonical request, for idempotent resubmission.
    pub spec_hash: String,
    /// Current state.
    pub state: JobState,
    /// When it was accepted (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// When it last started.
    pub started_at_ms: Option<u64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<u64>,
    /// How many times it started.
    pub attempts: u32,
    /// The result, once terminal.
    pub result: Option<JobResult>,
    /// Who wants to hear about the job (control plane or callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Delivery of the job's callback, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackStatus>,
}

/// How the delivery of a job's callback went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackStatus {
    /// Where it goes.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl JobRecord {
    /// The canonical hash of `request`.
    pub fn hash_of(request: &JobRequest) -> String {
        let canonical = serde_json::to_vec(request).expect("requests serialize");
        blake3::hash(&canonical).to_hex().to_string()
    }

    /// A freshly accepted job.
    pub fn queued(request: JobRequest, seq: u64, now_ms: u64) -> Self {
        Self {
            job_id: request.job_id.clone(),
            seq,
            spec_hash: Self::hash_of(&request),
            request,
            state: JobState::Queued,
            submitted_at_ms: now_ms,
            started_at_ms: None,
            finished_at_ms: None,
            attempts: 0,
            result: None,
            origin: None,
            callback: None,
        }
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
