//! Job Protocol v1 endpoints: submit, get, cancel, list, result.

use super::AppState;
use super::error::ApiError;
use crate::job::JobRequest;
use crate::scheduler::{SubmitError, Submitted};
use crate::store::{JobFilter, JobRecord, JobState, Logs, rfc3339};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Most jobs one list page returns.
const MAX_PAGE: usize = 1000;

/// `POST /jobs`.
#[utoipa::path(post, path = "/jobs", tag = "jobs", params(SubmitQuery), request_body = JobRequest, responses((status = 200, description = "Accepted (or, with `wait`, the ended job's view with its `result`)", body = Object), (status = 400, description = "Not a valid job document"), (status = 401, description = "No API key, or the wrong one"), (status = 409, description = "The job id is taken by another job"), (status = 422, description = "Refused by policy"), (status = 503, description = "The queue is full")))]
pub async fn submit(
    State(app): State<AppState>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let wait = match query {
        Ok(Query(SubmitQuery { wait: None })) => None,
        Ok(Query(SubmitQuery { wait: Some(s) })) if s.is_finite() && s >= 0.0 => {
            Some(Duration::from_secs_f64(s.min(MAX_WAIT_SECONDS)))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "`wait` must be a number of seconds",
            )
            .rejecting(None));
        }
    };
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "BODY_TOO_LARGE"
        } else {
            "INVALID_BODY"
        };
        count_rejection(&app, code);
        ApiError::new(status, code, rejection.body_text()).rejecting(None)
    })?;
    let request = JobRequest::parse(&body).map_err(|e| {
        count_rejection(&app, e.code);
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["job_id"].as_str().map(String::from));
        ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message).rejecting(id)
    })?;
    let job_id = request.job_id.clone();
    // Listen before submitting, so that a job finishing at once is not missed.
    let finished = wait.map(|_| app.node.endings());
    match app.node.submit(request, None, "api").await {
        Ok(Submitted::Accepted) | Ok(Submitted::InFlight) => {
            let accepted = json!({"accepted": true, "job_id": job_id, "state": "queued"});
            match (wait, finished) {
                (Some(wait), Some(finished)) => Ok(Json(
                    wait_for(&app, &job_id, wait, finished, accepted).await,
                )),
                _ => Ok(Json(accepted)),
            }
        }
        Ok(Submitted::Existing(record)) => Ok(Json(
            json!({"accepted": true, "job_id": job_id, "state": record.state.as_str(), "duplicate": true}),
        )),
        Err(e) => {
            let error = submit_error(e, "DUPLICATE_JOB_ID").rejecting(Some(job_id));
            count_rejection(&app, &error.code);
            Err(error)
        }
    }
}

/// Longest `?wait=` honoured.
const MAX_WAIT_SECONDS: f64 = 300.0;

/// Query of `POST /jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Seconds (at most 300) to wait for the job to end before answering.
    wait: Option<f64>,
}

/// Waits until `job_id` is terminal (or `wait` passes) and answers with its
/// full view (and, when it finished, its output document as `result`), or
/// with `accepted` if it is still going.
async fn wait_for(
    app: &AppState,
    job_id: &str,
    wait: Duration,
    mut finished: tokio::sync::broadcast::Receiver<String>,
    accepted: Value,
) -> Value {
    if let Ok(Some(record)) =
        tokio::time::timeout(wait, app.node.ended(job_id, &mut finished)).await
    {
        let logs = app.node.logs(job_id).unwrap_or_default();
        let mut answer = view(&record, logs);
        answer["accepted"] = Value::Bool(true);
        if record.state == JobState::Finished {
            answer["result"] = app
                .node
                .output(job_id)
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null);
        }
        return answer;
    }
    match app.node.job(job_id) {
        Ok(Some(record)) => {
            let mut answer = accepted;
            answer["state"] = Value::String(record.state.as_str().into());
            answer
        }
        _ => accepted,
    }
}

fn count_rejection(app: &AppState, code: &str) {
    app.node.metrics().rejected(code);
}

