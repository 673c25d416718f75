//! The Vera-style task API: `POST /execute`, `GET /task/{id}/status`,
//! `GET /task/{id}/result`, `DELETE /task/{id}`, on the same job store and
//! scheduler as Job Protocol v1, behind the API's key and checks; and
//! Vera's fields of `/health`.

use super::{
    ExecuteRequest, callback_allowed, callback_origin, callback_url, result_document, status_name,
};
use crate::api::{ApiError, AppState, FrontDoor, json_bytes, submit_error};
use crate::node::Node;
use crate::scheduler::{Source, SubmitError, Submitted};
use crate::store::{CallbackStatus, JobRecord, JobState, StoreError, now_ms, rfc3339};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wasmnode_runtime::task_types;

/// The Vera front door on the API's port.
pub struct Vera;

impl FrontDoor for Vera {
    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(execute))
            .routes(routes!(status))
            .routes(routes!(result))
            .routes(routes!(cancel))
    }

    fn health(&self, node: &Node) -> Map<String, Value> {
        let fields = json!({
            "worker_id": node.config.node.worker_id,
            "capabilities": capabilities(node),
            "active_tasks": node.load().running,
        });
        match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// What this worker can do: the operator's list, or one derived from the node.
fn capabilities(node: &Node) -> Vec<String> {
    if !node.config.vera.capabilities.is_empty() {
        return node.config.vera.capabilities.clone();
    }
    let mut out: Vec<String> = [
        "wasm",
        "toolchain_execution",
        "custom",
        "data_processing",
        "model_inference",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if node.has_containers() {
        out.push("image".into());
    }
    if !node.config.vera.languages.is_empty() {
        out.push("sandboxed_execution".into());
    }
    out.extend(task_types::names().map(String::from));
    out
}

/// Refusals in Vera's shape: `{"task_id", "status": "rejected", "error"}`.
fn rejected(
    task_id: Option<String>,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError::new(status, code, message).rejecting_task(task_id)
}

/// `POST /execute`.
#[utoipa::path(post, path = "/execute", tag = "vera", request_body = Object, responses((status = 200, description = "Accepted", body = Object), (status = 400, description = "Not a valid task"), (status = 401, description = "No API key, or the wrong one")))]
async fn execute(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| rejected(None, r.status(), "INVALID_BODY", r.body_text()))?;
    let request = ExecuteRequest::parse(&body)
        .map_err(|e| rejected(None, StatusCode::BAD_REQUEST, e.code, e.message))?;
    let task_id = request.task_id.clone();
    let refuse = |e: crate::job::JobError| {
        rejected(
            Some(task_id.clone()),
            ApiError::refusal_status(e.code),
            e.code,
            e.message,
        )
    };
    let job = request.to_job(&app.node.config.vera).map_err(refuse)?;
    let origin = match &request.callback_url {
        Some(url) => {
            callback_allowed(url, &app.node.config.vera).map_err(refuse)?;
            Some(callback_origin(url))
        }
        None => None,
    };
    let source = Source::accounted("vera", format!("vera:{task_id}"));
    match app.node.submit(job, origin, source).await {
        Ok(Submitted::Accepted | Submitted::InFlight | Submitted::Existing(_)) => Ok(Json(json!({
            "task_id": task_id,
            "status": "accepted",
            "estimated_completion": rfc3339(estimate(&app, None)),
            "worker_id": app.node.config.node.worker_id,
        }))),
        Err(e) => Err(match e {
            SubmitError::Store(e) if !matches!(e, StoreError::Unavailable(_)) => ApiError::store(e),
            e => submit_error(e, "DUPLICATE_TASK_ID").rejecting_task(Some(task_id)),
        }),
    }
}

/// The mean run time of the tasks so far, milliseconds (at least 1).
fn mean_run_ms(node: &Node) -> f64 {
    (node.metrics().totals.mean_run_seconds() * 1000.0).max(1.0)
}

/// When a task should be done, from the mean run time so far and the queue.
fn estimate(app: &AppState, record: Option<&JobRecord>) -> u64 {
    let node = &app.node;
    let mean_ms = mean_run_ms(node);
    match record {
        Some(r) if r.state.is_terminal() => r.finished_at_ms.unwrap_or_else(now_ms),
        Some(r) if r.state == JobState::Running => {
            r.started_at_ms.unwrap_or_else(now_ms) + mean_ms as u64
        }
        _ => {
            let load = node.load();
            let waves = load.queued as f64 / load.max_concurrent.max(1) as f64;
            now_ms() + ((waves + 1.0) * mean_ms) as u64
        }
    }
}

fn task(app: &AppState, task_id: &str) -> Result<JobRecord, ApiError> {
    app.node
        .job(task_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::task_not_found(task_id))
}

/// `GET /task/{id}/status`.
#[utoipa::path(get, path = "/task/{id}/status", tag = "vera", params(("id" = String, Path, description = "The task id")), responses((status = 200, description = "The task's status", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such task")))]
async fn status(
    State(app): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = task(&app, &task_id)?;
    let progress = match record.state {
        JobState::Queued => 0.0,
        JobState::Running => {
            let elapsed =
                now_ms().saturating_sub(record.started_at_ms.unwrap_or_else(now_ms)) as f64;
            (elapsed / mean_run_ms(&app.node)).min(0.95)
        }
        _ => 1.0,
    };
    Ok(Json(json!({
        "task_id": task_id,
        "status": status_name(record.state),
        "progress": progress,
        "submitted_at": rfc3339(record.submitted_at_ms),
        "started_at": record.started_at_ms.map(rfc3339),
        "estimated_completion": rfc3339(estimate(&app, Some(&record))),
        "error": record.result.as_ref().and_then(|r| r.error.clone()),
        "callback": record.callback.clone().or_else(|| {
            record
                .origin
                .as_ref()
                .and_then(callback_url)
                .map(CallbackStatus::pending)
        }),
    })))
}

/// `GET /task/{id}/result`.
#[utoipa::path(get, path = "/task/{id}/result", tag = "vera", params(("id" = String, Path, description = "The task id")), responses((status = 200, description = "The task's result document", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such task")))]
async fn result(
    State(app): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Response, ApiError> {
    let record = task(&app, &task_id)?;
    let document = result_document(&app.node, &record).map_err(ApiError::store)?;
    Ok(json_bytes(document))
}

/// `DELETE /task/{id}`.
#[utoipa::path(delete, path = "/task/{id}", tag = "vera", params(("id" = String, Path, description = "The task id")), responses((status = 200, description = "Cancelled, or cancellation requested", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such task")))]
async fn cancel(
    State(app): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.node.cancel(&task_id).await.map_err(ApiError::store)? {
        Some(c) => Ok(Json(
            json!({"task_id": task_id, "status": status_name(c.state), "message": c.note}),
        )),
        None => Err(ApiError::task_not_found(&task_id)),
    }
}
