//! Assembling a node from its configuration: the executors, the tool
//! registry and the router that every front end (CLI, API, agent) shares.

use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;
use wasmnode_runtime::{ArtifactStore, Backends, Policy, Router, ToolRegistry, WasmExecutor};

/// Builds the router for `config`, enforcing `policy`.
pub async fn router(config: &Config, policy: Policy) -> anyhow::Result<Router> {
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let wasm = Arc::new(WasmExecutor::new(config.wasm_config())?);
    tracing::debug!(allocator = wasm.allocator().as_str(), "WASI executor ready");
    let mut tools = ToolRegistry::builtin();
    if let Some(dir) = &config.node.plugin_dir {
        let found = tools
            .add_plugins(dir, &wasm)
            .await
            .with_context(|| format!("cannot read plugin directory {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), plugins = found.len(), "plugin tools loaded");
    }
    let artifact_root = config.node.artifact_root();
    let artifacts = ArtifactStore::open(&artifact_root)
        .with_context(|| format!("cannot open artifact root {}", artifact_root.display()))?;
    let backends = Backends {
        wasm,
        image: None,
        models: None,
    };
    Ok(Router::new(
        backends,
        policy,
        tools,
        artifacts,
        data_dir.join("workspaces"),
    ))
}
