//! `Executor::run` for the WASI executor: one task from prepared code to a
//! `TaskOutcome` or a classified `TaskFailure` (a tool's contract checked
//! first, the guest held to its deadline, cancellation and output caps).

use super::call::{self, Entry, GuestReturn, captured};
use super::functions::Returned;
use super::prepare::Pre;
use super::sandbox::{self, Flavor, SandboxSpec};
use super::{BLOCKED_GRACE, WasmExecutor, World, bindings};
use crate::executor::{Executor, Support, TaskContext};
use crate::failure::{CapturedOutput, FailureKind, Stopped, TaskFailure};
use crate::task::{Runtime, TaskMetrics, TaskOutcome, TaskSpec, millis};
use crate::usage::cpu_timed;
use async_trait::async_trait;
use serde_json::Value;
use std::time::{Duration, Instant};

#[async_trait]
impl Executor for WasmExecutor {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn can_run(&self, task: &TaskSpec) -> Support {
        match &task.runtime {
            Runtime::Wasm(_) if task.limits.fuel.is_some() && !self.fuel_metering => {
                Support::Denied("fuel metering is disabled on this node".into())
            }
            Runtime::Wasm(_) => Support::Yes,
            other => Support::No(format!(
                "the wasm executor does not run `{}` tasks",
                other.mode()
            )),
        }
    }

    async fn run(&self, mut task: TaskSpec, ctx: TaskContext) -> Result<TaskOutcome, TaskFailure> {
        let started = Instant::now();
        let Runtime::Wasm(runtime) = &task.runtime else {
            return Err(TaskFailure::internal(
                "the wasm executor was given a non-wasm task",
            ));
        };
        if ctx.limits.fuel.is_some() && !self.fuel_metering {
            return Err(TaskFailure::policy_denied(
                "fuel metering is disabled on this node",
            ));
        }
        // Compiling (or loading) the binary and asking a tool what it needs
        // never hold up a cancellation or the deadline.
        let (prepared, origin) = until_stopped(&ctx, self.prepared(&runtime.component)).await?;
        let mut function = None;
        let (read_only, program) = match (&prepared.pre, &runtime.function) {
            (Pre::Tool(_), None) => {
                let tool = until_stopped(&ctx, self.describe_tool(&prepared)).await?;
                self.remember(&runtime.component, &tool);
                tool.check_args(&mut task.payload)?;
                (tool.check_mounts(&task.mounts)?, tool.name.clone())
            }
            (Pre::Functions(functions), Some(name)) => {
                let called = functions.function(name)?;
                called.contract.check_args(&mut task.payload)?;
                function = Some((called.clone(), called.arguments(&task.payload)?));
                (false, runtime.component.program_name())
            }
            (Pre::Functions(functions), None) => {
                return Err(TaskFailure::invalid_input(format!(
                    "the component exports plain functions ({}); name the one to call (`runtime.function` in a job, `--function` for `wasmnode tool run`)",
                    functions.names()
                )));
            }
            (_, Some(name)) => {
                return Err(TaskFailure::invalid_input(format!(
                    "the task names function `{name}`, but the component is {}, not plain functions",
                    prepared.world.as_str()
                )));
            }
            _ => (
                false,
                runtime
                    .argv0
                    .clone()
                    .unwrap_or_else(|| runtime.component.program_name()),
            ),
        };
        let is_program = matches!(prepared.world, World::Command | World::CoreModule);
        let stdin = match (&runtime.stdin, is_program) {
            (Some(bytes), true) => Some(bytes.clone()),
            (None, true) if !task.payload.is_null() => Some(task.payload.to_string().into_bytes()),
            _ => None,
        };
        let spec = SandboxSpec {
            runtime,
            program: &program,
            mounts: &task.mounts,
            stdin,
            read_only,
            deterministic: task.deterministic,
        };
        let flavor = if prepared.world == World::CoreModule {
            Flavor::CoreModule
        } else {
            Flavor::Component
        };
        let (state, stdio) = sandbox::build(spec, &ctx, flavor)?;
        let mut store = self.store(&prepared, state, &ctx)?;
        let input = task.payload.to_string();
        let entry = match &function {
            Some((function, args)) => Entry::Function(function, args),
            None => Entry::Input(&input),
        };

        if ctx.cancel.is_cancelled() {
            return Err(TaskFailure::cancelled());
        }
        let hard_stop = tokio::time::Instant::from_std(ctx.deadline + BLOCKED_GRACE);
        let mut cpu = Duration::ZERO;
        let result = tokio::select! {
            r = cpu_timed(call::call(&prepared, &mut store, entry), &mut cpu) => Some(r),
            _ = ctx.cancel.cancelled() => None,
            _ = tokio::time::sleep_until(hard_stop) => None,
        };
        let metrics = TaskMetrics {
            wall_time_ms: millis(started.elapsed()),
            fuel_consumed: self
                .fuel_metering
                .then(|| {
                    store
                        .get_fuel()
                        .ok()
                        .map(|left| ctx.limits.fuel.unwrap_or(u64::MAX) - left)
                })
                .flatten(),
            cpu_time_ms: Some(millis(cpu)),
            peak_memory_bytes: Some(store.data().limiter.peak()),
            code_cache: Some(origin.as_str().into()),
            ran: Some(format!("blake3:{}", prepared.hash)),
            tokens: None,
        };
        let returned = match result {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let failure = call::classify(&e, store.data(), &stdio, &ctx.limits);
                return Err(after_refusal(store.data(), failure).with_metrics(metrics));
            }
            None if ctx.cancel.is_cancelled() => {
                return Err(call::stopped(Stopped::Cancelled, &stdio, None).with_metrics(metrics));
            }
            None => {
                let limit = Stopped::TimedOut(ctx.limits.timeout);
                return Err(call::stopped(limit, &stdio, None).with_metrics(metrics));
            }
        };
        if let Some(stream) = stdio.overflowed() {
            let cap = ctx.limits.max_output_bytes;
            let how = Stopped::Overflowed {
                stream: stream.name(),
                cap,
            };
            return Err(call::stopped(how, &stdio, None).with_metrics(metrics));
        }
        let over_cap = |len: usize| {
            (len as u64 > ctx.limits.max_output_bytes).then(|| {
                TaskFailure::new(
                    FailureKind::OutputExceeded,
                    format!(
                        "the result is {len} bytes, over the cap of {}",
                        ctx.limits.max_output_bytes
                    ),
                )
                .with_output(captured(&stdio, None))
            })
        };
        let (output, exit_code) = match returned {
            GuestReturn::Function(Returned::Value(value)) => {
                if let Some(failure) = over_cap(value.to_string().len()) {
                    return Err(failure.with_metrics(metrics));
                }
                (value, None)
            }
            GuestReturn::Function(Returned::Error(error)) => {
                let said = match error {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                let name = function.as_ref().map_or("", |(f, _)| f.export.as_str());
                let failure = TaskFailure::new(
                    FailureKind::NonZeroExit,
                    format!("function `{name}` returned an error: {said}"),
                )
                .with_output(captured(&stdio, None));
                return Err(after_refusal(store.data(), failure).with_metrics(metrics));
            }
            GuestReturn::Json(json) => {
                if let Some(failure) = over_cap(json.len()) {
                    return Err(failure.with_metrics(metrics));
                }
                let value = serde_json::from_str(&json).map_err(|e| {
                    TaskFailure::new(
                        FailureKind::GuestTrap,
                        format!("the guest returned a result that is not JSON: {e}"),
                    )
                    .with_output(captured(&stdio, None))
                    .with_metrics(metrics.clone())
                })?;
                (value, None)
            }
            GuestReturn::Exit(0) => (
                serde_json::from_str(stdio.stdout.text().trim()).unwrap_or(Value::Null),
                Some(0),
            ),
            GuestReturn::Exit(code) => {
                let failure = call::stopped(Stopped::Exited(code), &stdio, Some(code));
                return Err(after_refusal(store.data(), failure).with_metrics(metrics));
            }
            GuestReturn::TaskError(e) => {
                let failure = task_error(e).with_output(captured(&stdio, None));
                return Err(after_refusal(store.data(), failure).with_metrics(metrics));
            }
            GuestReturn::ToolError(e) => {
                let failure = tool_error(e).with_output(captured(&stdio, None));
                return Err(after_refusal(store.data(), failure).with_metrics(metrics));
            }
        };
        Ok(TaskOutcome {
            output,
            stdout: stdio.stdout.text(),
            stderr: stdio.stderr.text(),
            exit_code,
            metrics,
            artifacts: Vec::new(),
            executor: "wasm",
        })
    }
}

