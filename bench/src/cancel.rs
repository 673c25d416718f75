//! Section 8: how fast a cancelled task ends, while its guest spins and
//! while its code is still compiling (the node never waits for the compiler).

use crate::report::{Row, Samples, human};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmnode_runtime::wasm::{AllocatorChoice, EngineSettings, WasmConfig};
use wasmnode_runtime::{
    ArtifactStore, ComponentSource, Executor, FailureKind, LimitPolicy, LimitRequest, Runtime,
    TaskContext, TaskEvent, TaskFailure, TaskOutcome, TaskSpec, WasmExecutor, WasmRuntime,
};

const S8: &str = "8. cancellation";
const TARGET: Duration = Duration::from_millis(100);

/// A WASI preview 1 program that prints `running` and then spins forever.
const SPINNER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "running\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop (br 0))))"#;

fn executor() -> anyhow::Result<Arc<WasmExecutor>> {
    Ok(Arc::new(WasmExecutor::new(WasmConfig {
        engine: EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            ..EngineSettings::default()
        },
        cache_dir: None,
        ..WasmConfig::default()
    })?))
}

fn program(bytes: Vec<u8>) -> TaskSpec {
    let mut spec = TaskSpec::new("bench", "wasm", serde_json::Value::Null);
    spec.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Bytes(bytes.into())));
    spec
}

fn context() -> TaskContext {
    let limits = LimitRequest {
        max_runtime_seconds: Some(600.0),
        ..LimitRequest::default()
    };
    TaskContext::new(
        LimitPolicy::default().resolve(&limits).expect("limits"),
        ArtifactStore::detached(),
    )
}

/// Cancels a spinning guest once it said it runs; returns the time from
/// cancel to the `Cancelled` result.
async fn cancel_spinning(executor: &Arc<WasmExecutor>) -> anyhow::Result<Duration> {
    let mut ctx = context();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.events = Some(Arc::new(move |e| {
        let _ = tx.send(e);
    }));
    let cancel = ctx.cancel.clone();
    let runner = executor.clone();
    let task =
        tokio::spawn(async move { runner.run(program(SPINNER.as_bytes().to_vec()), ctx).await });
    while !matches!(rx.recv().await, Some(TaskEvent::Stdout(b)) if b.starts_with(b"running")) {}
    time_to_cancel(cancel, task).await
}

/// Cancels `task`; returns the time it took to end as cancelled.
async fn time_to_cancel(
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<TaskOutcome, TaskFailure>>,
) -> anyhow::Result<Duration> {
    let at = Instant::now();
    cancel.cancel();
    let result = task.await?;
    let took = at.elapsed();
    anyhow::ensure!(
        matches!(&result, Err(f) if f.kind == FailureKind::Cancelled),
        "the task did not end as cancelled: {:?}",
        result.err()
    );
    Ok(took)
}

/// Cancels a task while its code compiles; returns the time from cancel to
/// the `Cancelled` result.
async fn cancel_compiling() -> anyhow::Result<Duration> {
    let executor = executor()?;
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let runner = executor.clone();
    let task = tokio::spawn(async move {
        runner
            .run(program(wasmnode_e2e::slow_to_compile()), ctx)
            .await
    });
    while executor.cache_stats().preparing == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    time_to_cancel(cancel, task).await
}

fn row(metric: &str, samples: &Samples) -> Row {
    Row::target(
        S8,
        format!("{metric}: cancel → Cancelled, p50 / p99"),
        format!("{} / {}", human(samples.p50()), human(samples.p99())),
        "p99 ≤ 100 ms",
        samples.p99() <= TARGET,
    )
}

/// Section 8: `n` cancellations of each kind.
pub fn latency(n: usize) -> anyhow::Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let executor = executor()?;
    let mut spinning = Vec::with_capacity(n);
    let mut compiling = Vec::with_capacity(n);
    for _ in 0..n {
        spinning.push(rt.block_on(cancel_spinning(&executor))?);
        compiling.push(rt.block_on(cancel_compiling())?);
    }
    // Compiles abandoned by their tasks finish in the background; let them.
    rt.shutdown_timeout(Duration::from_secs(120));
    Ok(vec![
        row("spinning guest", &Samples(spinning)),
        row("code still compiling", &Samples(compiling)),
    ])
}
