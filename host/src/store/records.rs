//! What the job store keeps per job.

use super::Origin;
use crate::job::JobRequest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmnode_runtime::{FailureKind, TaskFailure, TaskMetrics, TaskOutcome};

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

/// Why a job did not finish: its task's own failure, or what the node
/// decided. Stored and shown as the code string (`TIMEOUT`, `INTERRUPTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum ErrorCode {
    /// The task failed this way (cancellation included).
    Task(FailureKind),
    /// The node stopped while the job ran, and the job may not be re-run.
    Interrupted,
    /// The job's start check refused it (a control plane's lease ran out).
    Expired,
    /// The job's request was lost when a damaged store was repaired.
    StoreDamaged,
}

impl ErrorCode {
    /// A cancelled job's code.
    pub const CANCELLED: Self = Self::Task(FailureKind::Cancelled);

    /// The code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task(kind) => kind.code(),
            Self::Interrupted => "INTERRUPTED",
            Self::Expired => "EXPIRED",
            Self::StoreDamaged => "STORE_DAMAGED",
        }
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().into()
    }
}

/// Codes this version does not know (none are written) read as `INTERNAL`.
impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        [Self::Interrupted, Self::Expired, Self::StoreDamaged]
            .into_iter()
            .chain(FailureKind::ALL.map(Self::Task))
            .find(|c| c.as_str() == code)
            .unwrap_or(Self::Task(FailureKind::Internal))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error code and message, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

/// How a finished, failed or cancelled job ended: the small part of its
/// result, kept in the job's record. What it produced (output document,
/// stdout, stderr) is a [`JobOutput`], stored apart and loaded only to serve it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Exit code, for programs and containers.
    pub exit_code: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<ErrorInfo>,
    /// Which executor ran it.
    pub executor: Option<String>,
    /// Resource usage.
    pub metrics: Option<TaskMetrics>,
}

/// What a job produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOutput {
    /// The task's JSON output (null when it failed).
    pub output: Value,
    /// What it printed.
    pub logs: Logs,
    /// The node's signed receipt of the run (a DSSE envelope, JSON).
    pub receipt: Option<Vec<u8>>,
}

/// What a job printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// What a job produced, encoded once as the store keeps it, so that its
/// receipt names the very bytes that are stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedOutput {
    /// The output document (JSON).
    pub document: Bytes,
    /// `{"stdout", "stderr"}` (JSON).
    pub logs: Vec<u8>,
    /// The node's signed receipt of the run (a DSSE envelope, JSON).
    pub receipt: Option<Vec<u8>>,
}

impl JobOutput {
    /// The output document and the logs as the store keeps them (JSON).
    pub fn encode(self) -> EncodedOutput {
        EncodedOutput {
            document: serde_json::to_vec(&self.output)
                .expect("JSON values serialize")
                .into(),
            logs: serde_json::to_vec(&self.logs).expect("logs serialize"),
            receipt: self.receipt,
        }
    }
}

impl JobResult {
    /// The record of a successful outcome, and what it produced.
    pub fn success(outcome: TaskOutcome) -> (Self, JobOutput) {
        (
            Self {
                exit_code: outcome.exit_code,
                error: None,
                executor: Some(outcome.executor.to_string()),
                metrics: Some(outcome.metrics),
            },
            JobOutput {
                output: outcome.output,
                logs: Logs {
                    stdout: outcome.stdout,
                    stderr: outcome.stderr,
                },
                receipt: None,
            },
        )
    }

    /// The record of a failure, and whatever output was captured.
    pub fn failure(failure: &TaskFailure) -> (Self, JobOutput) {
        let captured = failure.captured.as_deref().cloned().unwrap_or_default();
        (
            Self {
                exit_code: captured.exit_code,
                error: Some(ErrorInfo {
                    code: ErrorCode::Task(failure.kind),
                    message: failure.message.clone(),
                }),
                executor: None,
                metrics: failure.metrics.as_deref().cloned(),
            },
            JobOutput {
                output: Value::Null,
                logs: Logs {
                    stdout: captured.stdout,
                    stderr: captured.stderr,
                },
                receipt: None,
            },
        )
    }

