//! `wasmnode tool …` and `wasmnode wit`: the plugin author's commands.

use super::NodeArgs;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `wasmnode tool`.
#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// Create a plugin project (Rust or Python) that builds anywhere: the WIT it needs is written into it.
    #[command(after_help = "Examples:
  wasmnode tool new line_count && cd line_count && cargo build --release --target wasm32-wasip2
  wasmnode tool new line_count --lang python && cd line_count && make")]
    New(ToolNewArgs),
    /// Invoke a tool component once and print its JSON result.
    #[command(after_help = "Example:
  wasmnode tool run builtin:grep --mount ./src:/src:ro --args '{\"pattern\": \"TODO\", \"path\": \"/src\"}'")]
    Run(ToolRunArgs),
    /// Show a component's world, imports, exports and (for tools) its schema.
    Inspect(ToolInspectArgs),
    /// List the tools this node can run (built-in and plugins).
    List(ToolListArgs),
    /// Run a tool's golden cases (`*.json` in --cases) and print a pass/fail table.
    #[command(
        after_help = "A case: {\"args\": {...}, \"mounts\": [\"data:/in\"], \"config\": {...}, \"env\": {...},
\"expect\": {\"output\": {...}}} or \"expect\": {\"error\": \"INVALID_INPUT\"}; relative mount sources are
taken from the cases directory.
Exit status: 0 when every case passes, 1 otherwise."
    )]
    Test(ToolTestArgs),
    /// Make an ed25519 key pair for signing tools (PKCS#8 / SPKI PEM files).
    #[command(after_help = "Example:
  wasmnode tool keygen --out alice   # writes alice.pem (private, 0600) and alice.pub.pem")]
    Keygen(ToolKeygenArgs),
    /// Sign a tool component: writes TOOL.wasm.sig over its digest and manifest.
    Sign(ToolSignArgs),
    /// Check a tool's signature against public keys; exit status 0 when it holds.
    Verify(ToolVerifyArgs),
    /// Push a tool (and its signature, if any) to an OCI registry as a wasm artifact.
    #[command(after_help = "Example:
  wasmnode tool push word_count.wasm 127.0.0.1:5000/tools/word_count:0.1.0
Registries on a loopback address are spoken to over plain HTTP, others over HTTPS.")]
    Push(ToolPushArgs),
    /// Pull a tool from an OCI registry, check its digest, and write it (and its signature).
    #[command(after_help = "Example:
  wasmnode tool pull 127.0.0.1:5000/tools/word_count:0.1.0 --dir plugins/
Prints the reference pinned by digest (REPO@sha256:...), which pulls exactly these bytes again.")]
    Pull(ToolPullArgs),
}

/// `wasmnode tool keygen`.
#[derive(Debug, Args)]
pub struct ToolKeygenArgs {
    /// Path prefix of the key files: PREFIX.pem and PREFIX.pub.pem.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

/// `wasmnode tool sign`.
#[derive(Debug, Args)]
pub struct ToolSignArgs {
    /// The tool component (.wasm).
    #[arg(value_name = "TOOL")]
    pub tool: PathBuf,
    /// The private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool verify`.
#[derive(Debug, Args)]
pub struct ToolVerifyArgs {
    /// The tool component (.wasm); its signature is TOOL.wasm.sig.
    #[arg(value_name = "TOOL")]
    pub tool: PathBuf,
    /// A trusted public key (PEM; repeatable). Default: the node's policy.trusted_keys.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool push`.
#[derive(Debug, Args)]
pub struct ToolPushArgs {
    /// The tool component (.wasm).
    #[arg(value_name = "TOOL")]
    pub tool: PathBuf,
    /// Where to: REGISTRY/REPOSITORY:TAG.
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Speak plain HTTP to a registry that is not on a loopback address.
    #[arg(long)]
    pub plain_http: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool pull`.
#[derive(Debug, Args)]
pub struct ToolPullArgs {
    /// What: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Directory to write NAME.wasm (and NAME.wasm.sig) into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Speak plain HTTP to a registry that is not on a loopback address.
    #[arg(long)]
    pub plain_http: bool,
}

/// `wasmnode wit`.
#[derive(Debug, Args)]
pub struct WitArgs {
    /// Write `tool/tool.wit` and `task/task.wit` under this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `wasmnode tool new`.
#[derive(Debug, Args)]
pub struct ToolNewArgs {
    /// The tool's name (lower case, digits and `_`), as jobs will call it.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to create the project (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
}

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py.
    Python,
}

/// `wasmnode tool test`.
#[derive(Debug, Args)]
pub struct ToolTestArgs {
    /// The tool: `builtin:NAME`, a .wasm file, or a plugin's name.
    #[arg(value_name = "TOOL")]
    pub tool: String,
    /// The directory of cases.
    #[arg(long, value_name = "DIR", default_value = "cases")]
    pub cases: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool list`.
#[derive(Debug, Args)]
pub struct ToolListArgs {
    /// Print a JSON array of `{name, kind, image}` instead of `NAME<TAB>KIND` lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool run`.
#[derive(Debug, Args)]
pub struct ToolRunArgs {
    /// The tool: `builtin:NAME`, a .wasm file, or a plugin's name (a plain
    /// function of a plugin is named `STEM.FUNC`).
    #[arg(value_name = "TOOL")]
    pub tool: String,
    /// For a component that exports plain functions, the one to call (`add`,
    /// or `ns:pkg/iface#func`; `tool inspect` lists them) with the arguments
    /// as its parameters.
    #[arg(long, value_name = "EXPORT")]
    pub function: Option<String>,
    /// Arguments as a JSON object.
    #[arg(
        long,
        value_name = "JSON",
        default_value = "{}",
        conflicts_with = "args_file"
    )]
    pub args: String,
    /// Read the JSON arguments from a file.
    #[arg(long, value_name = "FILE")]
    pub args_file: Option<PathBuf>,
    /// Mount a host directory: HOST:GUEST[:ro|rw] (read-only by default).
    #[arg(long = "mount", short = 'm', value_name = "HOST:GUEST[:MODE]")]
    pub mounts: Vec<String>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Memory limit, MiB (default: the operator's default).
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// An environment variable for the tool (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A setting the tool reads through `wasmnode:tool/config`, over the
    /// operator's `[tools.NAME.config]` (repeatable; `--config` names the
    /// node's configuration file).
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Let the tool reach this host over HTTP, beside the operator's
    /// `[tools.NAME] allowed_hosts` (repeatable): `host`, `host:port`,
    /// `*.domain`, an IP address (`127.0.0.1:8080` reaches a loopback server).
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_hosts: Vec<String>,
    /// Print the whole outcome (output, stdout, stderr, exit code, metrics)
    /// instead of the output alone.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `wasmnode tool inspect`.
#[derive(Debug, Args)]
pub struct ToolInspectArgs {
    /// The component: `builtin:NAME` or a .wasm file.
    #[arg(value_name = "COMPONENT")]
    pub component: String,
    #[command(flatten)]
    pub node: NodeArgs,
}
