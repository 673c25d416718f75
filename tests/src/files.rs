//! A file server in the Hugging Face hub's URL layout
//! (`/{org}/{repo}/resolve/{revision}/{file}`) that publishes each file's
//! SHA-256 as the hub does (`X-Linked-Etag`), honours `Range`, can drop the
//! connection partway through a file once, and counts requests; plus a
//! `/v1/retrieve` endpoint playing a remote retrieval service.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    files: HashMap<String, Vec<u8>>,
    drop_after: Option<usize>,
    requests: Vec<(String, Option<String>)>,
    heads: usize,
    bearer: Vec<Option<String>>,
}

/// The file server.
pub struct FileServer {
    inner: Arc<Mutex<Inner>>,
    /// Base URL (the hub "endpoint").
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{org}/{repo}/resolve/{revision}/{*file}", get(serve))
            .route("/v1/retrieve", post(retrieve))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            url,
            _server: server,
        }
    }

    /// Serves `bytes` at `/{repo}/resolve/main/{file}`.
    pub fn add(&self, repo: &str, file: &str, bytes: Vec<u8>) {
        self.inner
            .lock()
            .unwrap()
            .files
            .insert(format!("{repo}/main/{file}"), bytes);
    }

    /// The next full response sends only `bytes` and then drops the connection.
    pub fn drop_once_after(&self, bytes: usize) {
        self.inner.lock().unwrap().drop_after = Some(bytes);
    }

    /// Digest lookups (HEAD requests) so far.
    pub fn heads(&self) -> usize {
        self.inner.lock().unwrap().heads
    }

    /// Transfers (GET requests) so far: (path, Range header).
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Authorization headers so far.
    pub fn bearers(&self) -> Vec<Option<String>> {
        self.inner.lock().unwrap().bearer.clone()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn serve(
    state: Shared,
    method: Method,
    Path((org, repo, revision, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{org}/{repo}/{revision}/{file}");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut inner = state.lock().unwrap();
    if method == Method::HEAD {
        inner.heads += 1;
    } else {
        inner.requests.push((key.clone(), range.clone()));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    inner.bearer.push(bearer);
    let Some(bytes) = inner.files.get(&key).cloned() else {
        return (StatusCode::NOT_FOUND, "Entry not found").into_response();
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(bytes.len());
    let rest = bytes[start..].to_vec();
    let total = bytes.len();
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut response_headers = vec![
        (header::CONTENT_LENGTH, rest.len().to_string()),
        (
            header::HeaderName::from_static("x-linked-etag"),
            format!("\"{sha}\""),
        ),
    ];
    if start > 0 {
        response_headers.push((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        ));
    }
    let drop_after = if method == Method::HEAD {
        None
    } else {
        inner.drop_after.take()
    };
    let body = match drop_after {
        Some(cut) => {
            let head = rest[..cut.min(rest.len())].to_vec();
            // Send the head, give it time to leave, then break the connection.
            let head = futures::stream::iter([Ok::<_, std::io::Error>(head)]);
            let broken = futures::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err::<Vec<u8>, _>(std::io::Error::other(
                    "connection dropped by the test server",
                ))
            });
            Body::from_stream(futures::StreamExt::chain(head, broken))
        }
        None => Body::from(rest),
    };
    let mut response = (status, body).into_response();
    for (name, value) in response_headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn retrieve(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let query = body["query"].as_str().unwrap_or_default();
    axum::Json(
        json!({"documents": [{"id": "remote-1", "text": format!("remote answer to {query}"), "score": 1.0}], "echo": body}),
    )
}
