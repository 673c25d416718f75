//! What a task is (`TaskSpec`) and what running it produced (`TaskOutcome`).

use crate::limits::LimitRequest;
use crate::outbound::HttpGrant;
pub use crate::usage::{TaskMetrics, millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// One unit of work, independent of the protocol that delivered it.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Job the task belongs to (names its artifact directory).
    pub job_id: String,
    /// Task id within the job (equal to `job_id` for single-task jobs).
    pub task_id: String,
    /// Task type: a SPLAI type (`aggregation`, `retrieval`, `tool_execution`,
    /// `embedding`, `llm_inference`, `model_download`) or any name when the
    /// runtime is explicit.
    pub task_type: String,
    /// The task's inputs (SPLAI sends an object of strings).
    pub payload: Value,
    /// How to run it.
    pub runtime: Runtime,
    /// Directories made visible to the task.
    pub mounts: Vec<Mount>,
    /// Limits the submitter asked for (capped by the operator's ceilings).
    pub limits: LimitRequest,
    /// Deterministic mode with this seed (wasm tasks only): fixed clocks
    /// and seeded randomness, so the same input gives the same output.
    pub deterministic: Option<u64>,
}

impl TaskSpec {
    /// A task of `task_type` with `payload`, routed automatically.
    pub fn new(job_id: impl Into<String>, task_type: impl Into<String>, payload: Value) -> Self {
        let job_id = job_id.into();
        Self {
            task_id: job_id.clone(),
            job_id,
            task_type: task_type.into(),
            payload,
            runtime: Runtime::default(),
            mounts: Vec::new(),
            limits: LimitRequest::default(),
            deterministic: None,
        }
    }

    /// The payload's field `key`, when it is non-empty text.
    pub fn input(&self, key: &str) -> Option<&str> {
        self.payload
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Which backend runs a task.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// The router picks from the task type; `env` goes to the component or
    /// container it picks.
    Auto {
        /// Environment variables for what runs.
        env: BTreeMap<String, String>,
    },
    /// A WASI component (or core wasip1 module).
    Wasm(WasmRuntime),
    /// A container image (Docker fallback).
    Image(ImageRuntime),
    /// The model executor: LLM, embedding and model servers and the model
    /// cache. Set by the router for the task types the model executor serves.
    Model,
}

/// The runtime modes an operator allows or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeMode {
    /// WASI components.
    Wasm,
    /// Container images.
    Image,
    /// Model servers and the model cache.
    Model,
}

impl RuntimeMode {
    /// Every mode.
    pub const ALL: [RuntimeMode; 3] = [Self::Wasm, Self::Image, Self::Model];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Image => "image",
            Self::Model => "model",
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::Auto {
            env: BTreeMap::new(),
        }
    }
}

impl Runtime {
    /// The Job Protocol name of the mode (`auto` before the router picked one).
    pub fn mode(&self) -> &'static str {
        self.mode_kind().map_or("auto", RuntimeMode::as_str)
    }

    /// The mode it runs in (`None` before the router picked one).
    pub fn mode_kind(&self) -> Option<RuntimeMode> {
        match self {
            Runtime::Auto { .. } => None,
            Runtime::Wasm(_) => Some(RuntimeMode::Wasm),
            Runtime::Image(_) => Some(RuntimeMode::Image),
            Runtime::Model => Some(RuntimeMode::Model),
        }
    }
}

/// Where a component's bytes come from.
#[derive(Clone)]
pub enum ComponentSource {
    /// A guest embedded in the binary, by name (`builtin:NAME`).
    Builtin(String),
    /// A `.wasm` file on the node's disk.
    File(PathBuf),
    /// Bytes already in memory.
    Bytes(Arc<[u8]>),
    /// Bytes already in memory whose blake3 hash is known (a large
    /// runtime the node loaded once, not hashed again per task).
    Hashed(Arc<[u8]>, blake3::Hash),
    /// An uploaded blob (`blob:HASH`), which the router turns into its
    /// file where the policy allows uploaded components.
    Blob(String),
}

impl std::fmt::Debug for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(name) => write!(f, "builtin:{name}"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Bytes(bytes) => write!(f, "<{} bytes>", bytes.len()),
            Self::Hashed(bytes, hash) => write!(f, "<{} bytes, blake3:{hash}>", bytes.len()),
            Self::Blob(reference) => write!(f, "{reference}"),
        }
    }
}

impl ComponentSource {
    /// The name a guest sees as its `argv[0]`: `builtin:NAME`, a file's
    /// name without the directories it lives in (guests learn nothing of the
    /// host's layout), or `component`.
    pub fn program_name(&self) -> String {
        match self {
            Self::Builtin(name) => format!("builtin:{name}"),
            Self::File(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "component".into()),
            Self::Bytes(_) | Self::Hashed(..) | Self::Blob(_) => "component".into(),
        }
    }

    /// Parses `builtin:NAME`, `blob:HASH` or a file path.
    pub fn parse(reference: &str) -> Self {
        if let Some(name) = reference.strip_prefix("builtin:") {
            Self::Builtin(name.to_string())
        } else if reference.starts_with(crate::blobs::SCHEME) {
            Self::Blob(reference.to_string())
        } else {
            Self::File(PathBuf::from(reference))
        }
    }
}

