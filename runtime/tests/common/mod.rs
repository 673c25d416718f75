//! Shared helpers for the runtime's integration tests.

#![allow(dead_code)]

use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmnode_runtime::builtins::test_guests;
use wasmnode_runtime::wasm::WasmConfig;
use wasmnode_runtime::{
    ArtifactStore, ComponentSource, Executor, LimitPolicy, LimitRequest, Limits, Mount,
    MountSource, Runtime, TaskContext, TaskFailure, TaskOutcome, TaskSpec, WasmExecutor,
    WasmRuntime,
};

/// One executor shared by the tests (as in the node: one engine per process).
pub fn executor() -> &'static WasmExecutor {
    static EXECUTOR: OnceLock<WasmExecutor> = OnceLock::new();
    EXECUTOR.get_or_init(|| WasmExecutor::new(WasmConfig::default()).expect("executor"))
}

/// A temporary artifact store.
pub fn artifacts() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(dir.path()).unwrap();
    (dir, store)
}

/// A wasm task running `component` with `payload`.
pub fn task(component: ComponentSource, payload: Value) -> TaskSpec {
    let mut spec = TaskSpec::new("job-1", "wasm", payload);
    spec.runtime = Runtime::Wasm(WasmRuntime::new(component));
    spec
}

/// The hostile test guest doing `payload["action"]`.
pub fn hostile(payload: Value) -> TaskSpec {
    task(ComponentSource::File(test_guests::HOSTILE.into()), payload)
}

/// A host directory mount.
pub fn mount(host: &std::path::Path, guest: &str, writable: bool) -> Mount {
    Mount {
        source: MountSource::Host(host.to_path_buf()),
        guest_path: guest.into(),
        writable,
    }
}

/// Effective limits for `request` under the default policy.
pub fn limits(request: LimitRequest) -> Limits {
    LimitPolicy::default().resolve(&request).unwrap()
}

/// Runs `spec` with its limits on the shared executor.
pub async fn run(spec: TaskSpec) -> Result<TaskOutcome, TaskFailure> {
    run_on(executor(), spec).await
}

/// Runs `spec` on `executor`.
pub async fn run_on(executor: &WasmExecutor, spec: TaskSpec) -> Result<TaskOutcome, TaskFailure> {
    let (_dir, store) = artifacts();
    let ctx = TaskContext::new(limits(spec.limits.clone()), store);
    executor.run(spec, ctx).await
}

/// Runs `spec` with a context the caller prepared.
pub async fn run_with(spec: TaskSpec, ctx: TaskContext) -> Result<TaskOutcome, TaskFailure> {
    executor().run(spec, ctx).await
}

/// Short limits for misbehaving guests.
pub fn short(seconds: f64) -> LimitRequest {
    LimitRequest {
        max_runtime_seconds: Some(seconds),
        ..Default::default()
    }
}

/// An event sink collecting events.
pub fn collector() -> (
    wasmnode_runtime::EventSink,
    Arc<std::sync::Mutex<Vec<wasmnode_runtime::TaskEvent>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    (Arc::new(move |e| sink_seen.lock().unwrap().push(e)), seen)
}

/// Generous upper bound for one test step.
pub const STEP: Duration = Duration::from_secs(30);
