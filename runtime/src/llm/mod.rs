//! `LlmExecutor`: what WebAssembly cannot do for models — `llm_inference`,
//! `embedding`, `model_download` and remote `retrieval` — through Ollama or
//! OpenAI-compatible servers (vLLM, llama.cpp, remote APIs), behind the same
//! executor interface.

pub mod backends;
pub(crate) mod digest;
mod download;
mod embed;
pub mod embedding;
mod generation;
mod http;
mod inference;
mod model_download;
mod ollama;
mod openai;
mod retrieval;
mod server;
mod stream;

pub use backends::{Backend, Protocol};
pub use digest::Digest;
pub use download::inventory;
pub use server::{Endpoint, ModelServer};

use crate::executor::{Executor, Support, TaskContext};
use crate::failure::{FailureKind, TaskFailure};
use crate::task::{Runtime, TaskMetrics, TaskOutcome, TaskSpec, millis};
use async_trait::async_trait;
use download::Locks;
use guest_kit::{GuestError, Inputs};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Largest model file fetched unless configured otherwise (the largest
/// quantised open models are a few tens of GiB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 << 30;

/// How the model backends are set up.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Configured backends.
    pub backends: Vec<Backend>,
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
    /// Where `model_download` puts files.
    pub model_cache_dir: PathBuf,
    /// Hugging Face endpoint (a mirror works too).
    pub hf_endpoint: String,
    /// Hugging Face token (`HF_TOKEN`).
    pub hf_token: Option<String>,
    /// Remote retrieval service (`{base}/v1/retrieve`).
    pub retrieval_url: Option<String>,
    /// Bearer key of the retrieval service.
    pub retrieval_api_key: Option<String>,
    /// Largest file `model_download` fetches, bytes.
    pub max_download_bytes: u64,
    /// Digests the operator pinned for hub files, by `ORG/REPO/FILE`.
    pub model_digests: std::collections::BTreeMap<String, Digest>,
    /// URLs `model_download` may fetch from with `source: url` (empty: the
    /// hub endpoint and the configured backends).
    pub download_allowlist: Vec<String>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            default_backend: "ollama".into(),
            embedding_backend: "local".into(),
            embedding_model: None,
            embedding_dimension: embedding::DEFAULT_DIMENSION,
            connect_retries: 2,
            gpu_models: Vec::new(),
            model_cache_dir: PathBuf::from("models"),
            hf_endpoint: "https://huggingface.co".into(),
            hf_token: None,
            retrieval_url: None,
            retrieval_api_key: None,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            model_digests: Default::default(),
            download_allowlist: Vec::new(),
        }
    }
}

/// A backend's answer to a health probe.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Probe {
    /// Backend name.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Whether it answered.
    pub available: bool,
    /// Models it serves (when it answered).
    pub models: Vec<String>,
    /// Whether it is GPU-backed.
    pub gpu: bool,
}

/// Runs model tasks against HTTP backends.
pub struct LlmExecutor {
    settings: LlmSettings,
    client: reqwest::Client,
    locks: Locks,
    downloads: std::sync::Arc<crate::urls::UrlAllowlist>,
}

fn input_error(e: GuestError) -> TaskFailure {
    match e {
        GuestError::Denied(m) => TaskFailure::policy_denied(m),
        GuestError::InvalidInput(m) | GuestError::NotFound(m) | GuestError::Failed(m) => {
            TaskFailure::invalid_input(m)
        }
    }
}

