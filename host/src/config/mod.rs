//! The node's configuration. Precedence: command-line flags > environment
//! (`WASMNODE_*`, with SPLAI_* and other worker conventions as aliases,
//! see `env`) > TOML file > built-in defaults. `wasmnode config` prints the
//! result with secrets masked. Each section belongs to the code that uses
//! it (`api::settings`, `scheduler::settings`, `store::settings`,
//! `agent::settings`, `vera::settings`); the sandbox's, the uploads' and the model servers'
//! sections are in `runtime`, `blobs`, `llm` and `retrieval`, with the runtime settings
//! made from them.

mod blobs;
pub mod env;
pub mod error;
mod languages;
mod llm;
mod profile;
mod retrieval;
mod runtime;

pub use crate::agent::settings::{ControlPlaneSection, GoliatSection};
pub use crate::api::settings::ApiSection;
pub use crate::scheduler::settings::SchedulerSection;
pub use crate::store::settings::StoreSection;
pub use blobs::BlobsSection;
pub use error::ConfigError;
pub use languages::LanguagesSection;
pub use llm::LlmSection;
pub use profile::Profile;
pub use retrieval::RetrievalSection;
pub use runtime::{DockerMode, DockerSection, LimitsSection, PolicySection, WasmSection};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wasmnode_runtime::llm::backends::normalize as normalize_backend;
use wasmnode_runtime::urls::redact;

/// Shown instead of a secret.
pub const MASK: &str = "********";

/// Everything configurable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity and directories.
    pub node: NodeSection,
    /// The local HTTP API.
    pub api: ApiSection,
    /// Queueing and concurrency.
    pub scheduler: SchedulerSection,
    /// Default and maximum task limits.
    pub limits: LimitsSection,
    /// What tasks may use.
    pub policy: PolicySection,
    /// The WebAssembly engine.
    pub wasm: WasmSection,
    /// Containers (Docker fallback).
    pub docker: DockerSection,
    /// Attached mode (`wasmnode agent`).
    pub control_plane: ControlPlaneSection,
    /// LLM, embedding and model servers, and the model cache.
    pub llm: LlmSection,
    /// The Vera-style task API (`/execute`, `/task/{id}/...`).
    pub vera: crate::vera::settings::VeraSection,
    /// Attached to a GOLIAT-style dashboard (`wasmnode agent --protocol goliat`).
    pub goliat: GoliatSection,
    /// TLS for everything the node fetches.
    pub tls: TlsSection,
    /// The operator's settings of each tool, by name (`[tools.NAME]`).
    pub tools: std::collections::BTreeMap<String, wasmnode_runtime::ToolSettings>,
    /// What MCP clients get (`wasmnode mcp`, `/mcp`).
    pub mcp: crate::mcp::settings::McpSection,
    /// The operator's secrets, which jobs name (`{"operator": KEY}`).
    pub secrets: crate::secrets::SecretsSection,
    /// Bounds on uploads (`PUT /blobs`).
    pub blobs: BlobsSection,
    /// Interpreters for programs given as source.
    pub languages: LanguagesSection,
    /// The built-in retrieval task's index cache.
    pub retrieval: RetrievalSection,
    /// The job store.
    pub store: StoreSection,
    /// Signed receipts of the jobs that run.
    pub receipts: crate::receipts::settings::ReceiptsSection,
}

/// TLS for everything the node fetches (control planes, callbacks, model
/// servers, downloads): the platform's roots, plus these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of further CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

/// Identity and directories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// The defaults in force: `standard` or `edge` (a small board).
    pub profile: Profile,
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
    /// Where the kernel's sysfs is mounted (read for temperature sensors).
    pub sysfs_root: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            profile: Profile::Standard,
            worker_id: default_worker_id(),
            data_dir: default_data_dir(),
            artifact_root: None,
            plugin_dir: None,
            labels: Vec::new(),
            min_free_disk_mb: 256,
            sysfs_root: PathBuf::from("/sys"),
        }
    }
}

impl NodeSection {
    /// The artifact root in effect.
    pub fn artifact_root(&self) -> PathBuf {
        self.artifact_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("artifacts"))
    }
}

/// A command-line flag's setting: the config key (a path of table names)
/// and its value.
pub type Flag = (&'static [&'static str], toml::Value);

