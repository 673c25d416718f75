//! A small web site on 127.0.0.1 for outbound-HTTP tests: an HTML page, a
//! redirect to it, a redirect to a host the test does not grant, an echo
//! for POST, a large text body, a page that never answers, and a count of
//! the requests it was sent.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of `/big`.
pub const BIG_BYTES: usize = 64 << 10;

/// A Job Protocol request running `web_fetch` with `args`.
pub fn fetch_job(id: &str, args: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "tool_execution", "payload": {"tool": "web_fetch", "args": args}},
        "runtime": {"mode": "auto"}})
}

/// The site.
pub struct WebSite {
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// The port it listens on.
    pub port: u16,
    hits: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl WebSite {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new()
            .route(
                "/page",
                get(|| async {
                    Html(
                        "<html><head><title>T</title><script>alert('x')</script></head>\
                         <body><h1>Hello</h1><p>Fish &amp; chips</p></body></html>",
                    )
                }),
            )
            .route(
                "/moved",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/page")]) }),
            )
            .route(
                "/away",
                get(move || async move {
                    let elsewhere = format!("http://localhost:{port}/page");
                    (StatusCode::FOUND, [(header::LOCATION, elsewhere)])
                }),
            )
            .route("/echo", post(|body: String| async move { body }))
            .route("/hang", get(std::future::pending::<String>))
            .route(
                "/big",
                get(|| async { "a".repeat(BIG_BYTES).into_response() }),
            )
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(request)
                },
            ));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            authority: format!("127.0.0.1:{port}"),
            port,
            hits,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
