//! wasmnode's execution runtime: the one `Executor` interface, the task and
//! failure types every backend shares, limits and policy, the artifact store,
//! the `Router` that picks a backend, and the backends themselves.

pub mod artifacts;
pub mod blobs;
pub mod builtins;
pub mod capture;
pub mod disk;
pub mod docker;
pub mod executor;
pub mod failure;
pub mod index_cache;
pub mod languages;
pub mod limits;
pub mod llm;
pub mod mask;
pub mod outbound;
pub mod peer;
pub mod policy;
pub mod router;
pub mod signing;
pub mod task;
pub mod task_inputs;
pub mod task_types;
pub mod tls;
pub mod tools;
pub mod urls;
pub mod usage;
pub mod wasm;
pub mod workspace;

pub use artifacts::ArtifactStore;
pub use executor::{EventSink, Executor, LogLevel, Support, TaskContext, TaskEvent, log_line};
pub use failure::{CapturedOutput, FailureKind, Stopped, TaskFailure};
pub use limits::{LimitPolicy, LimitRequest, Limits};
pub use outbound::{HttpGrant, HttpLimits};
pub use policy::Policy;
pub use router::{Executors, Plan, Router, RunOptions, StartGate, StartRecord};
pub use task::{
    ComponentSource, ImageRuntime, Mount, MountSource, Runtime, RuntimeMode, TaskMetrics,
    TaskOutcome, TaskSpec, WasmRuntime,
};
pub use tools::{ToolBackend, ToolRegistry, ToolSettings};
pub use wasm::WasmExecutor;
