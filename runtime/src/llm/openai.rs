//! The OpenAI-compatible API (vLLM, llama.cpp's server, remote APIs):
//! `/v1/completions`, `/v1/chat/completions` (with SSE streaming),
//! `/v1/embeddings`, `/v1/models`.

use super::generation::{Generated, Generation};
use super::http;
use super::server::{Endpoint, ModelServer};
use super::stream::Lines;
use crate::executor::{TaskContext, TaskEvent};
use crate::failure::TaskFailure;
use serde_json::{Value, json};
use std::time::Instant;

fn read_usage(reply: &Value, generated: &mut Generated) {
    if let Some(usage) = reply.get("usage").filter(|u| u.is_object()) {
        generated.prompt_tokens = usage["prompt_tokens"].as_u64().or(generated.prompt_tokens);
        generated.completion_tokens = usage["completion_tokens"]
            .as_u64()
            .or(generated.completion_tokens);
    }
}

/// A JSON array of numbers as a vector.
pub fn vector(value: &Value, what: &str) -> Result<Vec<f32>, TaskFailure> {
    value
        .as_array()
        .ok_or_else(|| {
            TaskFailure::backend_unavailable(format!(
                "{what} returned an embedding that is not an array"
            ))
        })?
        .iter()
        .map(|x| {
            x.as_f64().map(|f| f as f32).ok_or_else(|| {
                TaskFailure::backend_unavailable(format!(
                    "{what} returned a non-numeric embedding value"
                ))
            })
        })
        .collect()
}

/// The OpenAI-compatible API as a [`ModelServer`].
pub struct OpenAi;

#[async_trait::async_trait]
impl ModelServer for OpenAi {
    async fn models(
        &self,
        at: &Endpoint<'_>,
        ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskFailure> {
        let (client, backend) = (at.client, at.backend);
        let what = backend.describe();
        let response = http::send(&what, 0, ctx, || {
            backend.authorize(client.get(backend.url("/v1/models")))
        })
        .await?;
        let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
        Ok(reply["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect())
    }

    async fn generate(
        &self,
        at: &Endpoint<'_>,
        request: &Generation,
        ctx: &TaskContext,
    ) -> Result<Generated, TaskFailure> {
        let (client, backend, retries) = (at.client, at.backend, at.retries);
        let chat = request.messages.is_some();
        let path = if chat {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let mut body = json!({"model": request.model, "stream": request.stream});
        match &request.messages {
            Some(messages) => body["messages"] = json!(messages),
            None => body["prompt"] = json!(request.prompt.clone().unwrap_or_default()),
        }
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(s) = request.seed {
            body["seed"] = json!(s);
        }
        if request.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let what = backend.describe();
        let started = Instant::now();
        let response = http::send(&what, retries, ctx, || {
            backend.authorize(client.post(backend.url(path)).json(&body))
        })
        .await?;
        let response = http::check(&what, response).await?;
        if !request.stream {
            let reply = http::json(&what, response, ctx).await?;
            let choice = &reply["choices"][0];
            let text = if chat {
                choice["message"]["content"].as_str()
            } else {
                choice["text"].as_str()
            };
            let mut generated = Generated {
                finish_reason: choice["finish_reason"].as_str().map(String::from),
                ..Generated::default()
            };
            generated.push(
                text.unwrap_or_default(),
                started,
                ctx.limits.max_output_bytes,
            )?;
            read_usage(&reply, &mut generated);
            return Ok(generated);
        }
        let mut generated = Generated::default();
        let mut chunks = 0u64;
        let mut lines = Lines::new(&what, response);
        while let Some(data) = lines.next_event(ctx).await? {
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if let Some(error) = event.get("error") {
                return Err(TaskFailure::backend_unavailable(format!(
                    "{what} failed while generating: {error}"
                )));
            }
            let choice = &event["choices"][0];
            let piece = if chat {
                choice["delta"]["content"].as_str()
            } else {
                choice["text"].as_str()
            };
            if let Some(piece) = piece.filter(|p| !p.is_empty()) {
                chunks += 1;
                generated.push(piece, started, ctx.limits.max_output_bytes)?;
                ctx.emit(TaskEvent::Token(piece.to_string()));
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                generated.finish_reason = Some(reason.into());
            }
            read_usage(&event, &mut generated);
        }
        generated.completion_tokens.get_or_insert(chunks);
        Ok(generated)
    }

    async fn embed(
        &self,
        at: &Endpoint<'_>,
        model: &str,
        texts: &[String],
        ctx: &TaskContext,
    ) -> Result<Vec<Vec<f32>>, TaskFailure> {
        let (client, backend, retries) = (at.client, at.backend, at.retries);
        let what = backend.describe();
        let body = json!({"model": model, "input": texts});
        let response = http::send(&what, retries, ctx, || {
            backend.authorize(client.post(backend.url("/v1/embeddings")).json(&body))
        })
        .await?;
        let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
        let mut data: Vec<Value> = reply["data"].as_array().cloned().unwrap_or_default();
        data.sort_by_key(|d| d["index"].as_u64().unwrap_or(0));
        if data.len() != texts.len() {
            return Err(TaskFailure::backend_unavailable(format!(
                "{what} returned {} embeddings for {} texts",
                data.len(),
                texts.len()
            )));
        }
        data.iter()
            .map(|d| vector(&d["embedding"], &what))
            .collect()
    }

    /// These servers cannot install models: one not served is refused.
    async fn ensure(
        &self,
        at: &Endpoint<'_>,
        model: &str,
        ctx: &TaskContext,
    ) -> Result<(), TaskFailure> {
        let served = self.models(at, ctx).await?;
        if served.iter().any(|m| m == model) {
            return Ok(());
        }
        Err(TaskFailure::backend_unavailable(format!(
            "{} does not serve `{model}` and cannot install models (serves: {})",
            at.backend.describe(),
            served.join(", ")
        )))
    }
}