/// The answer to a submission the scheduler refused; `duplicate_code` names
/// an id conflict in the caller's protocol.
pub fn submit_error(e: SubmitError, duplicate_code: &str) -> ApiError {
    let code = e.code();
    match e {
        SubmitError::Invalid(e) => ApiError::new(ApiError::refusal_status(code), code, e.message),
        SubmitError::Draining => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string()).retry_after(30)
        }
        SubmitError::QueueFull(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, e.to_string()).retry_after(1)
        }
        SubmitError::LowDisk { .. } => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, code, e.to_string()).retry_after(30)
        }
        SubmitError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, duplicate_code, e.to_string())
        }
        SubmitError::Rejected(failure) => {
            ApiError::new(ApiError::refusal_status(code), code, failure.message)
        }
        SubmitError::Store(e) => ApiError::store(e),
    }
}

fn job(app: &AppState, job_id: &str) -> Result<JobRecord, ApiError> {
    app.node
        .job(job_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::job_not_found(job_id))
}

/// `GET /jobs/{id}`.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "State, logs, exit code, error, timestamps, attempts, metrics", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job")))]
pub async fn get(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = job(&app, &job_id)?;
    let logs = app.node.logs(&job_id).map_err(ApiError::store)?;
    Ok(Json(view(&record, logs)))
}

/// `DELETE /jobs/{id}`.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "Cancelled, or cancellation requested", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job")))]
pub async fn cancel(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.node.cancel(&job_id).await.map_err(ApiError::store)? {
        Some(c) => Ok(Json(
            json!({"job_id": job_id, "state": c.state.as_str(), "note": c.note}),
        )),
        None => Err(ApiError::job_not_found(&job_id)),
    }
}

/// Query of `GET /jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state: queued, running, finished, failed, cancelled.
    state: Option<String>,
    /// Jobs per page (at most 1000).
    limit: Option<usize>,
    /// Where the page starts (`next_cursor` of the page before).
    cursor: Option<u64>,
    /// `asc` (oldest first, the default) or `desc`.
    order: Option<String>,
    /// Only jobs of this task type.
    #[serde(rename = "type")]
    task_type: Option<String>,
    /// Only jobs through this front door: api, vera, splai, goliat, mcp.
    via: Option<String>,
    /// The same filter as `via`, by another name.
    origin: Option<String>,
}

/// `GET /jobs?state=…&type=…&via=…&order=asc|desc&limit=…&cursor=…`.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery), responses((status = 200, description = "A page of jobs and `next_cursor`", body = Object), (status = 400, description = "A bad filter or page size"), (status = 401, description = "No API key, or the wrong one")))]
pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let bad =
        |code: &'static str, message: String| ApiError::new(StatusCode::BAD_REQUEST, code, message);
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            bad(
                "INVALID_STATE",
                format!("state `{s}` must be one of queued, running, finished, failed, cancelled"),
            )
        })?),
    };
    let newest_first = match q.order.as_deref() {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(bad(
                "INVALID_ORDER",
                format!("order `{other}` must be asc (oldest first) or desc (newest first)"),
            ));
        }
    };
    // A page larger than MAX_PAGE is cut there (`next_cursor` goes on).
    let limit = match q.limit {
        None => 100,
        Some(0) => {
            return Err(bad(
                "INVALID_LIMIT",
                format!("limit must be at least 1 (at most {MAX_PAGE} are listed a page)"),
            ));
        }
        Some(n) => n.min(MAX_PAGE),
    };
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = JobFilter {
        state,
        task_type: nonempty(q.task_type),
        via: nonempty(q.via).or(nonempty(q.origin)),
        newest_first,
    };
    let (records, next) = app
        .node
        .jobs(&filter, q.cursor, limit)
        .map_err(ApiError::store)?;
    let jobs: Vec<Value> = records.iter().map(summary).collect();
    Ok(Json(json!({"jobs": jobs, "next_cursor": next})))
}

