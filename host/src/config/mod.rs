//! The node's configuration. Precedence: command-line flags > environment
//! (`WASMNODE_*`, with SPLAI_* and other worker conventions as aliases) >
//! TOML file > built-in defaults. `wasmnode config` prints the result with
//! secrets masked.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmnode_runtime::Policy;
use wasmnode_runtime::docker::{DockerSettings, ImageAllowlist};
use wasmnode_runtime::limits::{LimitPolicy, Limits};
use wasmnode_runtime::llm::backends::normalize as normalize_backend;
use wasmnode_runtime::llm::{Backend, Digest, LlmSettings, Protocol};
use wasmnode_runtime::urls::redact;
use wasmnode_runtime::wasm::{AllocatorChoice, EngineSettings, WasmConfig};

/// Shown instead of a secret.
pub const MASK: &str = "********";

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable holds a bad value.
    #[error("environment variable {name}={value:?}: {message}")]
    Env {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything configurable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity and directories.
    pub node: NodeConfig,
    /// The local HTTP API.
    pub api: ApiConfig,
    /// Queueing and concurrency.
    pub scheduler: SchedulerConfig,
    /// Default and maximum task limits.
    pub limits: LimitsConfig,
    /// What tasks may use.
    pub policy: PolicyConfig,
    /// The WebAssembly engine.
    pub wasm: WasmSection,
    /// Containers (Docker fallback).
    pub docker: DockerSection,
    /// Attached mode (`wasmnode agent`).
    pub control_plane: ControlPlaneSection,
    /// LLM, embedding and model servers, and the model cache.
    pub llm: LlmSection,
    /// The Vera-style task API (`/execute`, `/task/{id}/...`).
    pub vera: VeraSection,
    /// Attached to a GOLIAT-style dashboard (`wasmnode agent --protocol goliat`).
    pub goliat: GoliatSection,
    /// TLS for everything the node fetches.
    pub tls: TlsSection,
}

/// TLS for everything the node fetches (control planes, callbacks, model
/// servers, downloads): the platform's roots, plus these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of further CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

/// Attached to a GOLIAT-style dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoliatSection {
    /// This machine's id (default: its primary IP address, else its host name).
    pub machine_id: String,
    /// Heartbeat interval, seconds.
    pub heartbeat_seconds: u64,
    /// Wait between polls while idle, seconds.
    pub poll_seconds: u64,
    /// The job each assignment runs (the config is mounted at `/config`).
    pub job: GoliatJob,
}

/// The job a GOLIAT assignment runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoliatJob {
    /// Task type recorded for the job.
    pub task_type: String,
    /// `wasm` or `image`.
    pub mode: String,
    /// WASI component (`wasm`).
    pub component: Option<String>,
    /// Arguments of the component.
    pub args: Vec<String>,
    /// Image (`image`).
    pub image: Option<String>,
    /// Command of the image.
    pub cmd: Vec<String>,
    /// Environment (`SPLIT_INDEX`, `CONFIG_PATH` and `MACHINE_ID` are added).
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub limits: wasmnode_runtime::LimitRequest,
}

impl Default for GoliatSection {
    fn default() -> Self {
        Self {
            machine_id: String::new(),
            heartbeat_seconds: 5,
            poll_seconds: 10,
            job: GoliatJob::default(),
        }
    }
}

impl Default for GoliatJob {
    fn default() -> Self {
        Self {
            task_type: "goliat".into(),
            mode: "wasm".into(),
            component: None,
            args: Vec::new(),
            image: None,
            cmd: Vec::new(),
            env: BTreeMap::new(),
            limits: wasmnode_runtime::LimitRequest::default(),
        }
    }
}

/// The Vera-style task API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VeraSection {
    /// URL prefixes callbacks may go to (`*` for any); empty refuses callbacks.
    pub callback_allowlist: Vec<String>,
    /// Delivery attempts per callback (the first and the retries).
    pub callback_attempts: u32,
    /// Wait before the first retry, doubling after each, milliseconds.
    pub callback_backoff_ms: u64,
    /// Capabilities advertised in `/health` (default: derived from the node).
    pub capabilities: Vec<String>,
    /// How `sandboxed_execution` runs each language.
    pub languages: BTreeMap<String, crate::vera::LanguageRuntime>,
    /// Send callbacks to hosts beyond loopback over plain `http://`.
    pub allow_plain_http: bool,
}

impl Default for VeraSection {
    fn default() -> Self {
        Self {
            callback_allowlist: Vec::new(),
            callback_attempts: 4,
            callback_backoff_ms: 1000,
            capabilities: Vec::new(),
            languages: BTreeMap::new(),
            allow_plain_http: false,
        }
    }
}

