//! The one executor interface every backend implements, and the context a
//! task runs in.

use crate::artifacts::ArtifactStore;
use crate::failure::TaskFailure;
use crate::limits::Limits;
use crate::mask::Mask;
use crate::task::{TaskOutcome, TaskSpec};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Whether an executor can run a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// It can.
    Yes,
    /// It cannot (the backend lacks something), and why.
    No(String),
    /// It may not (node policy forbids it), and why.
    Denied(String),
}

/// Something that runs tasks: the WASI sandbox, Docker, an LLM server.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Short name (`wasm`, `docker`, `llm`), shown in outcomes and metrics.
    fn name(&self) -> &'static str;
    /// Whether this executor can run `task` on this node.
    fn can_run(&self, task: &TaskSpec) -> Support;
    /// Runs `task` to completion, failure, timeout or cancellation.
    async fn run(&self, task: TaskSpec, ctx: TaskContext) -> Result<TaskOutcome, TaskFailure>;
}

/// Something a running task reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// A chunk of standard output.
    Stdout(Vec<u8>),
    /// A chunk of standard error.
    Stderr(Vec<u8>),
    /// Generated text (LLM tokens) as it arrives.
    Token(String),
    /// Progress of a long step (downloads): done and total units.
    Progress {
        /// What is progressing.
        what: String,
        /// Units done.
        done: u64,
        /// Units in all, if known.
        total: Option<u64>,
    },
    /// A tool's log record (it is also a line of the task's stderr).
    Log {
        /// The tool's name.
        tool: String,
        /// How much it matters.
        level: LogLevel,
        /// What it said.
        message: String,
    },
}

/// The line of the task's stderr that a tool's log record is.
pub fn log_line(tool: &str, level: LogLevel, message: &str) -> String {
    format!(
        "[{} {tool}] {}\n",
        level.as_str().to_uppercase(),
        message.trim_end()
    )
}

/// The level of a tool's log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Its name, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Where a task's events go.
pub type EventSink = Arc<dyn Fn(TaskEvent) + Send + Sync>;

/// Everything a task runs with besides its spec.
#[derive(Clone)]
pub struct TaskContext {
    /// Cancelled when the task must stop.
    pub cancel: CancellationToken,
    /// When the task must have finished (start + limits.timeout).
    pub deadline: Instant,
    /// The effective limits.
    pub limits: Limits,
    /// The task's workspace, if it has one.
    pub workspace: Option<PathBuf>,
    /// The task's scratch directory (`MountSource::Scratch`), if it has one.
    pub scratch: Option<PathBuf>,
    /// The node's artifact store.
    pub artifacts: ArtifactStore,
    /// Receives stdout/stderr chunks, tokens and progress.
    pub events: Option<EventSink>,
    /// The job's secrets, which a tool's log records reach the node's log
    /// without.
    pub mask: Option<Arc<Mask>>,
}

impl TaskContext {
    /// A context starting now with `limits`, no workspace and no event sink.
    pub fn new(limits: Limits, artifacts: ArtifactStore) -> Self {
        Self {
            cancel: CancellationToken::new(),
            deadline: Instant::now() + limits.timeout,
            limits,
            workspace: None,
            scratch: None,
            artifacts,
            events: None,
            mask: None,
        }
    }

    /// Sends `event` to the sink, if there is one.
    pub fn emit(&self, event: TaskEvent) {
        if let Some(sink) = &self.events {
            sink(event);
        }
    }
}
