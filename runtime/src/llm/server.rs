//! `ModelServer`: what the model executor asks of a model server, whatever
//! its wire protocol. Ollama's API and the OpenAI-compatible one each
//! implement it; a backend's protocol picks its implementation once.

use super::backends::{Backend, Protocol};
use super::generation::{Generated, Generation};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use async_trait::async_trait;

/// One configured server, as a call reaches it.
pub struct Endpoint<'a> {
    /// The HTTP client (TLS roots, timeouts).
    pub client: &'a reqwest::Client,
    /// The configured backend.
    pub backend: &'a Backend,
    /// Retries of connection failures (never of a request that reached it).
    pub retries: u32,
}

/// A model server's protocol.
#[async_trait]
pub trait ModelServer: Send + Sync {
    /// The models it serves now.
    async fn models(
        &self,
        at: &Endpoint<'_>,
        ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskFailure>;
    /// Generates text for `request`, streaming tokens as task events.
    async fn generate(
        &self,
        at: &Endpoint<'_>,
        request: &Generation,
        ctx: &TaskContext,
    ) -> Result<Generated, TaskFailure>;
    /// Embeds `texts` with `model`.
    async fn embed(
        &self,
        at: &Endpoint<'_>,
        model: &str,
        texts: &[String],
        ctx: &TaskContext,
    ) -> Result<Vec<Vec<f32>>, TaskFailure>;
    /// Makes sure it serves `model`, installing it where the server can.
    async fn ensure(
        &self,
        at: &Endpoint<'_>,
        model: &str,
        ctx: &TaskContext,
    ) -> Result<(), TaskFailure>;
}

impl Protocol {
    /// The implementation of this protocol.
    pub fn server(self) -> &'static dyn ModelServer {
        match self {
            Protocol::Ollama => &super::ollama::Ollama,
            Protocol::OpenAi => &super::openai::OpenAi,
        }
    }
}