    /// A result holding only an error.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: Some(ErrorInfo {
                code,
                message: message.into(),
            }),
            ..Self::default()
        }
    }
}

/// What the node remembers about a job, without its request's payload or
/// its output: small, so listing, queueing and recovery never load those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The submitter's id.
    pub job_id: String,
    /// Submission order (FIFO within a priority).
    pub seq: u64,
    /// blake3 of the canonical request, for idempotent resubmission.
    pub spec_hash: String,
    /// The request's task type.
    pub task_type: String,
    /// The request's runtime mode.
    pub mode: String,
    /// The request's priority, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Whether the request may be re-run after a crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Size of the stored request in bytes (what a queued job costs).
    pub request_bytes: u64,
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
    /// How it ended, once terminal.
    pub result: Option<JobResult>,
    /// Who wants to hear about the job (control plane or callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The front door that accepted it (`api`, `vera`, `splai`, `goliat`,
    /// `mcp`); none for jobs accepted before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Whom the usage ledger accounts the job to (`splai:JOB`, `vera:TASK`),
    /// when the front door named someone other than itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Delivery of the job's callback, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackStatus>,
}

/// Where the delivery of a job's callback stands; stored and shown as
/// `pending`, `delivered` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not delivered yet; attempts remain.
    Pending,
    /// The target answered 2xx.
    Delivered,
    /// Every attempt failed, or one failed in a way no retry could mend.
    Failed,
}

/// How the delivery of a job's callback went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackStatus {
    /// Where it goes.
    pub url: String,
    /// Where delivery stands.
    pub state: CallbackState,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl CallbackStatus {
    /// A callback to `url` not tried yet.
    pub fn pending(url: String) -> Self {
        Self {
            url,
            state: CallbackState::Pending,
            attempts: 0,
            last_error: None,
        }
    }
}

impl JobRecord {
    /// The canonical form of `request` (what the store keeps) and its hash.
    pub fn canonical(request: &JobRequest) -> (Vec<u8>, String) {
        let canonical = serde_json::to_vec(request).expect("requests serialize");
        let hash = blake3::hash(&canonical).to_hex().to_string();
        (canonical, hash)
    }

    /// A freshly accepted job whose canonical request is `canonical`.
    pub fn queued(request: &JobRequest, canonical: &[u8], seq: u64, now_ms: u64) -> Self {
        Self {
            job_id: request.job_id.clone(),
            seq,
            spec_hash: blake3::hash(canonical).to_hex().to_string(),
            task_type: request.task.task_type.clone(),
            mode: request.runtime.mode.clone(),
            priority: request.priority.clone(),
            idempotent: request.idempotent,
            request_bytes: canonical.len() as u64,
            state: JobState::Queued,
            submitted_at_ms: now_ms,
            started_at_ms: None,
            finished_at_ms: None,
            attempts: 0,
            result: None,
            origin: None,
            via: None,
            account: None,
            callback: None,
        }
    }

    /// The error code of a job that failed or was cancelled.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.result
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .map(|e| e.code)
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
/// Which jobs a listing holds, and in which order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this task type.
    pub task_type: Option<String>,
    /// Only jobs that came through this front door (`api`, `mcp`, …).
    pub via: Option<String>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

impl JobFilter {
    /// Whether `record` is one of the jobs listed.
    pub fn admits(&self, record: &JobRecord) -> bool {
        self.state.is_none_or(|s| s == record.state)
            && self
                .task_type
                .as_ref()
                .is_none_or(|t| *t == record.task_type)
            && self
                .via
                .as_ref()
                .is_none_or(|v| record.via.as_ref() == Some(v))
    }
}