/// `GET /jobs/{id}/result`: the output document of a finished job, as the
/// task produced it.
#[utoipa::path(get, path = "/jobs/{id}/result", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "The output document, as the task produced it", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job"), (status = 409, description = "Not finished, or failed")))]
pub async fn result(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let record = job(&app, &job_id)?;
    match (&record.state, &record.result) {
        (JobState::Finished, _) => {
            let output = app
                .node
                .output(&job_id)
                .map_err(ApiError::store)?
                .unwrap_or_else(|| b"null".to_vec());
            Ok(json_bytes(output))
        }
        (state, Some(result)) if state.is_terminal() => {
            let e = result
                .error
                .clone()
                .unwrap_or_else(|| crate::store::ErrorInfo {
                    code: crate::store::ErrorCode::Task(wasmnode_runtime::FailureKind::Internal),
                    message: String::new(),
                });
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "JOB_FAILED",
                format!("the job is {}: {}: {}", state.as_str(), e.code, e.message),
            ))
        }
        (state, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_FINISHED",
            format!("the job is {}; its result is not ready", state.as_str()),
        )),
    }
}

/// `GET /jobs/{id}/request`: the job document as the node accepted and
/// keeps it (secret values withheld).
#[utoipa::path(get, path = "/jobs/{id}/request", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "The job document as accepted, secret values withheld", body = JobRequest), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job")))]
pub async fn request(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    job(&app, &job_id)?;
    let request = app
        .node
        .request(&job_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::job_not_found(&job_id))?;
    Ok(Json(json!(request)))
}

/// `GET /jobs/{id}/receipt`: the node's signed receipt of the job's run
/// (a DSSE envelope holding an in-toto statement), as stored.
#[utoipa::path(get, path = "/jobs/{id}/receipt", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "A DSSE envelope holding an in-toto statement", content_type = "application/vnd.dsse.envelope.v1+json", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job, or it has no receipt (NO_RECEIPT)"), (status = 409, description = "The job has not ended")))]
pub async fn receipt(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let record = job(&app, &job_id)?;
    match app.node.receipt(&job_id).map_err(ApiError::store)? {
        Some(bytes) => Ok((
            [(
                header::CONTENT_TYPE,
                "application/vnd.dsse.envelope.v1+json",
            )],
            bytes,
        )
            .into_response()),
        None if !record.state.is_terminal() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "NOT_FINISHED",
            format!(
                "the job is {}; its receipt is signed when it ends",
                record.state.as_str()
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NO_RECEIPT",
            "the job has no receipt: it ended without running (cancelled or expired while queued), before this node signed receipts, or while it signed none (receipts.enabled = false)",
        )),
    }
}

/// A response whose body is the JSON document `bytes`, sent as is.
pub fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The full view of a job (`GET /jobs/{id}`).
pub fn view(record: &JobRecord, logs: Logs) -> Value {
    let mut out = summary(record);
    let result = record.result.clone().unwrap_or_default();
    out["stdout"] = Value::String(logs.stdout);
    out["stderr"] = Value::String(logs.stderr);
    out["exit_code"] = json!(result.exit_code);
    if let Some(error) = result.error {
        out["error"] = json!(error);
    }
    if let Some(metrics) = result.metrics {
        out["metrics"] = json!(metrics);
    }
    out["executor"] = json!(result.executor);
    out
}

/// The short view of a job (`GET /jobs`).
pub fn summary(record: &JobRecord) -> Value {
    json!({
        "job_id": record.job_id,
        "state": record.state.as_str(),
        "task_type": record.task_type,
        "mode": record.mode,
        "priority": record.priority.as_deref().unwrap_or("normal"),
        "attempts": record.attempts,
        "submitted_at": timestamp(Some(record.submitted_at_ms)),
        "started_at": timestamp(record.started_at_ms),
        "finished_at": timestamp(record.finished_at_ms),
        "error_code": record.error_code(),
        "via": record.via,
    })
}

/// An optional timestamp as RFC 3339, or null.
fn timestamp(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(ms)))
}
