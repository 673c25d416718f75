//! Calling a prepared binary in a fresh store, and turning what happened
//! (a result, an exit code, a trap, an interrupt) into an outcome or a
//! `TaskFailure` of the right kind.

use super::bindings::{task, tool};
use super::functions::{Function, Returned};
use super::prepare::{Pre, Prepared};
use super::sandbox::{State, Stdio};
use super::ticker::Ticking;
use crate::failure::{CapturedOutput, FailureKind, Stopped, TaskFailure};
use crate::limits::Limits;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmtime::component::Val;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::I32Exit;

/// Why the epoch callback stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupt {
    /// The wall-clock deadline passed.
    #[error("deadline reached")]
    Timeout,
    /// The task's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
}

/// What the guest itself returned.
pub enum GuestReturn {
    /// A JSON document (task or tool success).
    Json(String),
    /// The program exited with this code (commands and core modules).
    Exit(i32),
    /// The task guest reported an error.
    TaskError(task::wasmnode::task::types::TaskError),
    /// The tool guest reported an error.
    ToolError(tool::wasmnode::tool::types::ToolError),
    /// A plain function returned (a value, or the `err` of its `result`).
    Function(Returned),
}

/// What a call passes in.
pub enum Entry<'a> {
    /// The input document (task and tool worlds; ignored by programs).
    Input(&'a str),
    /// A plain function and its arguments.
    Function(&'a Function, &'a [Val]),
}

/// Arms the store so that every epoch tick checks for cancellation and the
/// deadline, yielding to the async runtime otherwise. The callback keeps
/// `ticking` for as long as the store lives, so the ticks come.
pub fn arm(
    store: &mut Store<State>,
    cancel: CancellationToken,
    deadline: Instant,
    ticking: Ticking,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let _held = &ticking;
        if cancel.is_cancelled() {
            Err(Interrupt::Cancelled.into())
        } else if Instant::now() >= deadline {
            Err(Interrupt::Timeout.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Instantiates `prepared` in `store` and calls its entry point.
pub async fn call(
    prepared: &Prepared,
    store: &mut Store<State>,
    entry: Entry<'_>,
) -> wasmtime::Result<GuestReturn> {
    let input = match entry {
        Entry::Input(input) => input,
        Entry::Function(function, args) => {
            let Pre::Functions(functions) = &prepared.pre else {
                wasmtime::bail!("not a plain-function component");
            };
            let returned = function.call(&functions.pre, store, args).await?;
            return Ok(GuestReturn::Function(returned));
        }
    };
    match &prepared.pre {
        Pre::Task(pre) => {
            let guest = pre.instantiate_async(&mut *store).await?;
            Ok(match guest.call_run(&mut *store, input).await? {
                Ok(json) => GuestReturn::Json(json),
                Err(e) => GuestReturn::TaskError(e),
            })
        }
        Pre::Tool(pre) => {
            let guest = pre.instantiate_async(&mut *store).await?;
            Ok(match guest.call_invoke(&mut *store, input).await? {
                Ok(json) => GuestReturn::Json(json),
                Err(e) => GuestReturn::ToolError(e),
            })
        }
        Pre::Command(pre) => {
            let guest = pre.instantiate_async(&mut *store).await?;
            exit_code(
                guest
                    .wasi_cli_run()
                    .call_run(&mut *store)
                    .await
                    .map(|r| i32::from(r.is_err())),
            )
        }
        Pre::Module(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            if let Ok(start) = instance.get_typed_func::<(), ()>(&mut *store, "_start") {
                return exit_code(start.call_async(&mut *store, ()).await.map(|()| 0));
            }
            // A reactor: initialised, then its `run` returns the exit code.
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
                init.call_async(&mut *store, ()).await?;
            }
            let run = instance.get_typed_func::<(), i32>(&mut *store, "run")?;
            exit_code(run.call_async(&mut *store, ()).await)
        }
        Pre::Functions(functions) => wasmtime::bail!(
            "the component exports plain functions ({}); a call must name one",
            functions.names()
        ),
    }
}

/// A WASI `exit` surfaces as an `I32Exit` error; it is an exit code, not a failure.
fn exit_code(result: wasmtime::Result<i32>) -> wasmtime::Result<GuestReturn> {
    match result {
        Ok(code) => Ok(GuestReturn::Exit(code)),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(GuestReturn::Exit(*code)),
            None => Err(e),
        },
    }
}

/// What was captured so far, for attaching to a failure.
pub fn captured(stdio: &Stdio, exit_code: Option<i32>) -> CapturedOutput {
    CapturedOutput {
        stdout: stdio.stdout.text(),
        stderr: stdio.stderr.text(),
        exit_code,
    }
}

/// Classifies an error raised while calling a guest.
pub fn classify(
    err: &wasmtime::Error,
    state: &State,
    stdio: &Stdio,
    limits: &Limits,
) -> TaskFailure {
    let failure =
        |kind, message: String| TaskFailure::new(kind, message).with_output(captured(stdio, None));
    if let Some(interrupt) = err.downcast_ref::<Interrupt>() {
        return match interrupt {
            Interrupt::Cancelled => stopped(Stopped::Cancelled, stdio, None),
            Interrupt::Timeout => stopped(Stopped::TimedOut(limits.timeout), stdio, None),
        };
    }
    if let Some(stream) = stdio.overflowed() {
        let how = Stopped::Overflowed {
            stream: stream.name(),
            cap: limits.max_output_bytes,
        };
        return stopped(how, stdio, None);
    }
    if state.limiter.exceeded() {
        return failure(
            FailureKind::MemoryExceeded,
            format!(
                "the guest needed more than its memory limit of {} MiB",
                limits.memory_bytes >> 20
            ),
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => failure(
            FailureKind::GuestTrap,
            "stack overflow: the guest recursed deeper than its stack allows".into(),
        ),
        Some(Trap::OutOfFuel) => failure(
            FailureKind::Timeout,
            format!(
                "the guest used up its fuel budget of {}",
                limits.fuel.unwrap_or_default()
            ),
        ),
        Some(Trap::Interrupt) => stopped(Stopped::TimedOut(limits.timeout), stdio, None),
        Some(trap) => failure(
            FailureKind::GuestTrap,
            trap_message(&trap.to_string(), stdio),
        ),
        None => failure(
            FailureKind::GuestTrap,
            trap_message(&format!("{err:#}"), stdio),
        ),
    }
}

/// The failure of a guest that stopped `how`, with what it had written.
pub fn stopped(how: Stopped<'_>, stdio: &Stdio, exit_code: Option<i32>) -> TaskFailure {
    TaskFailure::stopped("the guest", how, captured(stdio, exit_code))
}

/// A trap's message, with the guest's panic message (or last stderr line) if any.
fn trap_message(trap: &str, stdio: &Stdio) -> String {
    let stderr = stdio.stderr.text();
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let panic = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| lines.get(i + 1))
        .filter(|l| !l.starts_with("note: "));
    match panic.or_else(|| {
        lines
            .iter()
            .rev()
            .find(|l| !l.starts_with("note: run with"))
    }) {
        Some(said) => format!("the guest trapped ({trap}): {said}"),
        None => format!("the guest trapped: {trap}"),
    }
}
