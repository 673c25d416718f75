//! `[llm]`: model servers, embeddings and the model cache, as the operator
//! writes them, and the model executor's settings made from them.

use super::{Config, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use wasmnode_runtime::llm::backends::normalize as normalize_backend;
use wasmnode_runtime::llm::{Backend, Digest, LlmSettings, Protocol};
use wasmnode_runtime::urls::UrlAllowlist;

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
    pub protocol: Option<Protocol>,
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

impl LlmSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (file, digest) in &self.model_digests {
            Digest::parse(digest)
                .map_err(|e| ConfigError::Invalid(format!("llm.model_digests.\"{file}\": {e}")))?;
        }
        UrlAllowlist::new(&self.download_allowlist, "")
            .map_err(|e| ConfigError::Invalid(format!("llm.download_allowlist: {e}")))?;
        Ok(())
    }
}

impl Config {
    /// The model backends' settings.
    pub fn llm_settings(&self) -> LlmSettings {
        let backends = self
            .llm
            .backends
            .iter()
            .filter(|(_, b)| !b.url.is_empty())
            .map(|(name, b)| {
                let mut backend = Backend::new(name, &b.url);
                if let Some(protocol) = b.protocol {
                    backend.protocol = protocol;
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
}
