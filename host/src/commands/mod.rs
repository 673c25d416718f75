//! One module per CLI command.

pub mod agent;
pub mod drain;
pub mod mcp;
pub mod precompile;
pub mod receipt;
pub mod registry;
pub mod replay;
pub mod run;
pub mod scaffold;
pub mod serve;
pub mod store;
pub mod tool;
pub mod tool_test;
pub mod trust;

use crate::config::{Config, Flag};
use std::path::Path;
use std::sync::Arc;
use wasmnode_runtime::{
    EventSink, FailureKind, Mount, TaskEvent, TaskFailure, TaskOutcome, log_line,
};

/// A command line a command cannot use: exit status 2, as for the errors
/// the argument parser finds itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A [`UsageError`] saying `message`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Loads the configuration (defaults < file < environment < `flags`) and
/// installs the operator's CA file, if any.
pub fn load_config(file: Option<&Path>, flags: &[Flag]) -> anyhow::Result<Config> {
    let config = Config::load(file, |name| std::env::var(name).ok(), flags)?;
    if let Some(ca_file) = &config.tls.ca_file {
        wasmnode_runtime::tls::install(
            wasmnode_runtime::tls::load_roots(ca_file).map_err(anyhow::Error::msg)?,
        );
    }
    Ok(config)
}

/// Parses `HOST:GUEST[:ro|rw]` mount flags.
pub fn parse_mounts(specs: &[String]) -> anyhow::Result<Vec<Mount>> {
    specs
        .iter()
        .map(|s| Mount::parse(s).map_err(usage))
        .collect()
}

/// Parses `K=V` flags (`--env`, `--config`) into a map; `flag` names them
/// in the error.
pub fn key_values(
    flag: &str,
    pairs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(usage(format!("{flag} `{pair}` must look like KEY=VALUE"))),
        })
        .collect()
}

/// What a one-shot command prints and how it exits.
pub struct Printed {
    /// Process exit status.
    pub status: u8,
}

/// Which of a run's streams were already shown as they came.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streamed {
    /// The guest's stdout went to ours live.
    pub stdout: bool,
    /// The guest's stderr (and log records) went to ours live.
    pub stderr: bool,
}

impl Streamed {
    /// A sink writing the streams this says are shown live to ours as
    /// they come (a tool's log records as their stderr lines).
    pub fn sink(self) -> EventSink {
        Arc::new(move |event| match event {
            TaskEvent::Stdout(bytes) if self.stdout => out_bytes(&bytes),
            TaskEvent::Stderr(bytes) if self.stderr => err_bytes(&bytes),
            TaskEvent::Log {
                tool,
                level,
                message,
            } if self.stderr => err(&log_line(&tool, level, &message)),
            _ => {}
        })
    }
}

/// Prints a one-shot result: the output JSON (or, with `full`, the whole
/// outcome); a program's raw stdout/stderr when it printed no JSON (unless
/// `streamed` showed them already); a failure as one line on stderr.
pub fn print_result(
    result: Result<TaskOutcome, TaskFailure>,
    full: bool,
    streamed: Streamed,
) -> Printed {
    let pass_through = |stdout: &str, stderr: &str| {
        if !streamed.stdout {
            out(stdout);
        }
        if !streamed.stderr {
            err(stderr);
        }
    };
    match result {
        Ok(outcome) if full => {
            out(&format!("{}\n", pretty(&outcome_json(&outcome))));
            Printed { status: 0 }
        }
        Ok(outcome) if outcome.exit_code.is_some() && outcome.output.is_null() => {
            pass_through(&outcome.stdout, &outcome.stderr);
            Printed { status: 0 }
        }
        Ok(outcome) => {
            out(&format!("{}\n", pretty(&outcome.output)));
            Printed { status: 0 }
        }
        Err(failure) => {
            if let Some(captured) = &failure.captured {
                if full {
                    out(&format!(
                        "{}\n",
                        pretty(&serde_json::json!({
                            "error": {"code": failure.kind.code(), "message": failure.message},
                            "stdout": captured.stdout,
                            "stderr": captured.stderr,
                            "exit_code": captured.exit_code,
                        }))
                    ));
                } else if failure.kind == FailureKind::NonZeroExit {
                    pass_through(&captured.stdout, &captured.stderr);
                }
            }
            err(&format!(
                "error: {}: {}\n",
                failure.kind.code(),
                failure.message.replace('\n', " ")
            ));
            Printed { status: 1 }
        }
    }
}

/// The JSON record of a successful outcome.
pub fn outcome_json(outcome: &TaskOutcome) -> serde_json::Value {
    serde_json::json!({
        "output": outcome.output,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": outcome.exit_code,
        "executor": outcome.executor,
        "metrics": outcome.metrics,
    })
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialize")
}

/// Writes to stdout; a closed pipe (`wasmnode run ... | head`) is not an error.
pub fn out(text: &str) {
    out_bytes(text.as_bytes());
}

/// Writes bytes to stdout, ignoring a closed pipe.
fn out_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Writes bytes to stderr, ignoring a closed pipe.
fn err_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(bytes).and_then(|()| stderr.flush());
}

/// Writes to stderr, ignoring a closed pipe.
pub fn err(text: &str) {
    err_bytes(text.as_bytes());
}
