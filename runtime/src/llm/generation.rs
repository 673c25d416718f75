//! A generation request and its result, independent of the backend.

use crate::failure::{FailureKind, TaskFailure};
use serde_json::{Value, json};
use std::time::Instant;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Model name as the backend knows it.
    pub model: String,
    /// A plain prompt (completion), when there are no messages.
    pub prompt: Option<String>,
    /// Chat messages (`[{role, content}]`).
    pub messages: Option<Vec<Value>>,
    /// Most tokens to generate.
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Stream tokens as they come (and forward them as task events).
    pub stream: bool,
}

/// What a backend generated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    /// The text.
    pub text: String,
    /// Prompt tokens, as the backend counted them.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, as the backend counted them (or chunks streamed).
    pub completion_tokens: Option<u64>,
    /// Why generation stopped (`stop`, `length`, ...).
    pub finish_reason: Option<String>,
    /// Milliseconds until the first token arrived (streaming).
    pub first_token_ms: Option<f64>,
}

impl Generated {
    /// Notes the arrival of generated text; more than `limit` bytes in all
    /// fails the task with `OUTPUT_EXCEEDED`.
    pub fn push(&mut self, text: &str, started: Instant, limit: u64) -> Result<(), TaskFailure> {
        if self.first_token_ms.is_none() && !text.is_empty() {
            self.first_token_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        if (self.text.len() + text.len()) as u64 > limit {
            return Err(TaskFailure::new(
                FailureKind::OutputExceeded,
                format!("the model generated more than {limit} bytes of text"),
            ));
        }
        self.text.push_str(text);
        Ok(())
    }

    /// The task output.
    pub fn to_output(&self, request: &Generation, backend: &str, started: Instant) -> Value {
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let total_tokens = match (self.prompt_tokens, self.completion_tokens) {
            (Some(p), Some(c)) => Some(p + c),
            _ => None,
        };
        json!({
            "text": self.text,
            "model": request.model,
            "backend": backend,
            "mode": if request.messages.is_some() { "chat" } else { "completion" },
            "streamed": request.stream,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": total_tokens,
            },
            "timings": {
                "total_ms": (total_ms * 1000.0).round() / 1000.0,
                "first_token_ms": self.first_token_ms.map(|t| (t * 1000.0).round() / 1000.0),
                "tokens_per_second": self.completion_tokens.filter(|_| total_ms > 0.0).map(|c| c as f64 / (total_ms / 1000.0)),
            },
        })
    }
}
