//! Command-line interface (clap). Every command has `--help`.

use crate::agent::Protocol;
use crate::config::Flag;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod receipt;
mod tool;
pub use receipt::{IdentityArgs, ReceiptCommand, ReceiptVerifyArgs, ReplayArgs};
pub use tool::{
    Lang, ToolCommand, ToolInspectArgs, ToolKeygenArgs, ToolListArgs, ToolNewArgs, ToolPullArgs,
    ToolPushArgs, ToolRunArgs, ToolSignArgs, ToolTestArgs, ToolVerifyArgs, WitArgs,
};

/// wasmnode: run other people's code in WebAssembly sandboxes, with a Docker
/// fallback, standalone or attached to a control plane.
#[derive(Debug, Parser)]
#[command(name = "wasmnode", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "WASMNODE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "WASMNODE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `wasmnode=debug,warn`.
    #[arg(
        long,
        global = true,
        env = "WASMNODE_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node standalone, serving the local job API (Job Protocol v1).
    Serve(ServeArgs),
    /// Attach the node to a control plane (SPLAI, or a GOLIAT-style dashboard); the local API is served too.
    Agent(AgentArgs),
    /// Run one task locally and print its JSON result.
    Run(RunArgs),
    /// Run or inspect a tool component (for plugin authors).
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Print the effective configuration (secrets masked).
    Config(NodeArgs),
    /// Serve the node's tools to an MCP client (an agent, an IDE) on stdin/stdout; each call runs in a fresh sandbox.
    Mcp(McpArgs),
    /// Print the node's WIT packages (`wasmnode:tool`, `wasmnode:task`), or write them under --out.
    Wit(WitArgs),
    /// Check or repair the job store of a stopped node.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Drain the node serving on this machine and wait until it has stopped (a Kubernetes preStop hook).
    Drain(DrainArgs),
    /// Compile the built-in guests for any CPU of this binary's target, for a release build to embed.
    Precompile(PrecompileArgs),
    /// Print the node's identity: the key that signs its receipts (made here if the node has none yet).
    Identity(IdentityArgs),
    /// Check the signed receipt of a job.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Re-run a deterministic job here and check that its output matches its receipt.
    Replay(ReplayArgs),
}

/// `wasmnode precompile`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes DIR/NAME.cwasm per built-in guest and DIR/MANIFEST (target, engine hash, wasm
hashes). Compiled under the configuration's engine settings with this target's
baseline CPU features, so the code runs on every CPU of the target. A second
build with WASMNODE_PRECOMPILED_DIR=DIR embeds it; that binary's first task
then compiles nothing (scripts/release.sh does both, under qemu for a foreign
target). A node uses the embedded code only when its engine settings match
(wasm.precompiled_builtins = false compiles for the node's own CPU instead)."
)]
pub struct PrecompileArgs {
    /// Directory to write the compiled code to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `wasmnode drain`.
#[derive(Debug, Args)]
#[command(
    after_help = "Asks the node at api.listen (or --url) to drain, as SIGTERM does: no new jobs,
running ones may finish within scheduler.drain_timeout_seconds. Then waits until
the node no longer answers. The API key is read as the node reads it (config
file or WASMNODE_API_KEY).

Exit status: 0 once the node has stopped, 1 when it could not be asked or did
not stop in time."
)]
pub struct DrainArgs {
    /// The node's base URL (default: http://<api.listen>, loopback for 0.0.0.0).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// How long to wait for the node to stop (default: the drain timeout + 15 s).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode store`.
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Both need the node stopped (the store is locked while it runs).
Exit status: 0 when the store is sound (or was repaired), 2 when it is damaged or cannot be opened."
)]
pub enum StoreCommand {
    /// Verify every page of the job store and count its jobs.
    Check(NodeArgs),
    /// Repair a damaged job store: in place where possible, else move the file
    /// aside and rebuild it from every job, result and report that can be read.
    Repair(NodeArgs),
}

/// Settings shared by commands that start a node or use its state.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// State directory (job store, compiled-code cache, workspaces).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `wasmnode mcp`.
#[derive(Debug, Args)]
#[command(
    after_help = "Speaks the Model Context Protocol on stdin/stdout (logs go to stderr). Each tools/call is a job
in the node's store, with the directories [mcp] mounts gives it. A served node answers MCP on /mcp too.

Client configuration (e.g. Claude Desktop, VS Code):
  {\"mcpServers\": {\"wasmnode\": {\"command\": \"wasmnode\", \"args\": [\"--config\", \"/etc/wasmnode/mcp.toml\", \"mcp\"]}}}"
)]
pub struct McpArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "The API key is read from the config file or WASMNODE_API_KEY (never a flag, so it stays out of `ps`).
Without a key the API only binds to loopback unless api.allow_unauthenticated_remote is set.