/// LLM, embedding and model servers, and the model cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSection {
    /// Backend of `llm_inference` tasks that name none.
    pub default_backend: String,
    /// Backend of `embedding` tasks that name none (`local` needs no server).
    pub embedding_backend: String,
    /// Embedding model of tasks that name none.
    pub embedding_model: Option<String>,
    /// Embedding dimension of tasks that name none.
    pub embedding_dimension: usize,
    /// Retries of connection failures (never of a request that reached the server).
    pub connect_retries: u32,
    /// Models that need a GPU-backed backend (exact names or prefixes ending in `*`).
    pub gpu_models: Vec<String>,
    /// Where `model_download` puts files (default `<data_dir>/models`).
    pub model_cache_dir: Option<PathBuf>,
    /// Hugging Face endpoint (set a mirror here).
    pub hf_endpoint: String,
    /// Hugging Face token (prefer `HF_TOKEN`).
    pub hf_token: String,
    /// Remote retrieval service for `retrieval` tasks with backend `remote_api`.
    pub retrieval_base_url: Option<String>,
    /// Bearer key of the retrieval service.
    pub retrieval_api_key: String,
    /// Backends by name (`ollama`, `vllm`, `llama.cpp`, `remote_api`, or your own).
    pub backends: BTreeMap<String, BackendSection>,
    /// Largest file `model_download` fetches, bytes.
    pub max_download_bytes: u64,
    /// Digests pinned for hub files, `ORG/REPO/FILE` → `sha256:HEX` (or
    /// `blake3:HEX`); used instead of the digest the hub publishes.
    pub model_digests: BTreeMap<String, String>,
    /// URLs `model_download` may fetch with `source: url`, by scheme, host,
    /// port and path prefix (default: the hub and the configured backends).
    pub download_allowlist: Vec<String>,
}

/// One model server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSection {
    /// Base URL.
    pub url: String,
    /// `ollama` or `openai`; by default `ollama` for the backend named so,
    /// `openai` (OpenAI-compatible) for every other name.
    pub protocol: Option<String>,
    /// Bearer key (remote APIs).
    pub api_key: String,
    /// Whether it runs models on a GPU.
    pub gpu: bool,
}

impl Default for LlmSection {
    fn default() -> Self {
        let d = LlmSettings::default();
        Self {
            default_backend: d.default_backend,
            embedding_backend: d.embedding_backend,
            embedding_model: None,
            embedding_dimension: d.embedding_dimension,
            connect_retries: d.connect_retries,
            gpu_models: Vec::new(),
            model_cache_dir: None,
            hf_endpoint: d.hf_endpoint,
            hf_token: String::new(),
            retrieval_base_url: None,
            retrieval_api_key: String::new(),
            backends: BTreeMap::new(),
            max_download_bytes: d.max_download_bytes,
            model_digests: BTreeMap::new(),
            download_allowlist: Vec::new(),
        }
    }
}

/// Attached mode (`wasmnode agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// The control plane's base URL.
    pub url: Option<String>,
    /// Token sent as `X-SPLAI-Token` (prefer `SPLAI_API_TOKEN`).
    pub token: String,
    /// Tasks in flight at once (default: `scheduler.max_concurrent_jobs`).
    pub max_parallel_tasks: Option<usize>,
    /// Wait between empty polls, milliseconds.
    pub poll_millis: u64,
    /// Longest wait between retries when the control plane is down, seconds.
    pub backoff_max_seconds: u64,
    /// Where the node is (sent at registration).
    pub locality: Option<String>,
    /// How often the node checks whether what it registered with (models,
    /// reachable backends, tools) changed, seconds; it registers again when
    /// it did.
    pub refresh_seconds: u64,
    /// Largest answer read from the control plane, bytes.
    pub max_answer_bytes: u64,
    /// PEM certificate (chain) the node presents to the control plane.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Talk to a control plane beyond loopback over plain `http://` (its
    /// token and every report travel in clear).
    pub allow_plain_http: bool,
    /// The control plane's lease term in seconds, when its leases run a
    /// fixed term from the assignment (heartbeats do not extend them): an
    /// assignment not started within it is not started at all.
    pub lease_seconds: Option<f64>,
}

impl Default for ControlPlaneSection {
    fn default() -> Self {
        Self {
            url: None,
            token: String::new(),
            max_parallel_tasks: None,
            poll_millis: 1500,
            backoff_max_seconds: 30,
            locality: None,
            refresh_seconds: 30,
            max_answer_bytes: 16 << 20,
            client_cert: None,
            client_key: None,
            allow_plain_http: false,
            lease_seconds: None,
        }
    }
}

