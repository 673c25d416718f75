//! `PUT /blobs` (upload bytes, answered with their `blob:HASH`) and
//! `GET /blobs/{hash}` (whether the node has them).

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wasmnode_runtime::blobs::{BlobError, BlobId, BlobStore};

fn store(app: &AppState) -> Result<&BlobStore, ApiError> {
    app.node
        .blobs()
        .ok_or_else(|| api_error(BlobError::NoStore))
}

/// The status and code of a blob error.
fn api_error(e: BlobError) -> ApiError {
    let (status, code) = match &e {
        BlobError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "BLOB_TOO_LARGE"),
        BlobError::StoreFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "BLOB_STORE_FULL"),
        BlobError::InvalidArchive(_) => (StatusCode::BAD_REQUEST, "INVALID_ARCHIVE"),
        BlobError::BadReference(_) => (StatusCode::BAD_REQUEST, "INVALID_BLOB_REFERENCE"),
        BlobError::NotFound(_) => (StatusCode::NOT_FOUND, "BLOB_NOT_FOUND"),
        BlobError::NotAnArchive(_) => (StatusCode::BAD_REQUEST, "NOT_AN_ARCHIVE"),
        BlobError::NoStore => (StatusCode::NOT_FOUND, "NO_BLOB_STORE"),
        BlobError::Upload(_) => (StatusCode::BAD_REQUEST, "UPLOAD_INCOMPLETE"),
        BlobError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    };
    ApiError::new(status, code, e.to_string())
}

/// `PUT /blobs`: stores the body; 201 with `{blob, size, created, archive}`
/// (200 when the same bytes were here already).
#[utoipa::path(put, path = "/blobs", tag = "blobs", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A tar or tar.gz source tree, or a component"), responses((status = 201, description = "Stored", body = Object), (status = 200, description = "Already here", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 413, description = "Over `blobs.max_mb`")))]
pub async fn put(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = store(&app)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = store.limits().max_bytes;
    if declared.is_some_and(|n| n > limit) {
        return Err(api_error(BlobError::TooLarge { limit }));
    }
    let stored = store
        .put(body.into_data_stream())
        .await
        .map_err(api_error)?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!(
        "/blobs/{}",
        &stored.blob[wasmnode_runtime::blobs::SCHEME.len()..]
    );
    Ok((status, [(header::LOCATION, location)], Json(stored)).into_response())
}

/// `GET /blobs/{hash}`: `{blob, size}` when the node has it.
#[utoipa::path(get, path = "/blobs/{hash}", tag = "blobs", params(("hash" = String, Path, description = "`blob:HASH` or HASH")), responses((status = 200, description = "The blob's size", body = Object), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such blob")))]
pub async fn get(
    State(app): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = BlobId::parse(&hash).map_err(api_error)?;
    let size = store(&app)?
        .size(&id)
        .ok_or_else(|| api_error(BlobError::NotFound(id.to_string())))?;
    Ok(Json(json!({"blob": id.to_string(), "size": size})))
}