First job:
  curl -s 'localhost:9000/jobs?wait=30' -H 'Content-Type: application/json' \\
    -d'{\"protocol_version\":1,\"job_id\":\"hello\",\"task\":{\"type\":\"retrieval\",\"payload\":{\"query\":\"wasm\",\"documents\":\"wasm\\ndocker\"}},\"runtime\":{\"mode\":\"wasm\"}}'
  curl -s localhost:9000/jobs/hello/result"
)]
pub struct ServeArgs {
    /// Listen address (default 127.0.0.1:9000).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Jobs running at once (default: CPU cores).
    #[arg(long, value_name = "N")]
    pub max_concurrent_jobs: Option<usize>,
    /// Let a browser page from this origin call the API (repeatable; `*`
    /// for any). Replaces api.cors_origins and WASMNODE_CORS_ORIGINS.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "The token is read from control_plane.token or SPLAI_API_TOKEN (sent as X-SPLAI-Token).
SPLAI's worker environment (SPLAI_CONTROL_PLANE_URL, SPLAI_WORKER_ID, SPLAI_MAX_PARALLEL_TASKS,
SPLAI_POLL_MILLIS, SPLAI_ARTIFACT_ROOT, ...) is accepted as is."
)]
pub struct AgentArgs {
    /// The control plane's base URL (or SPLAI_CONTROL_PLANE_URL).
    #[arg(long, value_name = "URL")]
    pub control_plane: Option<String>,
    /// Control-plane protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Splai)]
    pub protocol: Protocol,
    /// Machine id for GOLIAT-style dashboards (default: primary IP, else host name).
    #[arg(long, value_name = "ID")]
    pub machine_id: Option<String>,
    /// This node's worker id (default: host name).
    #[arg(long, value_name = "ID")]
    pub worker_id: Option<String>,
    /// Address of the local API (default 127.0.0.1:9000).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Tasks in flight at once (default: max_concurrent_jobs).
    #[arg(long, value_name = "N")]
    pub max_parallel_tasks: Option<usize>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode run`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  wasmnode run retrieval --input query='reset password' --input documents_json=@docs.json
  wasmnode run aggregation --input items_json='[{\"a\":1},{\"b\":2}]'
  wasmnode run --component ./hello.wasm --arg world
  wasmnode run --job job.json

Exit status: 0 on success, 1 when the task failed (the error is printed on one line), 2 for usage errors.")]
pub struct RunArgs {
    /// Task type (aggregation, retrieval, tool_execution, ...); `wasm` with --component.
    #[arg(value_name = "TASK_TYPE", required_unless_present_any = ["job", "component"])]
    pub task_type: Option<String>,
    /// A Job Protocol v1 document to run instead.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["task_type", "component", "input"])]
    pub job: Option<PathBuf>,
    /// Task input KEY=VALUE; KEY=@FILE reads the value from a file.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    pub input: Vec<String>,
    /// Run this component (`builtin:NAME` or a .wasm file) instead of routing by type.
    #[arg(long, value_name = "REF")]
    pub component: Option<String>,
    /// Argument for a command component (repeatable).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Environment variable K=V for the component (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Mount a host directory: HOST:GUEST[:ro|rw] (read-only by default).
    #[arg(long = "mount", short = 'm', value_name = "HOST:GUEST[:MODE]")]
    pub mounts: Vec<String>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Memory limit in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// Deterministic fuel budget.
    #[arg(long, value_name = "UNITS")]
    pub fuel: Option<u64>,
    /// Print the whole outcome (output, stdout, stderr, exit code, metrics).
    #[arg(long)]
    pub full: bool,
    /// Keep the task's workspace in DIR (missing or empty): what it wrote to
    /// /workspace. A --component run gets a writable /workspace for it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// A flag's setting, when it was given.
fn flag(key: &'static [&'static str], value: Option<impl Into<toml::Value>>) -> Option<Flag> {
    value.map(|v| (key, v.into()))
}

impl NodeArgs {
    /// The config keys these flags set.
    pub fn flags(&self) -> Vec<Flag> {
        let dir = self.data_dir.as_ref().map(|d| d.display().to_string());
        flag(&["node", "data_dir"], dir).into_iter().collect()
    }
}

impl ServeArgs {
    /// The config keys these flags set.
    pub fn flags(&self) -> Vec<Flag> {
        let mut flags = self.node.flags();
        flags.extend(flag(&["api", "listen"], self.listen.map(|a| a.to_string())));
        flags.extend(flag(
            &["scheduler", "max_concurrent_jobs"],
            self.max_concurrent_jobs.map(|n| n as i64),
        ));
        let origins = (!self.cors_origins.is_empty()).then(|| self.cors_origins.clone());
        flags.extend(flag(&["api", "cors_origins"], origins));
        flags
    }
}

impl AgentArgs {
    /// The config keys these flags set.
    pub fn flags(&self) -> Vec<Flag> {
        let mut flags = self.node.flags();
        flags.extend(flag(&["control_plane", "url"], self.control_plane.clone()));
        flags.extend(flag(&["node", "worker_id"], self.worker_id.clone()));
        flags.extend(flag(&["api", "listen"], self.listen.map(|a| a.to_string())));
        flags.extend(flag(
            &["control_plane", "max_parallel_tasks"],
            self.max_parallel_tasks.map(|n| n as i64),
        ));
        flags.extend(flag(&["goliat", "machine_id"], self.machine_id.clone()));
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_needs_a_type_a_job_or_a_component() {
        assert!(Cli::try_parse_from(["wasmnode", "run"]).is_err());
        assert!(Cli::try_parse_from(["wasmnode", "run", "retrieval", "-i", "query=x"]).is_ok());
        assert!(Cli::try_parse_from(["wasmnode", "run", "--job", "j.json"]).is_ok());
        assert!(
            Cli::try_parse_from(["wasmnode", "run", "--component", "x.wasm", "--arg", "-v"])
                .is_ok()
        );
        assert!(Cli::try_parse_from(["wasmnode", "run", "retrieval", "--job", "j.json"]).is_err());
    }
}