impl ControlPlaneSection {
    /// The token, if one is configured.
    pub fn token(&self) -> Option<String> {
        (!self.token.is_empty()).then(|| self.token.clone())
    }
}

/// Identity and directories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (default: the host name).
    pub worker_id: String,
    /// Where state lives: job store, compiled-code cache, workspaces.
    pub data_dir: PathBuf,
    /// Where task outputs live (default: `<data_dir>/artifacts`).
    pub artifact_root: Option<PathBuf>,
    /// Directory of plugin tool components (`*.wasm`), if any.
    pub plugin_dir: Option<PathBuf>,
    /// Labels advertised in `/info` and registration.
    pub labels: Vec<String>,
    /// New work is refused while the disk holding `data_dir` has less than
    /// this much free, MiB (0: no floor).
    pub min_free_disk_mb: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            data_dir: default_data_dir(),
            artifact_root: None,
            plugin_dir: None,
            labels: Vec::new(),
            min_free_disk_mb: 256,
        }
    }
}

impl NodeConfig {
    /// The artifact root in effect.
    pub fn artifact_root(&self) -> PathBuf {
        self.artifact_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("artifacts"))
    }
}

/// The local HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// API key required in `X-API-Key` or `Authorization: Bearer`; empty disables auth.
    pub api_key: String,
    /// Serve on a non-loopback address without an API key (not recommended).
    pub allow_unauthenticated_remote: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any); empty disables CORS.
    pub cors_origins: Vec<String>,
    /// Event streams (`GET /jobs/{id}/events`) open at once at most; more get 429.
    pub max_event_streams: usize,
    /// Connections open at once at most (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive
    /// connection is closed after as long.
    pub header_timeout_seconds: u64,
    /// Further `Host` values (`name:port`) a keyless loopback API answers.
    pub allowed_hosts: Vec<String>,
    /// PEM certificate (chain) to serve the API over HTTPS with.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".parse().expect("valid default address"),
            api_key: String::new(),
            allow_unauthenticated_remote: false,
            max_body_bytes: 8 << 20,
            cors_origins: Vec::new(),
            max_event_streams: 256,
            max_connections: 1024,
            header_timeout_seconds: 10,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Queueing and concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Jobs running at once (default: number of CPU cores).
    pub max_concurrent_jobs: usize,
    /// Jobs waiting at most; more are refused with 429.
    pub queue_capacity: usize,
    /// Bytes of waiting jobs' requests at most; more are refused with 429.
    pub max_queued_bytes: u64,
    /// On the first SIGTERM/SIGINT, how long running jobs may finish.
    pub drain_timeout_seconds: u64,
    /// Finished jobs kept at most (oldest removed first).
    pub retention_max_jobs: usize,
    /// Finished jobs older than this are removed.
    pub retention_max_age_hours: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            queue_capacity: 10_000,
            max_queued_bytes: 1 << 30,
            drain_timeout_seconds: 30,
            retention_max_jobs: 100_000,
            retention_max_age_hours: 24 * 7,
        }
    }
}

/// Default and maximum task limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Default memory per task, MiB.
    pub default_memory_mb: u64,
    /// Largest memory a task may ask for, MiB.
    pub max_memory_mb: u64,
    /// Default wall-clock limit, seconds.
    pub default_runtime_seconds: f64,
    /// Largest wall-clock limit a task may ask for, seconds.
    pub max_runtime_seconds: f64,
    /// Default cap on stdout, stderr and output, each, bytes.
    pub default_output_bytes: u64,
    /// Largest output cap a task may ask for, bytes.
    pub max_output_bytes: u64,
    /// Default CPU quota (containers), cores.
    pub default_cpus: f64,
    /// Largest CPU quota, cores.
    pub max_cpus: f64,
    /// Default process limit (containers).
    pub default_pids: u32,
    /// Largest process limit.
    pub max_pids: u32,
    /// Default cap on what a task writes into its scratch workspace, MiB.
    pub default_workspace_mb: u64,
    /// Largest workspace cap a task may ask for, MiB.
    pub max_workspace_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let (d, m) = (Limits::default(), Limits::default_maxima());
        Self {
            default_memory_mb: d.memory_bytes >> 20,
            max_memory_mb: m.memory_bytes >> 20,
            default_runtime_seconds: d.timeout.as_secs_f64(),
            max_runtime_seconds: m.timeout.as_secs_f64(),
            default_output_bytes: d.max_output_bytes,
            max_output_bytes: m.max_output_bytes,
            default_cpus: d.cpus,
            max_cpus: m.cpus,
            default_pids: d.pids,
            max_pids: m.pids,
            default_workspace_mb: d.workspace_bytes >> 20,
            max_workspace_mb: m.workspace_bytes >> 20,
        }
    }
}

