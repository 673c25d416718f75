//! `TaskFailure`: the closed set of ways a task can fail, each with a message.

use crate::usage::TaskMetrics;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a task failed. Callers act on the kind; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureKind {
    /// The task's input, component or arguments are wrong; retrying will not help.
    InvalidInput,
    /// The task ran past its wall-clock or CPU deadline.
    Timeout,
    /// The task tried to use more memory than its limit.
    MemoryExceeded,
    /// The task wrote more stdout/stderr/output than its cap.
    OutputExceeded,
    /// The task was cancelled (by a user, a drain or a shutdown).
    Cancelled,
    /// Node policy forbids what the task asked for (image, mount, network, path).
    PolicyDenied,
    /// The backend that would run the task is missing or not answering.
    BackendUnavailable,
    /// The guest trapped (panic, unreachable, stack overflow, bad output).
    GuestTrap,
    /// The program exited with a non-zero code or reported failure.
    NonZeroExit,
    /// A bug or an unexpected host error.
    Internal,
}

impl FailureKind {
    /// Every kind, for metrics and docs.
    pub const ALL: [FailureKind; 10] = [
        Self::InvalidInput,
        Self::Timeout,
        Self::MemoryExceeded,
        Self::OutputExceeded,
        Self::Cancelled,
        Self::PolicyDenied,
        Self::BackendUnavailable,
        Self::GuestTrap,
        Self::NonZeroExit,
        Self::Internal,
    ];

    /// The error code used in APIs, e.g. `MEMORY_EXCEEDED`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidInput => "INVALID_INPUT",
            Self::Timeout => "TIMEOUT",
            Self::MemoryExceeded => "MEMORY_EXCEEDED",
            Self::OutputExceeded => "OUTPUT_EXCEEDED",
            Self::Cancelled => "CANCELLED",
            Self::PolicyDenied => "POLICY_DENIED",
            Self::BackendUnavailable => "BACKEND_UNAVAILABLE",
            Self::GuestTrap => "GUEST_TRAP",
            Self::NonZeroExit => "NON_ZERO_EXIT",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What a failed task had written before it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    /// Standard output so far (capped).
    pub stdout: String,
    /// Standard error so far (capped).
    pub stderr: String,
    /// Exit code, where the program exited.
    pub exit_code: Option<i32>,
}

/// How a run ended without a result, in the words every executor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped<'a> {
    /// Its caller cancelled it.
    Cancelled,
    /// The node stopped it at its wall-clock limit.
    TimedOut(std::time::Duration),
    /// It wrote more than `cap` bytes to `stream`.
    Overflowed {
        /// `stdout` or `stderr`.
        stream: &'a str,
        /// The cap, bytes.
        cap: u64,
    },
    /// It exited with this non-zero code.
    Exited(i32),
}

/// A failed task: a kind callers can act on, a human message, and whatever
/// output was captured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TaskFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Human-readable explanation.
    pub message: String,
    /// Output captured before the failure.
    pub captured: Option<Box<CapturedOutput>>,
    /// What the run used before it failed, where the executor measured it.
    pub metrics: Option<Box<TaskMetrics>>,
}

impl TaskFailure {
    /// The failure of a run of `who` (`the guest`, `the container`) that
    /// stopped `how`, with what it had written.
    pub fn stopped(who: &str, how: Stopped<'_>, output: CapturedOutput) -> Self {
        let failure = match how {
            Stopped::Cancelled => Self::cancelled(),
            Stopped::TimedOut(limit) => Self::new(
                FailureKind::Timeout,
                format!(
                    "the node killed {who} at its wall-clock limit of {:.3}s",
                    limit.as_secs_f64()
                ),
            ),
            Stopped::Overflowed { stream, cap } => Self::new(
                FailureKind::OutputExceeded,
                format!("{who} wrote more than {cap} bytes to {stream}"),
            ),
            Stopped::Exited(code) => Self::new(
                FailureKind::NonZeroExit,
                format!("{who} exited with code {code}"),
            ),
        };
        failure.with_output(output)
    }

    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            captured: None,
            metrics: None,
        }
    }

    /// Attaches captured output.
    pub fn with_output(mut self, captured: CapturedOutput) -> Self {
        self.captured = Some(Box::new(captured));
        self
    }

    /// The same failure, with what the run used before it.
    pub fn with_metrics(mut self, metrics: TaskMetrics) -> Self {
        self.metrics = Some(Box::new(metrics));
        self
    }

    /// `InvalidInput` with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(FailureKind::InvalidInput, message)
    }

    /// `PolicyDenied` with `message`.
    pub fn policy_denied(message: impl Into<String>) -> Self {
        Self::new(FailureKind::PolicyDenied, message)
    }

    /// `BackendUnavailable` with `message`.
    pub fn backend_unavailable(message: impl Into<String>) -> Self {
        Self::new(FailureKind::BackendUnavailable, message)
    }

    /// `Internal` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }

    /// `Cancelled` with the standard message.
    pub fn cancelled() -> Self {
        Self::new(FailureKind::Cancelled, "the task was cancelled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_serde_matches() {
        for kind in FailureKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.code()));
        }
        let f = TaskFailure::new(FailureKind::Timeout, "ran 5s");
        assert_eq!(f.to_string(), "TIMEOUT: ran 5s");
    }
}
