//! JSON error responses: `{"error": {"code", "message"}}`, plus
//! `accepted: false` / `state: rejected` / `job_id` for refused Job Protocol
//! submissions and `task_id` / `status: rejected` for refused Vera tasks.

use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Set for refused submissions (render the Job Protocol rejection
    /// shape); the inner value is the job id, when the body had one.
    pub job_id: Option<Option<String>>,
    /// Render a rejection in the Vera task shape instead.
    pub task_shape: bool,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            job_id: None,
            task_shape: false,
            retry_after: None,
        }
    }

    /// Marks this as the rejection of the submission of `job_id`.
    pub fn rejecting(mut self, job_id: Option<String>) -> Self {
        self.job_id = Some(job_id);
        self
    }

    /// Marks this as the rejection of the Vera task `task_id`.
    pub fn rejecting_task(mut self, task_id: Option<String>) -> Self {
        self.job_id = Some(task_id);
        self.task_shape = true;
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 404 for an unknown job.
    pub fn job_not_found(job_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "JOB_NOT_FOUND",
            format!("no job `{job_id}` on this node"),
        )
    }

    /// 404 for an unknown Vera task.
    pub fn task_not_found(task_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "TASK_NOT_FOUND",
            format!("no task `{task_id}` on this node"),
        )
    }

    /// The status of a refused submission with `code`: 422 when the request
    /// is well formed but this node will not or cannot run it, else 400.
    pub fn refusal_status(code: &str) -> StatusCode {
        match code {
            "POLICY_DENIED" | "BACKEND_UNAVAILABLE" => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// 503 while the store cannot be used for now (it heals by itself),
    /// else 500.
    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()).retry_after(5)
            }
            e => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = json!({"code": self.code, "message": self.message});
        let body = match &self.job_id {
            Some(id) if self.task_shape => {
                json!({"task_id": id, "status": "rejected", "error": error})
            }
            Some(id) => {
                json!({"accepted": false, "job_id": id, "state": "rejected", "error": error})
            }
            None => json!({"error": error}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