/// A WASI task's runtime settings.
#[derive(Debug, Clone)]
pub struct WasmRuntime {
    /// The component to run.
    pub component: ComponentSource,
    /// For a component that exports plain functions, the one to call
    /// (`add`, or `ns:pkg/iface#func`) with the payload as its arguments.
    pub function: Option<String>,
    /// argv[0], where the program needs a particular one (an interpreter
    /// finds its prefix from it); else the component's name.
    pub argv0: Option<String>,
    /// Arguments after argv[0] (commands only).
    pub args: Vec<String>,
    /// Environment variables (nothing is inherited from the node).
    pub env: BTreeMap<String, String>,
    /// Bytes on stdin; commands get the payload as JSON when this is `None`.
    pub stdin: Option<Vec<u8>>,
    /// Whether stdin is the node process's own (for `wasmnode run` at a
    /// terminal or in a pipe; no front door sets it), instead of `stdin`.
    pub inherit_stdin: bool,
    /// Settings a tool reads through the `wasmnode:tool/config` interface.
    pub config: BTreeMap<String, String>,
    /// The outbound HTTP the operator grants the tool (none: every request
    /// is refused).
    pub http: Option<Arc<HttpGrant>>,
}

impl WasmRuntime {
    /// Runs `component` with no arguments or environment.
    pub fn new(component: ComponentSource) -> Self {
        Self {
            component,
            function: None,
            argv0: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            stdin: None,
            inherit_stdin: false,
            config: BTreeMap::new(),
            http: None,
        }
    }
}

/// A container task's runtime settings.
#[derive(Debug, Clone, Default)]
pub struct ImageRuntime {
    /// Image reference, e.g. `runner:1.0.0`.
    pub image: String,
    /// Command (empty: the image's default).
    pub cmd: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Bytes on stdin; `None` sends the payload as JSON.
    pub stdin: Option<Vec<u8>>,
    /// Number of GPUs requested (`--gpus`), subject to policy.
    pub gpus: Option<u32>,
}

/// Where a mount's host directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A directory on the node's disk (held to the mount policy).
    Host(PathBuf),
    /// A directory the node prepared for this task itself (a control
    /// plane's downloaded config), outside the mount policy; never taken
    /// from a submitted request.
    Prepared(PathBuf),
    /// A directory of the node's own cache on its local disk (the
    /// retrieval index cache); never taken from a submitted request. A
    /// guest's file I/O in it runs on the task's thread, not a blocking
    /// pool, which costs a large file tens of thousands of thread handoffs.
    NodeCache(PathBuf),
    /// The node's artifact root.
    Artifacts,
    /// The task's scratch workspace.
    Workspace,
    /// An uploaded archive (`blob:HASH`), which the router turns into its
    /// unpacked tree, read-only.
    Blob(String),
    /// A scratch directory of the task's own beside its workspace, removed
    /// when it ends (a language runtime's `/tmp`); never taken from a request.
    Scratch,
}

/// A directory visible to the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host side.
    pub source: MountSource,
    /// Absolute path inside the sandbox.
    pub guest_path: String,
    /// Whether the task may write (read-only unless asked).
    pub writable: bool,
}

impl Mount {
    /// Parses the CLI form `HOST:GUEST[:ro|rw]` (read-only by default).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, mode) = match parts.as_slice() {
            [host, guest] => (*host, *guest, "ro"),
            [host, guest, mode] => (*host, *guest, *mode),
            _ => return Err(format!("mount `{spec}` must look like HOST:GUEST[:ro|rw]")),
        };
        let writable = match mode {
            "ro" => false,
            "rw" => true,
            other => {
                return Err(format!(
                    "mount `{spec}`: mode must be ro or rw, not `{other}`"
                ));
            }
        };
        if host.is_empty() {
            return Err(format!("mount `{spec}`: host path is empty"));
        }
        Ok(Self {
            source: MountSource::Host(PathBuf::from(host)),
            guest_path: guest.to_string(),
            writable,
        })
    }
}

/// What a successful task produced.
#[derive(Debug, Clone, Default)]
pub struct TaskOutcome {
    /// The task's JSON output.
    pub output: Value,
    /// Captured standard output (capped, lossy UTF-8).
    pub stdout: String,
    /// Captured standard error (capped, lossy UTF-8).
    pub stderr: String,
    /// Process exit code, for commands and containers.
    pub exit_code: Option<i32>,
    /// Resource usage.
    pub metrics: TaskMetrics,
    /// Artifacts the task wrote (artifact:// URIs).
    pub artifacts: Vec<String>,
    /// Name of the executor that ran it.
    pub executor: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mounts_read_only_by_default() {
        let m = Mount::parse("./data:/data").unwrap();
        assert_eq!(m.source, MountSource::Host("./data".into()));
        assert!(!m.writable);
        assert!(Mount::parse("/a:/b:rw").unwrap().writable);
        assert!(Mount::parse("/a:/b:rx").unwrap_err().contains("ro or rw"));
        assert!(Mount::parse("/a").is_err());
        assert!(Mount::parse(":/b").is_err());
    }

    #[test]
    fn parses_component_references() {
        assert!(
            matches!(ComponentSource::parse("builtin:grep"), ComponentSource::Builtin(n) if n == "grep")
        );
        assert!(
            matches!(ComponentSource::parse("./t.wasm"), ComponentSource::File(p) if p == std::path::Path::new("./t.wasm"))
        );
    }
}