impl LlmExecutor {
    /// An executor over `settings`.
    pub fn new(settings: LlmSettings) -> Result<Self, TaskFailure> {
        let client = crate::tls::client()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TaskFailure::internal(format!("HTTP client: {e}")))?;
        let downloads = model_download::allowlist(&settings)
            .map_err(|e| TaskFailure::invalid_input(format!("llm.download_allowlist: {e}")))?;
        Ok(Self {
            settings,
            client,
            locks: Locks::default(),
            downloads: std::sync::Arc::new(downloads),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    fn backend(&self, name: &str) -> Result<&Backend, TaskFailure> {
        let name = backends::normalize(name);
        self.settings
            .backends
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .settings
                    .backends
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect();
                TaskFailure::backend_unavailable(format!(
                    "backend `{name}` is not configured on this node (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// Probes every backend (2 s each) for availability and models.
    pub async fn probe(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        for backend in &self.settings.backends {
            let ctx = probe_context();
            let models = backend
                .protocol
                .server()
                .models(&self.endpoint(backend), &ctx)
                .await;
            out.push(Probe {
                name: backend.name.clone(),
                url: crate::urls::redact(&backend.base_url),
                available: models.is_ok(),
                models: models.unwrap_or_default(),
                gpu: backend.gpu,
            });
        }
        out
    }

    /// How calls reach `backend`.
    fn endpoint<'a>(&'a self, backend: &'a Backend) -> Endpoint<'a> {
        Endpoint {
            client: &self.client,
            backend,
            retries: self.settings.connect_retries,
        }
    }
}

/// A context for a probe: 2 s, not cancellable.
fn probe_context() -> TaskContext {
    let limits = crate::limits::Limits {
        timeout: Duration::from_secs(2),
        ..crate::limits::Limits::default()
    };
    TaskContext::new(limits, crate::artifacts::ArtifactStore::detached())
}

/// `org/repo/path/to/file` → (`org/repo`, `path/to/file`).
#[async_trait]
impl Executor for LlmExecutor {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn can_run(&self, task: &TaskSpec) -> Support {
        if !matches!(task.runtime, Runtime::Model)
            || !crate::task_types::served_by_models(&task.task_type)
        {
            return Support::No(format!(
                "the model executor does not run `{}` tasks",
                task.task_type
            ));
        }
        let wants = |keys: &[&str], default: &str| {
            backends::normalize(keys.iter().find_map(|k| task.input(k)).unwrap_or(default))
        };
        let needed = match task.task_type.as_str() {
            "llm_inference" => Some(wants(&["backend"], &self.settings.default_backend)),
            "embedding" => Some(wants(
                &["embedding_backend", "backend"],
                &self.settings.embedding_backend,
            ))
            .filter(|b| b != "local"),
            _ => None,
        };
        match needed {
            Some(name) if self.backend(&name).is_err() => Support::No(format!(
                "backend `{name}` is not configured on this node (set its base URL, e.g. SPLAI_{}_BASE_URL)",
                name.to_uppercase().replace('.', "")
            )),
            _ => Support::Yes,
        }
    }

    async fn run(&self, task: TaskSpec, ctx: TaskContext) -> Result<TaskOutcome, TaskFailure> {
        let started = Instant::now();
        let inputs = match &task.payload {
            Value::Object(map) => Inputs::from_map(map.clone()),
            Value::Null => Inputs::default(),
            _ => {
                return Err(TaskFailure::invalid_input(
                    "the payload must be a JSON object of inputs",
                ));
            }
        };
        let output = match task.task_type.as_str() {
            "llm_inference" => self.infer(&inputs, &ctx).await?,
            "embedding" => self.embed(&inputs, &ctx).await?,
            "model_download" => self.download(&inputs, &ctx).await?,
            "retrieval" => self.retrieve_remote(&inputs, &ctx).await?,
            other => {
                return Err(TaskFailure::invalid_input(format!(
                    "the model executor does not run `{other}` tasks"
                )));
            }
        };
        let size = output.to_string().len() as u64;
        if size > ctx.limits.max_output_bytes {
            return Err(TaskFailure::new(
                FailureKind::OutputExceeded,
                format!(
                    "the result is {size} bytes, over the cap of {}",
                    ctx.limits.max_output_bytes
                ),
            ));
        }
        let ran = match (output["model"].as_str(), output["backend"].as_str()) {
            (Some(model), Some(backend)) => Some(format!("{model}@{backend}")),
            _ => None,
        };
        Ok(TaskOutcome {
            metrics: TaskMetrics {
                wall_time_ms: millis(started.elapsed()),
                ran,
                tokens: output["usage"]["total_tokens"].as_u64(),
                ..TaskMetrics::default()
            },
            output,
            executor: "llm",
            ..TaskOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn can_run_needs_the_backend_configured() {
        let executor = LlmExecutor::new(LlmSettings::default()).unwrap();
        let task = |t: &str, p: Value| TaskSpec {
            runtime: Runtime::Model,
            ..TaskSpec::new("j", t, p)
        };
        assert!(
            matches!(
                executor.can_run(&TaskSpec::new("j", "embedding", json!({}))),
                Support::No(_)
            ),
            "the router sends model tasks with the model runtime"
        );
        assert!(
            matches!(executor.can_run(&task("llm_inference", json!({"prompt": "x"}))), Support::No(m) if m.contains("SPLAI_OLLAMA_BASE_URL"))
        );
        assert_eq!(
            executor.can_run(&task("embedding", json!({"text": "x"}))),
            Support::Yes,
            "local embeddings need no server"
        );
        assert!(matches!(
            executor.can_run(&task("embedding", json!({"backend": "vllm"}))),
            Support::No(_)
        ));
        assert_eq!(
            executor.can_run(&task("model_download", json!({}))),
            Support::Yes
        );
        assert!(matches!(
            executor.can_run(&task("aggregation", json!({}))),
            Support::No(_)
        ));
    }
}
