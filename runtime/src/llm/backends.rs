//! Model backends this node can talk to, by SPLAI's normalised names.

use serde::{Deserialize, Serialize};

/// Wire protocol of a backend (`ollama`, `openai`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ollama's native API (`/api/generate`, `/api/chat`, `/api/embed`, ...).
    Ollama,
    /// The OpenAI-compatible API (`/v1/completions`, `/v1/chat/completions`, ...):
    /// vLLM, llama.cpp's server, remote APIs.
    OpenAi,
}

/// One configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Normalised name: `ollama`, `vllm`, `llama.cpp`, `remote_api`, or a custom one.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// Bearer key for remote APIs.
    pub api_key: Option<String>,
    /// Whether it runs models on a GPU.
    pub gpu: bool,
}

impl Backend {
    /// A backend called `name` at `base_url`; the protocol follows the name
    /// (`ollama` speaks Ollama's API, everything else the OpenAI one).
    pub fn new(name: &str, base_url: &str) -> Self {
        let name = normalize(name);
        let protocol = if name == "ollama" {
            Protocol::Ollama
        } else {
            Protocol::OpenAi
        };
        Self {
            name,
            protocol,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: None,
            gpu: false,
        }
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// How messages name this backend (its URL without credentials).
    pub fn describe(&self) -> String {
        format!("{} at {}", self.name, crate::urls::redact(&self.base_url))
    }

    /// Adds the bearer key, if any.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
}

/// SPLAI's normalised backend names: lower case, `llamacpp` → `llama.cpp`,
/// `remote-api` → `remote_api`.
pub fn normalize(name: &str) -> String {
    match name.trim().to_lowercase().as_str() {
        "llamacpp" | "llama_cpp" | "llama-cpp" => "llama.cpp".into(),
        "remote-api" | "remoteapi" => "remote_api".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_and_pick_the_protocol() {
        assert_eq!(normalize("LlamaCpp"), "llama.cpp");
        assert_eq!(normalize("remote-api"), "remote_api");
        assert_eq!(
            Backend::new("OLLAMA", "http://h:11434/").protocol,
            Protocol::Ollama
        );
        let b = Backend::new("vllm", "http://h:8000/");
        assert_eq!(
            (b.protocol, b.url("/v1/models")),
            (Protocol::OpenAi, "http://h:8000/v1/models".into())
        );
    }
}
