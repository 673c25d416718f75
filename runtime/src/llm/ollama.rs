//! Ollama's native API: `/api/generate` and `/api/chat` (streamed NDJSON or
//! not), `/api/embed` (falling back to the older `/api/embeddings`),
//! `/api/tags` for inventory and `/api/pull` (streamed progress).

use super::backends::Backend;
use super::generation::{Generated, Generation};
use super::http;
use super::openai::vector;
use super::server::{Endpoint, ModelServer};
use super::stream::Lines;
use crate::executor::{TaskContext, TaskEvent};
use crate::failure::TaskFailure;
use serde_json::{Value, json};
use std::time::Instant;

fn finish(last: &Value, generated: &mut Generated) {
    generated.prompt_tokens = last["prompt_eval_count"].as_u64();
    generated.completion_tokens = last["eval_count"].as_u64();
    generated.finish_reason = last["done_reason"]
        .as_str()
        .map(String::from)
        .or(Some("stop".into()));
}

/// Ollama answers 404 both for a missing endpoint and for a missing model;
/// only a JSON body naming the model means the latter.
fn response_is_model_error(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"))
}

/// Pulls `model`, forwarding progress as task events.
pub async fn pull(
    client: &reqwest::Client,
    backend: &Backend,
    model: &str,
    ctx: &TaskContext,
) -> Result<(), TaskFailure> {
    let what = backend.describe();
    let body = json!({"model": model, "name": model, "stream": true});
    let response = http::send(&what, 0, ctx, || {
        client.post(backend.url("/api/pull")).json(&body)
    })
    .await?;
    let mut lines = Lines::new(&what, http::check(&what, response).await?);
    let mut last = String::new();
    while let Some(line) = lines.next(ctx).await? {
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(error) = event["error"].as_str() {
            return Err(TaskFailure::backend_unavailable(format!(
                "{what} could not pull {model}: {error}"
            )));
        }
        let status = event["status"].as_str().unwrap_or_default().to_string();
        if let (Some(done), total) = (event["completed"].as_u64(), event["total"].as_u64()) {
            ctx.emit(TaskEvent::Progress {
                what: format!("pull {model}: {status}"),
                done,
                total,
            });
        }
        last = status;
    }
    if last == "success" {
        Ok(())
    } else {
        Err(TaskFailure::backend_unavailable(format!(
            "{what} ended the pull of {model} without success (last status: {last:?})"
        )))
    }
}

/// Ollama's API as a [`ModelServer`].
pub struct Ollama;

#[async_trait::async_trait]
impl ModelServer for Ollama {
    async fn models(
        &self,
        at: &Endpoint<'_>,
        ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskFailure> {
        let (client, backend) = (at.client, at.backend);
        let what = backend.describe();
        let response = http::send(&what, 0, ctx, || client.get(backend.url("/api/tags"))).await?;
        let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
        Ok(reply["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(String::from))
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
        let mut options = json!({});
        if let Some(n) = request.max_tokens {
            options["num_predict"] = json!(n);
        }
        if let Some(t) = request.temperature {
            options["temperature"] = json!(t);
        }
        if let Some(s) = request.seed {
            options["seed"] = json!(s);
        }
        let mut body =
            json!({"model": request.model, "stream": request.stream, "options": options});
        let path = match &request.messages {
            Some(messages) => {
                body["messages"] = json!(messages);
                "/api/chat"
            }
            None => {
                body["prompt"] = json!(request.prompt.clone().unwrap_or_default());
                "/api/generate"
            }
        };
        let what = backend.describe();
        let started = Instant::now();
        let response = http::send(&what, retries, ctx, || {
            client.post(backend.url(path)).json(&body)
        })
        .await?;
        let response = http::check(&what, response).await?;
        let piece_of = |v: &Value| -> Option<String> {
            if chat {
                v["message"]["content"].as_str().map(String::from)
            } else {
                v["response"].as_str().map(String::from)
            }
        };
        let mut generated = Generated::default();
        if !request.stream {
            let reply = http::json(&what, response, ctx).await?;
            generated.push(
                &piece_of(&reply).unwrap_or_default(),
                started,
                ctx.limits.max_output_bytes,
            )?;
            finish(&reply, &mut generated);
            return Ok(generated);
        }
        let mut lines = Lines::new(&what, response);
        while let Some(line) = lines.next(ctx).await? {
            if line.trim().is_empty() {
                continue;
            }
            let event: Value = serde_json::from_str(&line).map_err(|e| {
                TaskFailure::backend_unavailable(format!(
                    "{what} streamed a line that is not JSON: {e}"
                ))
            })?;
            if let Some(error) = event["error"].as_str() {
                return Err(TaskFailure::backend_unavailable(format!(
                    "{what} failed while generating: {error}"
                )));
            }
            if let Some(piece) = piece_of(&event).filter(|p| !p.is_empty()) {
                generated.push(&piece, started, ctx.limits.max_output_bytes)?;
                ctx.emit(TaskEvent::Token(piece));
            }
            if event["done"] == Value::Bool(true) {
                finish(&event, &mut generated);
                break;
            }
        }
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
            client.post(backend.url("/api/embed")).json(&body)
        })
        .await?;
        if response.status() != reqwest::StatusCode::NOT_FOUND || response_is_model_error(&response)
        {
            let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
            let vectors = reply["embeddings"].as_array().cloned().unwrap_or_default();
            return vectors.iter().map(|v| vector(v, &what)).collect();
        }
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let body = json!({"model": model, "prompt": text});
            let response = http::send(&what, retries, ctx, || {
                client.post(backend.url("/api/embeddings")).json(&body)
            })
            .await?;
            let reply = http::json(&what, http::check(&what, response).await?, ctx).await?;
            out.push(vector(&reply["embedding"], &what)?);
        }
        Ok(out)
    }

    /// Pulls a model that is not installed.
    async fn ensure(
        &self,
        at: &Endpoint<'_>,
        model: &str,
        ctx: &TaskContext,
    ) -> Result<(), TaskFailure> {
        let installed = self.models(at, ctx).await?;
        let latest = format!("{model}:latest");
        if !installed.iter().any(|m| m == model || *m == latest) {
            tracing::info!(%model, backend = %at.backend.describe(), "installing a missing model");
            pull(at.client, at.backend, model, ctx).await?;
        }
        Ok(())
    }
}
