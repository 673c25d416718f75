//! The sandbox's sections as the operator writes them (`[limits]`,
//! `[policy]`, `[wasm]`, `[docker]`), and the runtime's settings made from
//! them.

use super::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use wasmnode_runtime::docker::{
    DockerSettings, ImageAllowlist, PullPolicy, PullSettings, RegistryLogin,
};
use wasmnode_runtime::limits::{LimitPolicy, Limits};
use wasmnode_runtime::wasm::{self, AllocatorChoice, EngineSettings, WasmConfig};
use wasmnode_runtime::{Policy, RuntimeMode};

/// Default and maximum task limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
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

impl Default for LimitsSection {
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

impl LimitsSection {
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

    /// Checks that every default is positive and within its maximum.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
pub struct PolicySection {
    /// Runtime modes tasks may use (`wasm`, `image`, `model`).
    pub allowed_modes: Vec<RuntimeMode>,
    /// Host directories jobs may mount (and everything below them).
    pub mount_roots: Vec<PathBuf>,
    /// Directories component files may be loaded from (the plugin
    /// directory is always allowed).
    pub component_roots: Vec<PathBuf>,
    /// Run a component file (a plugin, or a job's component) only when a
    /// key of `trusted_keys` signed exactly its bytes (`wasmnode tool sign`).
    pub require_signed_tools: bool,
    /// Public keys (PEM files) whose tool signatures this node accepts.
    pub trusted_keys: Vec<PathBuf>,
    /// Let a job run a component it uploaded (`runtime.component:
    /// "blob:HASH"`); with `require_signed_tools` it must still be signed.
    pub allow_uploaded_components: bool,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            allowed_modes: RuntimeMode::ALL.to_vec(),
            mount_roots: Vec::new(),
            component_roots: Vec::new(),
            require_signed_tools: false,
            trusted_keys: Vec::new(),
            allow_uploaded_components: false,
        }
    }
}

/// The most engines `wasm.engines` may ask for: each reserves its own pool.
const MAX_ENGINES: usize = 64;

/// The WebAssembly engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmSection {
    /// `auto` (pooling where the address space allows it), `pooling` or `on-demand`.
    pub allocator: AllocatorChoice,
    /// Compile in fuel metering so tasks can ask for a deterministic budget.
    pub fuel_metering: bool,
    /// Epoch tick in milliseconds (granularity of deadlines and cancellation).
    pub epoch_tick_ms: u64,
    /// Instances the pooling allocator holds at once, per engine.
    pub pool_instances: u32,
    /// Engines tasks are spread over by the CPU they start on, each with its
    /// own instance pool and its own copy of the code it runs; 0 makes one
    /// per CPU, at most one per slot and at most `MAX_DEFAULT_ENGINES`.
    pub engines: usize,
    /// Cache compiled code on disk under `<data_dir>/code-cache`.
    pub code_cache: bool,
    /// Keep that cache elsewhere (nodes sharing it share its key, so each
    /// loads what the others compiled).
    pub code_cache_dir: Option<PathBuf>,
    /// Use the built-in guests' code embedded in release binaries (compiled
    /// for any CPU of the target) instead of compiling them on first use;
    /// `false` compiles them for this CPU's features.
    pub precompiled_builtins: bool,
}

impl Default for WasmSection {
    fn default() -> Self {
        let e = EngineSettings::default();
        Self {
            allocator: e.allocator,
            fuel_metering: e.fuel_metering,
            epoch_tick_ms: e.epoch_tick.as_millis() as u64,
            pool_instances: e.pool_instances,
            engines: 0,
            code_cache: true,
            code_cache_dir: None,
            precompiled_builtins: true,
        }
    }
}

impl WasmSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epoch_tick_ms == 0 {
            return Err(ConfigError::Invalid(
                "wasm.epoch_tick_ms must be at least 1".into(),
            ));
        }
        if self.engines > MAX_ENGINES {
            return Err(ConfigError::Invalid(format!(
                "wasm.engines ({}) must be at most {MAX_ENGINES} (0 picks one per CPU)",
                self.engines
            )));
        }
        Ok(())
    }
}

/// Whether the node uses a Docker engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerMode {
    /// Use the engine if it answers.
    Auto,
    /// Refuse to start without it.
    On,
    /// Never use one.
    Off,
}

/// Containers (Docker fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSection {
    /// Whether the node uses a Docker engine.
    pub mode: DockerMode,
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
    /// When images jobs name are pulled: `never` (preloaded only, the
    /// default for air-gapped nodes), `if-missing` or `always`.
    pub pull: PullPolicy,
    /// A pull with no progress for this long fails the job.
    pub pull_stall_seconds: u64,
    /// Logins for pulls, by registry host (`[docker.registries."host:port"]`).
    pub registries: BTreeMap<String, RegistryLogin>,
}

impl Default for DockerSection {
    fn default() -> Self {
        let d = DockerSettings::default();
        Self {
            mode: DockerMode::Auto,
            host: None,
            allowed_images: Vec::new(),
            allow_gpus: false,
            user: d.user,
            tmpfs_mb: d.tmpfs_mb,
            tool_images: BTreeMap::new(),
            sandbox_image: None,
            pull: d.pull.policy,
            pull_stall_seconds: d.pull.stall.as_secs(),
            registries: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The WASI executor's settings.
    pub fn wasm_config(&self) -> WasmConfig {
        WasmConfig {
            engine: EngineSettings {
                allocator: self.wasm.allocator,
                max_memory_bytes: self.limits.max_memory_mb << 20,
                pool_instances: self.wasm.pool_instances,
                fuel_metering: self.wasm.fuel_metering,
                epoch_tick: Duration::from_millis(self.wasm.epoch_tick_ms),
                ..EngineSettings::default()
            },
            engines: match self.wasm.engines {
                0 => wasm::default_engines().min(self.scheduler.max_concurrent_jobs.max(1)),
                n => n,
            },
            cache_dir: self.wasm.code_cache.then(|| {
                self.wasm
                    .code_cache_dir
                    .clone()
                    .unwrap_or_else(|| self.node.data_dir.join("code-cache"))
            }),
            precompiled_builtins: self.wasm.precompiled_builtins,
            trust: None,
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
            sandbox_image: self.docker.sandbox_image.clone(),
            allow_uploaded_components: self.policy.allow_uploaded_components,
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
            pull: PullSettings {
                policy: self.docker.pull,
                logins: self.docker.registries.clone(),
                stall: Duration::from_secs(self.docker.pull_stall_seconds.max(1)),
            },
        }
    }
}
