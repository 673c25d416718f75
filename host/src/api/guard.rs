//! What keeps web pages the operator happens to open from using the API:
//! a POST or PATCH body must say `Content-Type: application/json` (a page
//! can send `text/plain` and form bodies anywhere without asking; a PUT,
//! such as an upload to `/blobs`, it cannot send cross-origin without a
//! CORS preflight, which the node answers only for `api.cors_origins`), and an
//! API without a key that listens on loopback answers only requests whose
//! `Host` names it (a DNS-rebinding page would name its own host).

use super::AppState;
use super::error::ApiError;
use super::settings::ApiSection;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// The `Host` values a keyless loopback API answers: its address and port
/// under the loopback names, and `api.allowed_hosts`; `None` when the API
/// has a key or listens beyond loopback.
pub fn allowed_hosts(api: &ApiSection) -> Option<Vec<String>> {
    if !api.api_key.is_empty() || !api.listen.ip().is_loopback() {
        return None;
    }
    let port = api.listen.port();
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect();
    hosts.push(api.listen.to_string());
    hosts.extend(api.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
    Some(hosts)
}

/// Refuses bodies that are not JSON, and foreign `Host`s on a keyless
/// loopback API.
pub async fn browsers(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(hosts) = &app.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if !hosts.contains(&host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN_HOST",
                format!(
                    "this node answers requests for {} (without an API key, other Host names are refused; add one to api.allowed_hosts)",
                    hosts.join(", ")
                ),
            ));
        }
    }
    if matches!(*request.method(), Method::POST | Method::PATCH) {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "request bodies must be JSON sent with Content-Type: application/json",
            ));
        }
    }
    Ok(next.run(request).await)
}
