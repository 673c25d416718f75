//! `embedding`: vectors from the local hashing backend or a model server,
//! checked before they are returned.

use super::inference::optional_count;
use super::{LlmExecutor, input_error};
use super::{backends, embedding};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use guest_kit::Inputs;
use serde_json::{Value, json};

impl LlmExecutor {
    pub(super) async fn embed(
        &self,
        inputs: &Inputs,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
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
            let vectors = backend
                .protocol
                .server()
                .embed(&self.endpoint(backend), &model, &texts, ctx)
                .await?;
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
}
