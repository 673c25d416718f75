//! `wasmnode mcp`: the node's tools served to one MCP client on
//! stdin/stdout, every call a job in the node's store.

use super::{Printed, load_config};
use crate::cli::McpArgs;
use crate::mcp::{ToolServer, serve_stdio};
use crate::node::Node;
use anyhow::Context;
use std::sync::Arc;

/// Serves until the client closes stdin.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: McpArgs,
) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let section = config.mcp.clone();
    let node = Arc::new(Node::start(config).await?);
    node.spawn_warm_up();
    node.spawn_plugin_watch();
    tracing::info!(
        data_dir = %node.config.node.data_dir.display(),
        "wasmnode serving MCP on stdin/stdout"
    );
    serve_stdio(ToolServer::new(node, section))
        .await
        .context("MCP over stdio")?;
    Ok(Printed { status: 0 })
}
