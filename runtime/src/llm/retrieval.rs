//! Remote `retrieval`: the query and documents sent to the operator's
//! retrieval service (`SPLAI_RETRIEVAL_BASE_URL`).

use super::http;
use super::{LlmExecutor, input_error};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use guest_kit::Inputs;
use serde_json::{Value, json};

impl LlmExecutor {
    pub(super) async fn retrieve_remote(
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
