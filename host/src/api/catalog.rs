//! What a client may ask this node to do: `GET /task-types` (each known
//! task type with the payload inputs it reads) and `GET /tools` (each tool
//! with its description and argument schema), for forms such as the web
//! console's Submit page.

use super::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use wasmnode_runtime::task_types::TASK_TYPES;

/// `GET /task-types`.
#[utoipa::path(get, path = "/task-types", tag = "node", responses((status = 200, description = "Each task type with the payload inputs it reads", body = Object), (status = 401, description = "No API key, or the wrong one")))]
pub async fn task_types() -> Json<Value> {
    let types: Vec<Value> = TASK_TYPES
        .iter()
        .map(|t| json!({"name": t.name, "inputs": t.inputs}))
        .collect();
    Json(json!({ "task_types": types }))
}

/// `GET /tools`.
#[utoipa::path(get, path = "/tools", tag = "node", responses((status = 200, description = "Each tool with its kind, description and argument schema", body = Object), (status = 401, description = "No API key, or the wrong one")))]
pub async fn tools(State(app): State<AppState>) -> Json<Value> {
    let described = app.node.describe_tools(|_| true).await;
    let tools: Vec<Value> = described
        .into_iter()
        .map(|(name, tool)| {
            let mut listed = tool.summary();
            listed["name"] = Value::String(name);
            listed
        })
        .collect();
    Json(json!({ "tools": tools }))
}
