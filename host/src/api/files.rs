//! A finished job's files: `GET /jobs/{id}/files` (a listing, or with
//! `?archive=tar` all of them in one tar stream) and
//! `GET /jobs/{id}/files/{path}` (one file).

use super::AppState;
use super::error::ApiError;
use crate::files::FilesError;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// The query of `GET /jobs/{id}/files`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    archive: Option<String>,
}

/// 404 for an unknown job, 409 while it has not ended.
fn ended(app: &AppState, job_id: &str) -> Result<(), ApiError> {
    let record = app
        .node
        .job(job_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::job_not_found(job_id))?;
    if record.state.is_terminal() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "JOB_NOT_FINISHED",
            format!(
                "job `{job_id}` is {}; its files are kept once it ends",
                record.state.as_str()
            ),
        ))
    }
}

fn api_error(e: FilesError) -> ApiError {
    let (status, code) = match &e {
        FilesError::BadPath(_) => (StatusCode::BAD_REQUEST, "INVALID_PATH"),
        FilesError::NotFound(_) => (StatusCode::NOT_FOUND, "FILE_NOT_FOUND"),
        FilesError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    };
    ApiError::new(status, code, e.to_string())
}

/// `GET /jobs/{id}/files`.
#[utoipa::path(get, path = "/jobs/{id}/files", tag = "files", params(("id" = String, Path, description = "The job id"), ("archive" = Option<String>, Query, description = "`tar`: every file in one tar stream")), responses((status = 200, description = "The files the job kept, or a tar of them", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job"), (status = 409, description = "The job has not ended")))]
pub async fn list(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
    query: Result<Query<FilesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let archive = match query {
        Ok(Query(FilesQuery { archive: None })) => false,
        Ok(Query(FilesQuery { archive: Some(a) })) if a == "tar" => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "the only query is `archive=tar`",
            ));
        }
    };
    ended(&app, &job_id)?;
    let files = app.node.files();
    if archive {
        let chunks = tokio_stream::wrappers::ReceiverStream::new(files.tar(&job_id));
        let name = format!("attachment; filename=\"{}.tar\"", job_id.replace('"', "_"));
        return Ok((
            [
                (header::CONTENT_TYPE, "application/x-tar".to_string()),
                (header::CONTENT_DISPOSITION, name),
            ],
            Body::from_stream(chunks),
        )
            .into_response());
    }
    let listed = tokio::task::spawn_blocking(move || files.list(&job_id).map(|f| (job_id, f)))
        .await
        .map_err(|e| api_error(FilesError::Io(std::io::Error::other(e))))?;
    let (job_id, listed) = listed.map_err(api_error)?;
    let total: u64 = listed.iter().map(|f| f.size).sum();
    Ok(Json(json!({
        "job_id": job_id,
        "files": listed,
        "total_bytes": total,
    }))
    .into_response())
}

/// `GET /jobs/{id}/files/{path}`.
#[utoipa::path(get, path = "/jobs/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "The job id"), ("path" = String, Path, description = "The file below the workspace")), responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 400, description = "A bad path"), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job or file"), (status = 409, description = "The job has not ended")))]
pub async fn get(
    State(app): State<AppState>,
    Path((job_id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    ended(&app, &job_id)?;
    let (file, size) = app.node.files().read(&job_id, &path).map_err(api_error)?;
    let name = path.rsplit('/').next().unwrap_or(&path).replace('"', "_");
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