impl LimitsConfig {
    /// The limit policy these settings describe.
    pub fn policy(&self) -> LimitPolicy {
        LimitPolicy {
            defaults: Limits {
                memory_bytes: self.default_memory_mb << 20,
                timeout: Duration::from_secs_f64(self.default_runtime_seconds),
                fuel: None,
                max_output_bytes: self.default_output_bytes,
                cpus: self.default_cpus,
                pids: self.default_pids,
                workspace_bytes: self.default_workspace_mb << 20,
            },
            maxima: Limits {
                memory_bytes: self.max_memory_mb << 20,
                timeout: Duration::from_secs_f64(self.max_runtime_seconds),
                fuel: Some(u64::MAX),
                max_output_bytes: self.max_output_bytes,
                cpus: self.max_cpus,
                pids: self.max_pids,
                workspace_bytes: self.max_workspace_mb << 20,
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let pairs = [
            (
                "memory_mb",
                self.default_memory_mb as f64,
                self.max_memory_mb as f64,
            ),
            (
                "runtime_seconds",
                self.default_runtime_seconds,
                self.max_runtime_seconds,
            ),
            (
                "output_bytes",
                self.default_output_bytes as f64,
                self.max_output_bytes as f64,
            ),
            ("cpus", self.default_cpus, self.max_cpus),
            (
                "pids",
                f64::from(self.default_pids),
                f64::from(self.max_pids),
            ),
            (
                "workspace_mb",
                self.default_workspace_mb as f64,
                self.max_workspace_mb as f64,
            ),
        ];
        for (name, default, max) in pairs {
            if !(default.is_finite() && default > 0.0 && default <= max) {
                return Err(ConfigError::Invalid(format!(
                    "limits.default_{name} ({default}) must be positive and at most limits.max_{name} ({max})"
                )));
            }
        }
        Ok(())
    }
}

/// What tasks may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Runtime modes submitters may ask for.
    pub allowed_modes: Vec<String>,
    /// Host directories jobs may mount (and everything below them).
    pub mount_roots: Vec<PathBuf>,
    /// Directories component files may be loaded from (the plugin
    /// directory is always allowed).
    pub component_roots: Vec<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            allowed_modes: vec!["wasm".into(), "image".into()],
            mount_roots: Vec::new(),
            component_roots: Vec::new(),
        }
    }
}

/// The WebAssembly engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmSection {
    /// `auto` (pooling where the address space allows it), `pooling` or `on-demand`.
    pub allocator: String,
    /// Compile in fuel metering so tasks can ask for a deterministic budget.
    pub fuel_metering: bool,
    /// Epoch tick in milliseconds (granularity of deadlines and cancellation).
    pub epoch_tick_ms: u64,
    /// Instances the pooling allocator holds at once.
    pub pool_instances: u32,
    /// Cache compiled code on disk under `<data_dir>/code-cache`.
    pub code_cache: bool,
}

impl Default for WasmSection {
    fn default() -> Self {
        let e = EngineSettings::default();
        Self {
            allocator: "auto".into(),
            fuel_metering: e.fuel_metering,
            epoch_tick_ms: e.epoch_tick.as_millis() as u64,
            pool_instances: e.pool_instances,
            code_cache: true,
        }
    }
}

/// Containers (Docker fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSection {
    /// `auto` (use the engine if it answers), `on` (refuse to start without
    /// it) or `off`.
    pub mode: String,
    /// Engine address; unset honours `DOCKER_HOST`, else the local socket.
    pub host: Option<String>,
    /// Images jobs may run: exact references or prefixes ending in `*`.
    pub allowed_images: Vec<String>,
    /// Whether jobs may request GPUs.
    pub allow_gpus: bool,
    /// User containers run as.
    pub user: String,
    /// Size of the writable `/tmp` in containers, MiB.
    pub tmpfs_mb: u64,
    /// Tools that run as images rather than components: name → image.
    pub tool_images: BTreeMap<String, String>,
    /// Image that runs SPLAI `command`/`script` tool tasks (needs `/bin/sh`).
    pub sandbox_image: Option<String>,
}

impl Default for DockerSection {
    fn default() -> Self {
        let d = DockerSettings::default();
        Self {
            mode: "auto".into(),
            host: None,
            allowed_images: Vec::new(),
            allow_gpus: false,
            user: d.user,
            tmpfs_mb: d.tmpfs_mb,
            tool_images: BTreeMap::new(),
            sandbox_image: None,
        }
    }
}

