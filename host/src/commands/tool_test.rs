//! `wasmnode tool test`: runs a tool's golden cases and prints a pass/fail
//! table. A case is a JSON file in the cases directory:
//! `{"args": {...}, "mounts": ["data:/in"], "config": {"k": "v"},
//! "env": {"K": "V"}, "expect": {"output": {...}}}` or
//! `"expect": {"error": "INVALID_INPUT"}`; relative mount sources are taken
//! from the cases directory, and `config` goes over the operator's settings.

use super::tool::{local_router, operator_settings, resolve};
use super::{Printed, load_config};
use crate::cli::ToolTestArgs;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use wasmnode_runtime::{Mount, MountSource, RunOptions, Runtime, TaskSpec, WasmRuntime};

/// One golden case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default = "empty_args")]
    args: serde_json::Value,
    #[serde(default)]
    mounts: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    expect: Expect,
}

/// What a case expects: the exact output, or a failure of this kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Expect {
    Output(serde_json::Value),
    Error(String),
}

fn empty_args() -> serde_json::Value {
    serde_json::json!({})
}

/// Runs every `*.json` case under `--cases`; exit status 1 when one fails.
pub async fn test(config_file: Option<&Path>, args: ToolTestArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let router = local_router(&config).await?;
    let component = resolve(&router.tools(), &args.tool)?;
    let operator = operator_settings(&router, &args.tool, &component, &[]).await?;
    let mut files: Vec<_> = std::fs::read_dir(&args.cases)
        .with_context(|| format!("cannot read the cases directory {}", args.cases.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no *.json cases in {}",
        args.cases.display()
    );
    let mut failed = 0;
    for file in &files {
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let started = Instant::now();
        let verdict = match load(file, &args.cases) {
            Ok((case, mounts)) => {
                let mut config = operator.config.clone();
                config.extend(case.config);
                let mut task = TaskSpec::new("test", "tool_execution", case.args);
                task.runtime = Runtime::Wasm(WasmRuntime {
                    env: case.env,
                    config,
                    http: operator.http.clone(),
                    ..WasmRuntime::new(component.clone())
                });
                task.mounts = mounts;
                judge(&case.expect, router.run(task, RunOptions::default()).await)
            }
            Err(e) => Err(format!("bad case: {e:#}")),
        };
        let ms = started.elapsed().as_millis();
        match verdict {
            Ok(()) => super::out(&format!("PASS  {name}  ({ms} ms)\n")),
            Err(why) => {
                failed += 1;
                super::out(&format!("FAIL  {name}  ({ms} ms): {why}\n"));
            }
        }
    }
    super::out(&format!(
        "{} passed, {failed} failed\n",
        files.len() - failed
    ));
    Ok(Printed {
        status: u8::from(failed > 0),
    })
}

fn load(file: &Path, cases: &Path) -> anyhow::Result<(Case, Vec<Mount>)> {
    let text = std::fs::read_to_string(file)?;
    let case: Case = serde_json::from_str(&text)?;
    let mut mounts = Vec::new();
    for spec in &case.mounts {
        let mut mount = Mount::parse(spec).map_err(anyhow::Error::msg)?;
        if let MountSource::Host(path) = &mount.source
            && path.is_relative()
        {
            mount.source = MountSource::Host(cases.join(path));
        }
        mounts.push(mount);
    }
    Ok((case, mounts))
}

fn judge(
    expect: &Expect,
    result: Result<wasmnode_runtime::TaskOutcome, wasmnode_runtime::TaskFailure>,
) -> Result<(), String> {
    match (expect, result) {
        (Expect::Output(want), Ok(outcome)) if outcome.output == *want => Ok(()),
        (Expect::Output(want), Ok(outcome)) => {
            Err(format!("expected {want}, got {}", outcome.output))
        }
        (Expect::Output(_), Err(failure)) => Err(format!("failed: {failure}")),
        (Expect::Error(kind), Err(failure)) if failure.kind.code() == kind => Ok(()),
        (Expect::Error(kind), Err(failure)) => Err(format!("expected {kind}, got {failure}")),
        (Expect::Error(kind), Ok(outcome)) => Err(format!(
            "expected {kind}, got the output {}",
            outcome.output
        )),
    }
}
