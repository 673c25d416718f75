//! `wasmnode tool run|inspect|list`: for plugin authors.

use super::{Printed, Streamed, load_config, parse_mounts, print_result};
use crate::cli::{ToolInspectArgs, ToolListArgs, ToolRunArgs};
use crate::node::Access;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wasmnode_runtime::{
    ComponentSource, HttpGrant, LimitRequest, Router, RunOptions, Runtime, TaskSpec, ToolBackend,
    ToolRegistry, WasmRuntime,
};

/// Invokes a tool once.
pub async fn run(config_file: Option<&Path>, args: ToolRunArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let router = local_router(&config).await?;
    let raw = match &args.args_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        None => args.args.clone(),
    };
    let tool_args: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| super::usage(format!("--args must be a JSON object: {e}")))?;
    if !tool_args.is_object() {
        return Err(super::usage(format!(
            "--args must be a JSON object, not {raw}"
        )));
    }
    let component = resolve(&router.tools(), &args.tool)?;
    let function = args
        .function
        .clone()
        .or_else(|| match router.tools().get(&args.tool) {
            Some(ToolBackend::Function(_, export)) => Some(export.clone()),
            _ => None,
        });
    let mut operator =
        operator_settings(&router, &args.tool, &component, &args.allow_hosts).await?;
    operator
        .config
        .extend(super::key_values("--set", &args.settings)?);
    let mut task = TaskSpec::new("local", "tool_execution", tool_args);
    task.runtime = Runtime::Wasm(WasmRuntime {
        env: super::key_values("--env", &args.env)?,
        config: operator.config,
        http: operator.http,
        function,
        ..WasmRuntime::new(component)
    });
    task.mounts = parse_mounts(&args.mounts)?;
    task.limits = LimitRequest {
        max_runtime_seconds: args.timeout,
        memory_mb: args.memory_mb,
        ..LimitRequest::default()
    };
    // The tool's stderr and log records show as they come; its result is
    // the JSON on stdout.
    let streamed = Streamed {
        stdout: false,
        stderr: !args.full,
    };
    let options = RunOptions {
        events: Some(streamed.sink()),
        ..RunOptions::default()
    };
    Ok(print_result(
        router.run(task, options).await,
        args.full,
        streamed,
    ))
}

/// Prints what a component is.
pub async fn inspect(config_file: Option<&Path>, args: ToolInspectArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let router = local_router(&config).await?;
    let component = resolve(&router.tools(), &args.component)?;
    match router.executors().wasm.inspect(&component).await {
        Ok(info) => {
            super::out(&format!("{}\n", serde_json::to_string_pretty(&info)?));
            Ok(Printed { status: 0 })
        }
        Err(failure) => Ok(print_result(Err(failure), false, Streamed::default())),
    }
}

/// Lists the tools available by name.
pub async fn list(config_file: Option<&Path>, args: ToolListArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let router = local_router(&config).await?;
    let mut listed = Vec::new();
    for name in router.tools().names() {
        let (kind, image) = match router.tools().get(&name) {
            Some(ToolBackend::Component(ComponentSource::Builtin(_))) => ("builtin", None),
            Some(ToolBackend::Component(_)) => ("plugin", None),
            Some(ToolBackend::Function(..)) => ("function", None),
            Some(ToolBackend::Image(image)) => ("image", Some(image.clone())),
            None => continue,
        };
        listed.push(serde_json::json!({"name": name, "kind": kind, "image": image}));
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&listed)?));
    } else {
        for tool in &listed {
            super::out(&format!(
                "{}\t{}\n",
                tool["name"].as_str().unwrap_or_default(),
                tool["kind"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(Printed { status: 0 })
}

/// A router for a local user: any path and local image, the node's tools.
pub(super) async fn local_router(config: &crate::config::Config) -> anyhow::Result<Router> {
    let docker = crate::node::docker(config, Access::Local).await?;
    let llm = std::sync::Arc::new(wasmnode_runtime::llm::LlmExecutor::new(
        config.llm_settings(),
    )?);
    crate::node::router(config, Access::Local, docker, llm).await
}

/// What the operator set for a tool (`[tools.NAME]`).
pub(super) struct OperatorSettings {
    /// Its settings (`[tools.NAME.config]`).
    pub config: BTreeMap<String, String>,
    /// The outbound HTTP it is granted.
    pub http: Option<Arc<HttpGrant>>,
}

/// The operator's settings of the tool that `reference` names (by its
/// registered name, or for a file by the name it gives itself), with
/// `more_hosts` granted beside its `allowed_hosts`.
pub(super) async fn operator_settings(
    router: &Router,
    reference: &str,
    component: &ComponentSource,
    more_hosts: &[String],
) -> anyhow::Result<OperatorSettings> {
    let name = match router.executors().wasm.tool_description(component).await {
        Ok(Some(tool)) => tool.name.clone(),
        _ => reference.to_string(),
    };
    let tools = router.tools();
    let mut settings = tools.settings(&name).cloned().unwrap_or_default();
    settings.allowed_hosts.extend(more_hosts.iter().cloned());
    Ok(OperatorSettings {
        config: tools.config_for(&name, None)?,
        http: settings.grant().map_err(anyhow::Error::msg)?.map(Arc::new),
    })
}

/// `builtin:NAME` and paths as given; a bare name is looked up in the
/// registry (a plain function's name gives its component).
pub(super) fn resolve(tools: &ToolRegistry, reference: &str) -> anyhow::Result<ComponentSource> {
    if reference.starts_with("builtin:") || reference.ends_with(".wasm") || reference.contains('/')
    {
        return Ok(ComponentSource::parse(reference));
    }
    match tools.get(reference) {
        Some(ToolBackend::Component(source) | ToolBackend::Function(source, _)) => {
            Ok(source.clone())
        }
        Some(ToolBackend::Image(image)) => {
            anyhow::bail!("tool `{reference}` runs in the image {image}, not as a component")
        }
        None => anyhow::bail!(
            "no tool named `{reference}` (known: {})",
            tools.names().join(", ")
        ),
    }
}