/// Awaits `work` unless the task is cancelled or its deadline passes first.
async fn until_stopped<T>(
    ctx: &TaskContext,
    work: impl std::future::Future<Output = Result<T, TaskFailure>>,
) -> Result<T, TaskFailure> {
    tokio::select! {
        result = work => result,
        _ = ctx.cancel.cancelled() => Err(TaskFailure::cancelled()),
        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(ctx.deadline)) => Err(
            TaskFailure::stopped("the guest", Stopped::TimedOut(ctx.limits.timeout), CapturedOutput::default()),
        ),
    }
}

/// A guest that fails after one of its requests was refused failed because
/// of the refusal: `PolicyDenied`, saying what was refused. Running out of
/// time, memory or output stays what it was.
fn after_refusal(state: &sandbox::State, failure: TaskFailure) -> TaskFailure {
    let guest_failed = matches!(
        failure.kind,
        FailureKind::NonZeroExit
            | FailureKind::GuestTrap
            | FailureKind::InvalidInput
            | FailureKind::PolicyDenied
    );
    if guest_failed && state.limiter.exceeded() {
        // The guest survived a refused memory growth (an interpreter
        // raising MemoryError, say) and then failed: the limit is why.
        return TaskFailure {
            kind: FailureKind::MemoryExceeded,
            message: format!(
                "the guest was refused memory past its limit; it then failed: {}",
                failure.message
            ),
            ..failure
        };
    }
    match state.http.denied() {
        Some(why) if guest_failed => TaskFailure {
            kind: FailureKind::PolicyDenied,
            message: format!("{why}; the guest then failed: {}", failure.message),
            ..failure
        },
        _ => failure,
    }
}

fn task_error(e: bindings::task::wasmnode::task::types::TaskError) -> TaskFailure {
    use bindings::task::wasmnode::task::types::TaskError as E;
    match e {
        E::InvalidInput(m) => TaskFailure::invalid_input(m),
        E::Denied(m) => TaskFailure::policy_denied(m),
        E::Failed(m) => TaskFailure::new(FailureKind::NonZeroExit, m),
    }
}

fn tool_error(e: bindings::tool::wasmnode::tool::types::ToolError) -> TaskFailure {
    use bindings::tool::wasmnode::tool::types::ToolError as E;
    match e {
        E::InvalidArgs(m) | E::NotFound(m) => TaskFailure::invalid_input(m),
        E::Denied(m) => TaskFailure::policy_denied(m),
        E::Failed(m) => TaskFailure::new(FailureKind::NonZeroExit, m),
    }
}
