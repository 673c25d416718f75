//! `LlmExecutor`: what WebAssembly cannot do for models — `llm_inference`,
//! `embedding`, `model_download` and remote `retrieval` — through Ollama or
//! OpenAI-compatible servers (vLLM, llama.cpp, remote APIs), behind the same
//! executor interface.

pub mod backends;
mod digest;
mod download;
pub mod embedding;
mod generation;
mod http;
mod model_download;
mod ollama;
mod openai;
mod stream;

pub use backends::{Backend, Protocol};
pub use digest::Digest;
pub use download::inventory;

use crate::executor::{Executor, Support, TaskContext};
use crate::failure::{FailureKind, TaskFailure};
use crate::task::{Runtime, TaskMetrics, TaskOutcome, TaskSpec, millis};
use async_trait::async_trait;
use download::Locks;
use generation::Generation;
use guest_kit::{GuestError, Inputs};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Largest model file fetched unless configured otherwise (the largest
/// quantised open models are a few tens of GiB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 << 30;

/// Task types this executor serves.
pub const TASK_TYPES: &[&str] = &["llm_inference", "embedding", "model_download", "retrieval"];

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
            let models = match backend.protocol {
                Protocol::Ollama => ollama::tags(&self.client, backend, &ctx).await,
                Protocol::OpenAi => openai::models(&self.client, backend, &ctx).await,
            };
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

    fn needs_gpu(&self, model: &str, inputs: &Inputs) -> Result<bool, TaskFailure> {
        let listed = self
            .settings
            .gpu_models
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => p == model,
            });
        Ok(listed
            || inputs
                .flag(&["requires_gpu", "gpu"], false)
                .map_err(input_error)?)
    }

    async fn infer(&self, inputs: &Inputs, ctx: &TaskContext) -> Result<Value, TaskFailure> {
        let backend_name = inputs
            .text(&["backend"])
            .unwrap_or_else(|| self.settings.default_backend.clone());
        let backend = self.backend(&backend_name)?;
        let model = inputs.require_text(&["model"]).map_err(input_error)?;
        if self.needs_gpu(&model, inputs)? && !backend.gpu {
            return Err(TaskFailure::policy_denied(format!(
                "model `{model}` needs a GPU-backed backend, and {} is not one on this node",
                backend.describe()
            )));
        }
        let messages: Option<Vec<Value>> = inputs
            .json(&["messages_json", "messages"])
            .map_err(input_error)?;
        let prompt = inputs.text(&["prompt", "text"]);
        if messages.is_none() && prompt.is_none() {
            return Err(TaskFailure::invalid_input(
                "missing required input `prompt` (or `text`, or `messages`)",
            ));
        }
        let request = Generation {
            model: model.clone(),
            prompt,
            messages,
            max_tokens: optional_count(inputs, &["max_tokens", "num_predict"])?,
            temperature: optional_float(inputs, "temperature")?,
            seed: optional_count(inputs, &["seed"])?.map(|s| s as i64),
            stream: inputs.flag(&["stream"], true).map_err(input_error)?,
        };
        if inputs
            .flag(
                &["_install_model_if_missing", "install_model_if_missing"],
                false,
            )
            .map_err(input_error)?
        {
            self.install_if_missing(backend, &model, ctx).await?;
        }
        let started = Instant::now();
        let retries = self.settings.connect_retries;
        let generated = match backend.protocol {
            Protocol::Ollama => {
                ollama::generate(&self.client, backend, &request, retries, ctx).await?
            }
            Protocol::OpenAi => {
                openai::generate(&self.client, backend, &request, retries, ctx).await?
            }
        };
        Ok(generated.to_output(&request, &backend.name, started))
    }

    async fn install_if_missing(
        &self,
        backend: &Backend,
        model: &str,
        ctx: &TaskContext,
    ) -> Result<(), TaskFailure> {
        match backend.protocol {
            Protocol::Ollama => {
                let installed = ollama::tags(&self.client, backend, ctx).await?;
                let latest = format!("{model}:latest");
                if !installed.iter().any(|m| m == model || *m == latest) {
                    tracing::info!(%model, backend = %backend.describe(), "installing a missing model");
                    ollama::pull(&self.client, backend, model, ctx).await?;
                }
                Ok(())
            }
            Protocol::OpenAi => {
                let served = openai::models(&self.client, backend, ctx).await?;
                if served.iter().any(|m| m == model) {
                    Ok(())
                } else {
                    Err(TaskFailure::backend_unavailable(format!(
                        "{} does not serve `{model}` and cannot install models (serves: {})",
                        backend.describe(),
                        served.join(", ")
                    )))
                }
            }
        }
    }

    async fn embed(&self, inputs: &Inputs, ctx: &TaskContext) -> Result<Value, TaskFailure> {
        let texts: Vec<String> = match inputs
            .json::<Vec<String>>(&["texts_json", "texts"])
            .map_err(input_error)?
        {
            Some(texts) => texts,
            None => vec![
                inputs
                    .require_text(&["text", "prompt", "input"])
                    .map_err(input_error)?,
            ],
        };
        if texts.is_empty() {
            return Err(TaskFailure::invalid_input(
                "texts_json must hold at least one text",
            ));
        }
        let backend_name = backends::normalize(
            &inputs
                .text(&["embedding_backend", "backend"])
                .unwrap_or_else(|| self.settings.embedding_backend.clone()),
        );
        let asked_dimension =
            optional_count(inputs, &["embedding_dimension", "dimension"])?.map(|d| d as usize);
        let model = inputs
            .text(&["embedding_model", "model"])
            .or_else(|| self.settings.embedding_model.clone());
        let (vectors, model) = if backend_name == "local" {
            let dimension = asked_dimension.unwrap_or(self.settings.embedding_dimension);
            if dimension == 0 || dimension > embedding::MAX_DIMENSION {
                return Err(TaskFailure::invalid_input(format!(
                    "embedding dimension must be between 1 and {}",
                    embedding::MAX_DIMENSION
                )));
            }
            (
                texts
                    .iter()
                    .map(|t| embedding::local(t, dimension))
                    .collect(),
                "local-hash".to_string(),
            )
        } else {
            let backend = self.backend(&backend_name)?;
            let model = model.ok_or_else(|| {
                TaskFailure::invalid_input("missing required input `embedding_model` (or `model`)")
            })?;
            let retries = self.settings.connect_retries;
            let vectors = match backend.protocol {
                Protocol::Ollama => {
                    ollama::embed(&self.client, backend, &model, &texts, retries, ctx).await?
                }
                Protocol::OpenAi => {
                    openai::embed(&self.client, backend, &model, &texts, retries, ctx).await?
                }
            };
            (vectors, model)
        };
        let dimension = embedding::validate(&vectors, asked_dimension)?;
        Ok(json!({
            "backend": backend_name,
            "model": model,
            "dimension": dimension,
            "count": vectors.len(),
            "embedding": vectors[0],
            "embeddings": vectors,
        }))
    }

    async fn retrieve_remote(
        &self,
        inputs: &Inputs,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let base = self.settings.retrieval_url.clone().ok_or_else(|| {
            TaskFailure::backend_unavailable(
                "retrieval backend `remote_api` needs SPLAI_RETRIEVAL_BASE_URL on this node",
            )
        })?;
        let query = inputs
            .require_text(&["query", "text", "prompt"])
            .map_err(input_error)?;
        let documents: Value = inputs
            .json(&["documents_json", "documents"])
            .map_err(input_error)?
            .unwrap_or(Value::Array(Vec::new()));
        let filters: Value = inputs
            .json(&["filters_json", "filters"])
            .map_err(input_error)?
            .unwrap_or(json!({}));
        let top_k = inputs.count(&["top_k"], 5).map_err(input_error)?;
        let body =
            json!({"query": query, "documents": documents, "filters": filters, "top_k": top_k});
        let what = format!("retrieval service at {base}");
        let url = format!("{}/v1/retrieve", base.trim_end_matches('/'));
        let key = self.settings.retrieval_api_key.clone();
        let response = http::send(&what, self.settings.connect_retries, ctx, || {
            let request = self.client.post(&url).json(&body);
            match &key {
                Some(k) => request.bearer_auth(k),
                None => request,
            }
        })
        .await?;
        let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
        let documents = reply
            .get("documents")
            .filter(|d| d.is_array())
            .cloned()
            .ok_or_else(|| {
                TaskFailure::backend_unavailable(format!(
                    "{what} answered without a `documents` array"
                ))
            })?;
        Ok(json!({"query": query, "backend": "remote_api", "top_k": top_k, "documents": documents}))
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

fn optional_count(inputs: &Inputs, keys: &[&str]) -> Result<Option<u64>, TaskFailure> {
    if keys.iter().all(|k| inputs.raw(k).is_none()) {
        return Ok(None);
    }
    inputs
        .count(keys, 0)
        .map(|n| Some(n as u64))
        .map_err(input_error)
}

fn optional_float(inputs: &Inputs, key: &str) -> Result<Option<f64>, TaskFailure> {
    match inputs.raw(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| TaskFailure::invalid_input(format!("input `{key}` must be a number"))),
        Some(_) => Err(TaskFailure::invalid_input(format!(
            "input `{key}` must be a number"
        ))),
    }
}

/// `org/repo/path/to/file` → (`org/repo`, `path/to/file`).
#[async_trait]
impl Executor for LlmExecutor {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn can_run(&self, task: &TaskSpec) -> Support {
        if !matches!(task.runtime, Runtime::Auto) || !TASK_TYPES.contains(&task.task_type.as_str())
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
        Ok(TaskOutcome {
            output,
            metrics: TaskMetrics {
                wall_time_ms: millis(started.elapsed()),
                ..TaskMetrics::default()
            },
            executor: "llm",
            ..TaskOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn can_run_needs_the_backend_configured() {
        let executor = LlmExecutor::new(LlmSettings::default()).unwrap();
        let task = |t: &str, p: Value| TaskSpec::new("j", t, p);
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
