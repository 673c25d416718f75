//! `wasmnode run`: one task, locally, with the result on stdout.

use super::{Printed, Streamed, load_config, parse_mounts, print_result};
use crate::cli::RunArgs;
use crate::job::JobRequest;
use crate::node::Access;
use anyhow::Context;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use wasmnode_runtime::router::WORKSPACE_MOUNT;
use wasmnode_runtime::{
    ComponentSource, FailureKind, LimitRequest, Mount, MountSource, RunOptions, Runtime, TaskSpec,
    WasmRuntime,
};

/// Runs the task described by `args`.
pub async fn execute(config_file: Option<&Path>, args: RunArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let task = task_from_args(&args)?;
    let keep_workspace = args.out.as_deref().map(out_dir).transpose()?;
    let docker = crate::node::docker(&config, Access::Local).await?;
    let llm = std::sync::Arc::new(wasmnode_runtime::llm::LlmExecutor::new(
        config.llm_settings(),
    )?);
    let router = crate::node::router(&config, Access::Local, docker, llm).await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    // A program's own output passes through as it comes; a task's result
    // is the JSON on stdout, so only its stderr does. `--full` prints it
    // all at the end.
    let program = matches!(task.runtime, Runtime::Wasm(_) | Runtime::Image(_));
    let streamed = Streamed {
        stdout: program && !args.full,
        stderr: !args.full,
    };
    let result = router
        .run(
            task,
            RunOptions {
                cancel,
                events: Some(streamed.sink()),
                mask: None,
                keep_workspace,
                start: None,
            },
        )
        .await;
    // A task that needed no workspace leaves `--out` as it found it: empty.
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create it", dir.display()))?;
    }
    // A program's exit code is the command's.
    let code = match &result {
        Err(failure) if program && failure.kind == FailureKind::NonZeroExit => failure
            .captured
            .as_ref()
            .and_then(|c| c.exit_code)
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| *c != 0),
        _ => None,
    };
    let printed = print_result(result, args.full, streamed);
    Ok(Printed {
        status: code.unwrap_or(printed.status),
    })
}

/// Readies `--out DIR` to become the workspace: a missing directory, or an
/// empty one (removed, for the router to make); anything else is refused
/// so nothing of the user's is mixed in or lost.
fn out_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(super::usage(format!("--out {}: {e}", dir.display()))),
        Ok(true) => std::fs::remove_dir(dir)
            .with_context(|| format!("--out {}: cannot take it over", dir.display()))?,
        Ok(false) => {
            return Err(super::usage(format!(
                "--out {} must be missing or empty",
                dir.display()
            )));
        }
    }
    Ok(std::path::absolute(dir)?)
}

fn task_from_args(args: &RunArgs) -> anyhow::Result<TaskSpec> {
    if let Some(path) = &args.job {
        let body = std::fs::read(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        let job =
            JobRequest::parse(&body).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(job.to_task());
    }
    let mut payload = Map::new();
    for input in &args.input {
        let (key, value) = input.split_once('=').ok_or_else(|| {
            super::usage(format!(
                "--input `{input}` must look like KEY=VALUE or KEY=@FILE"
            ))
        })?;
        let value = match value.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("--input {key}: cannot read {file}"))?,
            None => value.to_string(),
        };
        payload.insert(key.to_string(), Value::String(value));
    }
    let task_type = args.task_type.clone().unwrap_or_else(|| "wasm".into());
    let mut task = TaskSpec::new("local", task_type, Value::Object(payload));
    task.mounts = parse_mounts(&args.mounts)?;
    task.limits = LimitRequest {
        memory_mb: args.memory_mb,
        max_runtime_seconds: args.timeout,
        fuel: args.fuel,
        ..LimitRequest::default()
    };
    if let Some(component) = &args.component {
        task.runtime = Runtime::Wasm(WasmRuntime {
            args: args.args.clone(),
            env: super::key_values("--env", &args.env)?,
            // Without inputs, a program reads the command's own stdin, as
            // it comes (nothing at a terminal that is not typed).
            inherit_stdin: task.payload.as_object().is_some_and(Map::is_empty),
            ..WasmRuntime::new(ComponentSource::parse(component))
        });
        let has_workspace = task.mounts.iter().any(|m| m.guest_path == WORKSPACE_MOUNT);
        if args.out.is_some() && !has_workspace {
            task.mounts.push(Mount {
                source: MountSource::Workspace,
                guest_path: WORKSPACE_MOUNT.into(),
                writable: true,
            });
        }
    } else if !args.args.is_empty() || !args.env.is_empty() {
        return Err(super::usage(
            "--arg and --env apply to --component runs only",
        ));
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn run_args(argv: &[&str]) -> RunArgs {
        match Cli::parse_from(argv).command {
            Command::Run(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn inputs_become_a_string_payload_and_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs.json");
        std::fs::write(&docs, "[1]").unwrap();
        let arg = format!("documents_json=@{}", docs.display());
        let task = task_from_args(&run_args(&[
            "wasmnode",
            "run",
            "retrieval",
            "-i",
            "query=a=b",
            "-i",
            &arg,
        ]))
        .unwrap();
        assert_eq!(
            task.payload,
            serde_json::json!({"query": "a=b", "documents_json": "[1]"})
        );
        assert!(matches!(task.runtime, Runtime::Auto { .. }));
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(
            task_from_args(&run_args(&[
                "wasmnode",
                "run",
                "retrieval",
                "-i",
                "novalue"
            ]))
            .is_err()
        );
        assert!(
            task_from_args(&run_args(&[
                "wasmnode",
                "run",
                "retrieval",
                "-m",
                "/a:/b:zz"
            ]))
            .is_err()
        );
        assert!(
            task_from_args(&run_args(&["wasmnode", "run", "retrieval", "--arg", "x"])).is_err()
        );
        assert!(
            task_from_args(&run_args(&[
                "wasmnode",
                "run",
                "retrieval",
                "-i",
                "k=@/no/such/file"
            ]))
            .is_err()
        );
    }

    #[test]
    fn components_run_explicitly_with_args_and_env() {
        let task = task_from_args(&run_args(&[
            "wasmnode",
            "run",
            "--component",
            "x.wasm",
            "--arg",
            "-v",
            "-e",
            "A=1",
        ]))
        .unwrap();
        let Runtime::Wasm(w) = task.runtime else {
            panic!("wasm runtime")
        };
        assert_eq!(w.args, ["-v"]);
        assert_eq!(w.env["A"], "1");
    }
}