impl Config {
    /// Reads the configuration: built-in defaults < `file` (TOML) < the
    /// environment (read through `env`, see [`env`]) < `flags`; then checks
    /// it once.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &[Flag],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                let parse_error = |e: toml::de::Error| ConfigError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                };
                // Read alone first, so a mistake in the file is shown with its line.
                toml::from_str::<Config>(&text).map_err(parse_error)?;
                toml::from_str(&text).map_err(parse_error)?
            }
            None => toml::Table::new(),
        };
        env::overlay(&mut table, &env)?;
        for (key, value) in flags {
            env::set(&mut table, key, value.clone());
        }
        Profile::of(&table)
            .map_err(ConfigError::Invalid)?
            .apply(&mut table);
        let mut config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.map_or_else(|| "(environment and flags)".into(), Path::to_path_buf),
                    message: e.to_string(),
                })?;
        if let Some(list) = env(env::WORKER_BACKENDS) {
            let enabled: Vec<String> = env::split_list(&list)
                .iter()
                .map(|b| normalize_backend(b))
                .collect();
            config.llm.backends.retain(|name, _| enabled.contains(name));
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations, section by section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.worker_id.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "node.worker_id must not be empty".into(),
            ));
        }
        self.api.validate()?;
        self.scheduler.validate()?;
        self.control_plane.validate()?;
        self.llm.validate()?;
        self.vera.validate()?;
        self.wasm.validate()?;
        self.mcp.validate().map_err(ConfigError::Invalid)?;
        self.blobs.validate()?;
        wasmnode_runtime::tools::grants(&self.tools).map_err(ConfigError::Invalid)?;
        if self.policy.require_signed_tools && self.policy.trusted_keys.is_empty() {
            return Err(ConfigError::Invalid(
                "policy.require_signed_tools needs policy.trusted_keys (public key PEM files; `wasmnode tool keygen` makes a pair)".into(),
            ));
        }
        self.limits.validate()
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
        for value in shown.secrets.values_mut() {
            *value = MASK.into();
        }
        for login in shown.docker.registries.values_mut() {
            login.password = MASK.into();
        }
        for tool in shown.tools.values_mut() {
            for value in tool.config.values_mut() {
                *value = MASK.into();
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
        let config = Config::load(Some(&path), env(&[]), &[]).unwrap();
        assert_eq!(config.api.listen.port(), 9100);
        assert_eq!(config.scheduler.max_concurrent_jobs, 3);
        assert_eq!(
            config.scheduler.queue_capacity,
            SchedulerSection::default().queue_capacity
        );
        let variables = env(&[
            ("WASMNODE_LISTEN", "0.0.0.0:9200"),
            ("SPLAI_WORKER_ID", "w7"),
            ("MAX_CONCURRENT_TASKS", "5"),
        ]);
        let config = Config::load(Some(&path), &variables, &[]).unwrap();
        assert_eq!(config.api.listen.port(), 9200);
        assert_eq!(config.node.worker_id, "w7");
        assert_eq!(config.scheduler.max_concurrent_jobs, 5);
        let flags: Vec<Flag> = vec![(&["scheduler", "max_concurrent_jobs"], 7.into())];
        let config = Config::load(Some(&path), &variables, &flags).unwrap();
        assert_eq!(config.scheduler.max_concurrent_jobs, 7, "flags win");
        assert_eq!(config.api.listen.port(), 9200);
    }

    #[test]
    fn splai_backend_variables_configure_llm_backends() {
        let variables = env(&[
            ("SPLAI_OLLAMA_BASE_URL", "http://o:11434"),
            ("SPLAI_LLAMACPP_BASE_URL", "http://l:8080"),
            ("SPLAI_VLLM_BASE_URL", "http://v:8000"),
            ("SPLAI_WORKER_BACKENDS", "ollama,llamacpp"),
            ("SPLAI_EMBEDDING_DIMENSION", "128"),
            ("SPLAI_MODEL_CACHE_DIR", "/models"),
        ]);
        let config = Config::load(None, variables, &[]).unwrap();
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
        let variables = env(&[("WASMNODE_WORKER_ID", "a"), ("SPLAI_WORKER_ID", "b")]);
        let config = Config::load(None, variables, &[]).unwrap();
        assert_eq!(config.node.worker_id, "a");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err =
            Config::load(None, env(&[("WASMNODE_LISTEN", "nine thousand")]), &[]).unwrap_err();
        assert!(err.to_string().contains("WASMNODE_LISTEN"), "{err}");
        let err = Config::load(None, env(&[("WASMNODE_POLL_MILLIS", "soon")]), &[]).unwrap_err();
        assert!(err.to_string().contains("WASMNODE_POLL_MILLIS"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[api]\nlisen = 1\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("lisen") && err.to_string().contains("line 2"),
            "{err}"
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
        let err = Config::load(None, env(&[("WASMNODE_DOCKER", "maybe")]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("maybe") && err.to_string().contains("auto"),
            "names the value and what is expected: {err}"
        );
        std::fs::write(&path, "[wasm]\nallocator = \"magic\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[]), &[]).unwrap_err();
        assert!(err.to_string().contains("on-demand"), "{err}");
    }

    #[test]
    fn engines_default_to_one_per_cpu_within_the_slots_and_an_explicit_count_is_kept() {
        let mut config = Config::default();
        assert_eq!(config.wasm.engines, 0);
        config.scheduler.max_concurrent_jobs = 1;
        assert_eq!(
            config.wasm_config().engines,
            1,
            "no more engines than slots"
        );
        config.scheduler.max_concurrent_jobs = 64;
        assert_eq!(
            config.wasm_config().engines,
            wasmnode_runtime::wasm::default_engines()
        );
        let config = Config::load(None, env(&[("WASMNODE_WASM_ENGINES", "3")]), &[]).unwrap();
        assert_eq!(config.wasm_config().engines, 3);
        let mut config = Config::default();
        config.wasm.engines = 65;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("wasm.engines (65)"), "{err}");
    }

    #[test]
    fn printed_config_masks_secrets_and_parses_back() {
        let mut config = Config::default();
        config.api.api_key = "s3cret".into();
        config.control_plane.token = "t0ken".into();
        config.control_plane.url = Some("https://w:pa55@cp.example/".into());
        config.secrets.insert("db".into(), "db-passw0rd".into());
        let text = config.to_masked_toml();
        assert!(!text.contains("s3cret") && !text.contains("t0ken") && !text.contains("pa55"));
        assert!(
            !text.contains("db-passw0rd") && text.contains("[secrets]"),
            "{text}"
        );
        assert!(text.contains(MASK));
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.api.listen, config.api.listen);
    }
}
