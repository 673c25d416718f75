//! `llm_inference`: text generation on a configured model server, after
//! the GPU and model-installation checks.

use super::generation::Generation;
use super::{LlmExecutor, input_error};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use guest_kit::Inputs;
use serde_json::Value;
use std::time::Instant;

impl LlmExecutor {
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

    pub(super) async fn infer(
        &self,
        inputs: &Inputs,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
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
            backend
                .protocol
                .server()
                .ensure(&self.endpoint(backend), &model, ctx)
                .await?;
        }
        let started = Instant::now();
        let generated = backend
            .protocol
            .server()
            .generate(&self.endpoint(backend), &request, ctx)
            .await?;
        Ok(generated.to_output(&request, &backend.name, started))
    }
}

pub(super) fn optional_count(inputs: &Inputs, keys: &[&str]) -> Result<Option<u64>, TaskFailure> {
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