impl Config {
    /// Reads `path` (TOML) over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Applies environment overrides read through `get` (usually `std::env::var`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| get(n).map(|v| (n.to_string(), v)))
        };
        if let Some((_, v)) = first(&["WASMNODE_WORKER_ID", "SPLAI_WORKER_ID", "WORKER_ID"]) {
            self.node.worker_id = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_DATA_DIR"]) {
            self.node.data_dir = v.into();
        }
        if let Some((_, v)) = first(&["WASMNODE_ARTIFACT_ROOT", "SPLAI_ARTIFACT_ROOT"]) {
            self.node.artifact_root = Some(v.into());
        }
        if let Some((_, v)) = first(&["WASMNODE_PLUGIN_DIR"]) {
            self.node.plugin_dir = Some(v.into());
        }
        if let Some((_, v)) = first(&["WASMNODE_LABELS"]) {
            self.node.labels = split_list(&v);
        }
        if let Some((n, v)) = first(&["WASMNODE_LISTEN"]) {
            self.api.listen = parse(&n, &v)?;
        }
        if let Some((_, v)) = first(&["WASMNODE_API_KEY"]) {
            self.api.api_key = v;
        }
        if let Some((n, v)) = first(&["WASMNODE_MAX_CONCURRENT_JOBS", "MAX_CONCURRENT_TASKS"]) {
            self.scheduler.max_concurrent_jobs = parse(&n, &v)?;
        }
        if let Some((n, v)) = first(&["WASMNODE_QUEUE_CAPACITY"]) {
            self.scheduler.queue_capacity = parse(&n, &v)?;
        }
        if let Some((n, v)) = first(&["WASMNODE_DEFAULT_RUNTIME_SECONDS", "TASK_TIMEOUT_SECONDS"]) {
            self.limits.default_runtime_seconds = parse(&n, &v)?;
        }
        if let Some((_, v)) = first(&["WASMNODE_MOUNT_ROOTS"]) {
            self.policy.mount_roots = split_list(&v).into_iter().map(PathBuf::from).collect();
        }
        if let Some((_, v)) = first(&["WASMNODE_ALLOWED_MODES"]) {
            self.policy.allowed_modes = split_list(&v);
        }
        if let Some((_, v)) = first(&["WASMNODE_CONTROL_PLANE_URL", "SPLAI_CONTROL_PLANE_URL"]) {
            self.control_plane.url = Some(v);
        }
        if let Some((_, v)) = first(&["WASMNODE_CONTROL_PLANE_TOKEN", "SPLAI_API_TOKEN"]) {
            self.control_plane.token = v;
        }
        if let Some((n, v)) = first(&["WASMNODE_MAX_PARALLEL_TASKS", "SPLAI_MAX_PARALLEL_TASKS"]) {
            self.control_plane.max_parallel_tasks = Some(parse(&n, &v)?);
        }
        if let Some((n, v)) = first(&["WASMNODE_POLL_MILLIS", "SPLAI_POLL_MILLIS"]) {
            self.control_plane.poll_millis = parse(&n, &v)?;
        }
        for (backend, names) in [
            (
                "ollama",
                ["WASMNODE_OLLAMA_BASE_URL", "SPLAI_OLLAMA_BASE_URL"],
            ),
            ("vllm", ["WASMNODE_VLLM_BASE_URL", "SPLAI_VLLM_BASE_URL"]),
            (
                "llama.cpp",
                ["WASMNODE_LLAMACPP_BASE_URL", "SPLAI_LLAMACPP_BASE_URL"],
            ),
            (
                "remote_api",
                ["WASMNODE_REMOTE_API_BASE_URL", "SPLAI_REMOTE_API_BASE_URL"],
            ),
        ] {
            if let Some((_, v)) = first(&names) {
                self.llm.backends.entry(backend.into()).or_default().url = v;
            }
        }
        if let Some((_, v)) = first(&["WASMNODE_REMOTE_API_KEY", "SPLAI_REMOTE_API_KEY"]) {
            self.llm
                .backends
                .entry("remote_api".into())
                .or_default()
                .api_key = v;
        }
        if let Some((_, v)) = first(&["SPLAI_WORKER_BACKENDS"]) {
            let enabled: Vec<String> = split_list(&v)
                .iter()
                .map(|b| normalize_backend(b))
                .collect();
            self.llm.backends.retain(|name, _| enabled.contains(name));
        }
        if let Some((_, v)) = first(&["WASMNODE_EMBEDDING_BACKEND", "SPLAI_EMBEDDING_BACKEND"]) {
            self.llm.embedding_backend = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_EMBEDDING_MODEL", "SPLAI_EMBEDDING_MODEL"]) {
            self.llm.embedding_model = Some(v);
        }
        if let Some((n, v)) = first(&["WASMNODE_EMBEDDING_DIMENSION", "SPLAI_EMBEDDING_DIMENSION"])
        {
            self.llm.embedding_dimension = parse(&n, &v)?;
        }
        if let Some((n, v)) = first(&["WASMNODE_LLM_HTTP_RETRIES", "SPLAI_EMBEDDING_HTTP_RETRIES"])
        {
            self.llm.connect_retries = parse(&n, &v)?;
        }
        if let Some((_, v)) = first(&["WASMNODE_MODEL_CACHE_DIR", "SPLAI_MODEL_CACHE_DIR"]) {
            self.llm.model_cache_dir = Some(v.into());
        }
        if let Some((_, v)) = first(&["HF_TOKEN"]) {
            self.llm.hf_token = v;
        }
        if let Some((_, v)) = first(&["HF_ENDPOINT"]) {
            self.llm.hf_endpoint = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_RETRIEVAL_BASE_URL", "SPLAI_RETRIEVAL_BASE_URL"]) {
            self.llm.retrieval_base_url = Some(v);
        }
        if let Some((_, v)) = first(&["WASMNODE_RETRIEVAL_API_KEY", "SPLAI_RETRIEVAL_API_KEY"]) {
            self.llm.retrieval_api_key = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_CAPABILITIES", "WORKER_CAPABILITIES"]) {
            self.vera.capabilities = split_list(&v);
        }
        if let Some((_, v)) = first(&["WASMNODE_CALLBACK_ALLOWLIST"]) {
            self.vera.callback_allowlist = split_list(&v);
        }
        if let Some((_, v)) = first(&["WASMNODE_MACHINE_ID", "MACHINE_ID"]) {
            self.goliat.machine_id = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_DOCKER"]) {
            self.docker.mode = v;
        }
        if let Some((_, v)) = first(&["WASMNODE_DOCKER_HOST"]) {
            self.docker.host = Some(v);
        }
        if let Some((_, v)) = first(&["WASMNODE_ALLOWED_IMAGES"]) {
            self.docker.allowed_images = split_list(&v);
        }
        if let Some((_, v)) = first(&["WASMNODE_SANDBOX_IMAGE"]) {
            self.docker.sandbox_image = Some(v);
        }
        if let Some((_, v)) = first(&["WASMNODE_CA_FILE"]) {
            self.tls.ca_file = Some(v.into());
        }
        Ok(())
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.worker_id.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "node.worker_id must not be empty".into(),
            ));
        }
        if self.scheduler.max_concurrent_jobs == 0 {
            return Err(ConfigError::Invalid(
                "scheduler.max_concurrent_jobs must be at least 1".into(),
            ));
        }
        if self.scheduler.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "scheduler.queue_capacity must be at least 1".into(),
            ));
        }
        if !["auto", "pooling", "on-demand"].contains(&self.wasm.allocator.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "wasm.allocator `{}` must be auto, pooling or on-demand",
                self.wasm.allocator
            )));
        }
        for (name, backend) in &self.llm.backends {
            if let Some(protocol) = backend.protocol.as_deref()
                && protocol != "ollama"
                && protocol != "openai"
            {
                return Err(ConfigError::Invalid(format!(
                    "llm.backends.{name}.protocol `{protocol}` must be ollama or openai"
                )));
            }
        }
        for (file, digest) in &self.llm.model_digests {
            Digest::parse(digest)
                .map_err(|e| ConfigError::Invalid(format!("llm.model_digests.\"{file}\": {e}")))?;
        }
        for (name, entries) in [
            ("llm.download_allowlist", &self.llm.download_allowlist),
            ("vera.callback_allowlist", &self.vera.callback_allowlist),
        ] {
            wasmnode_runtime::urls::UrlAllowlist::new(entries, "")
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        if !["auto", "on", "off"].contains(&self.docker.mode.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "docker.mode `{}` must be auto, on or off",
                self.docker.mode
            )));
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "api.tls_cert and api.tls_key go together".into(),
            ));
        }
        if self.control_plane.client_cert.is_some() != self.control_plane.client_key.is_some() {
            return Err(ConfigError::Invalid(
                "control_plane.client_cert and control_plane.client_key go together".into(),
            ));
        }
        if self.api.max_connections == 0 || self.api.header_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "api.max_connections and api.header_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.vera.callback_attempts == 0 {
            return Err(ConfigError::Invalid(
                "vera.callback_attempts must be at least 1".into(),
            ));
        }
        if self
            .control_plane
            .lease_seconds
            .is_some_and(|s| !(s.is_finite() && s > 0.0))
        {
            return Err(ConfigError::Invalid(
                "control_plane.lease_seconds must be a positive number of seconds".into(),
            ));
        }
        if self.control_plane.max_parallel_tasks == Some(0) {
            return Err(ConfigError::Invalid(
                "control_plane.max_parallel_tasks must be at least 1".into(),
            ));
        }
        if self.wasm.epoch_tick_ms == 0 {
            return Err(ConfigError::Invalid(
                "wasm.epoch_tick_ms must be at least 1".into(),
            ));
        }
        for mode in &self.policy.allowed_modes {
            if mode != "wasm" && mode != "image" {
                return Err(ConfigError::Invalid(format!(
                    "policy.allowed_modes: unknown mode `{mode}`"
                )));
            }
        }
        self.limits.validate()
    }

    /// The WASI executor's settings.
    pub fn wasm_config(&self) -> WasmConfig {
        WasmConfig {
            engine: EngineSettings {
                allocator: match self.wasm.allocator.as_str() {
                    "pooling" => AllocatorChoice::Pooling,
                    "on-demand" => AllocatorChoice::OnDemand,
                    _ => AllocatorChoice::Auto,
                },
                max_memory_bytes: self.limits.max_memory_mb << 20,
                pool_instances: self.wasm.pool_instances,
                fuel_metering: self.wasm.fuel_metering,
                epoch_tick: Duration::from_millis(self.wasm.epoch_tick_ms),
                ..EngineSettings::default()
            },
            cache_dir: self
                .wasm
                .code_cache
                .then(|| self.node.data_dir.join("code-cache")),
        }
    }

    /// The task policy for jobs submitted to this node.
    pub fn policy(&self) -> Policy {
        let mut component_roots = self.policy.component_roots.clone();
        component_roots.extend(self.node.plugin_dir.clone());
        Policy {
            limits: self.limits.policy(),
            allowed_modes: self.policy.allowed_modes.clone(),
            mount_roots: Some(self.policy.mount_roots.clone()),
            component_roots: Some(component_roots),
            tool_images: self.docker.tool_images.clone(),
            sandbox_image: self.docker.sandbox_image.clone(),
        }
    }

    /// The model backends' settings.
    pub fn llm_settings(&self) -> LlmSettings {
        let backends = self
            .llm
            .backends
            .iter()
            .filter(|(_, b)| !b.url.is_empty())
            .map(|(name, b)| {
                let mut backend = Backend::new(name, &b.url);
                match b.protocol.as_deref() {
                    Some("ollama") => backend.protocol = Protocol::Ollama,
                    Some("openai") => backend.protocol = Protocol::OpenAi,
                    _ => {}
                }
                backend.api_key = (!b.api_key.is_empty()).then(|| b.api_key.clone());
                backend.gpu = b.gpu;
                backend
            })
            .collect();
        let secret = |s: &String| (!s.is_empty()).then(|| s.clone());
        LlmSettings {
            backends,
            default_backend: normalize_backend(&self.llm.default_backend),
            embedding_backend: normalize_backend(&self.llm.embedding_backend),
            embedding_model: self.llm.embedding_model.clone(),
            embedding_dimension: self.llm.embedding_dimension,
            connect_retries: self.llm.connect_retries,
            gpu_models: self.llm.gpu_models.clone(),
            model_cache_dir: self
                .llm
                .model_cache_dir
                .clone()
                .unwrap_or_else(|| self.node.data_dir.join("models")),
            hf_endpoint: self.llm.hf_endpoint.clone(),
            hf_token: secret(&self.llm.hf_token),
            retrieval_url: self.llm.retrieval_base_url.clone(),
            retrieval_api_key: secret(&self.llm.retrieval_api_key),
            max_download_bytes: self.llm.max_download_bytes,
            model_digests: self
                .llm
                .model_digests
                .iter()
                .filter_map(|(file, digest)| Some((file.clone(), Digest::parse(digest).ok()?)))
                .collect(),
            download_allowlist: self.llm.download_allowlist.clone(),
        }
    }

    /// The container settings; `any_image` allows every local image (for a
    /// local user running tasks by hand).
    pub fn docker_settings(&self, any_image: bool) -> DockerSettings {
        let mut allowed = self.docker.allowed_images.clone();
        allowed.extend(self.docker.tool_images.values().cloned());
        allowed.extend(self.docker.sandbox_image.clone());
        if any_image {
            allowed = vec!["*".into()];
        }
        DockerSettings {
            host: self.docker.host.clone(),
            allowed_images: ImageAllowlist::new(allowed),
            allow_gpus: self.docker.allow_gpus,
            user: self.docker.user.clone(),
            tmpfs_mb: self.docker.tmpfs_mb,
            node_id: self.node.worker_id.clone(),
            helper_dir: self.node.data_dir.join("bin"),
        }
    }

    /// The configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.api.api_key.is_empty() {
            shown.api.api_key = MASK.into();
        }
        if !shown.control_plane.token.is_empty() {
            shown.control_plane.token = MASK.into();
        }
        for secret in [&mut shown.llm.hf_token, &mut shown.llm.retrieval_api_key] {
            if !secret.is_empty() {
                *secret = MASK.into();
            }
        }
        for backend in shown.llm.backends.values_mut() {
            if !backend.api_key.is_empty() {
                backend.api_key = MASK.into();
            }
            backend.url = redact(&backend.url);
        }
        for url in [
            shown.control_plane.url.as_mut(),
            shown.llm.retrieval_base_url.as_mut(),
            Some(&mut shown.llm.hf_endpoint),
        ]
        .into_iter()
        .flatten()
        {
            *url = redact(url);
        }
        toml::to_string_pretty(&shown).expect("config serializes to TOML")
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        name: name.into(),
        value: value.into(),
        message: e.to_string(),
    })
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn default_worker_id() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wasmnode".into())
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wasmnode");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/wasmnode"),
        None => PathBuf::from("wasmnode-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[api]\nlisten = \"127.0.0.1:9100\"\n[scheduler]\nmax_concurrent_jobs = 3\n",
        )
        .unwrap();
        let mut config = Config::from_file(&path).unwrap();
        assert_eq!(config.api.listen.port(), 9100);
        assert_eq!(config.scheduler.max_concurrent_jobs, 3);
        assert_eq!(
            config.scheduler.queue_capacity,
            SchedulerConfig::default().queue_capacity
        );
        config
            .apply_env(env(&[
                ("WASMNODE_LISTEN", "0.0.0.0:9200"),
                ("SPLAI_WORKER_ID", "w7"),
                ("MAX_CONCURRENT_TASKS", "5"),
            ]))
            .unwrap();
        assert_eq!(config.api.listen.port(), 9200);
        assert_eq!(config.node.worker_id, "w7");
        assert_eq!(config.scheduler.max_concurrent_jobs, 5);
        config.validate().unwrap();
    }

    #[test]
    fn splai_backend_variables_configure_llm_backends() {
        let mut config = Config::default();
        config
            .apply_env(env(&[
                ("SPLAI_OLLAMA_BASE_URL", "http://o:11434"),
                ("SPLAI_LLAMACPP_BASE_URL", "http://l:8080"),
                ("SPLAI_VLLM_BASE_URL", "http://v:8000"),
                ("SPLAI_WORKER_BACKENDS", "ollama,llamacpp"),
                ("SPLAI_EMBEDDING_DIMENSION", "128"),
                ("SPLAI_MODEL_CACHE_DIR", "/models"),
            ]))
            .unwrap();
        let llm = config.llm_settings();
        let names: Vec<&str> = llm.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            ["llama.cpp", "ollama"],
            "SPLAI_WORKER_BACKENDS keeps only the listed ones"
        );
        assert_eq!(llm.embedding_dimension, 128);
        assert_eq!(llm.model_cache_dir, PathBuf::from("/models"));
    }

    #[test]
    fn wasmnode_names_win_over_aliases() {
        let mut config = Config::default();
        config
            .apply_env(env(&[
                ("WASMNODE_WORKER_ID", "a"),
                ("SPLAI_WORKER_ID", "b"),
            ]))
            .unwrap();
        assert_eq!(config.node.worker_id, "a");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let mut config = Config::default();
        let err = config
            .apply_env(env(&[("WASMNODE_LISTEN", "nine thousand")]))
            .unwrap_err();
        assert!(err.to_string().contains("WASMNODE_LISTEN"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[api]\nlisen = 1\n").unwrap();
        assert!(
            Config::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("lisen")
        );
        let mut config = Config::default();
        config.limits.default_memory_mb = config.limits.max_memory_mb + 1;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("default_memory_mb")
        );
        config = Config::default();
        config.wasm.allocator = "magic".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn printed_config_masks_secrets_and_parses_back() {
        let mut config = Config::default();
        config.api.api_key = "s3cret".into();
        config.control_plane.token = "t0ken".into();
        config.control_plane.url = Some("https://w:pa55@cp.example/".into());
        let text = config.to_masked_toml();
        assert!(!text.contains("s3cret") && !text.contains("t0ken") && !text.contains("pa55"));
        assert!(text.contains(MASK));
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.api.listen, config.api.listen);
    }
}
