//! A small GOLIAT-style dashboard for the tests: heartbeats, one assignment
//! at a time (`config_url` + `split_index`), config files, reports; it can
//! start late, to prove the node retries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
struct Inner {
    heartbeats: Vec<(String, Instant)>,
    assignments: VecDeque<Value>,
    configs: HashMap<String, String>,
    reports: Vec<Value>,
    polls: usize,
}

/// The dashboard.
pub struct TestDashboard {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A `[goliat]` config for tests: heartbeats and polls every second, each
/// assignment running the `command` test guest with arguments `0 split`.
pub fn command_config() -> String {
    format!(
        "[goliat]\nheartbeat_seconds = 1\npoll_seconds = 1\n[goliat.job]\nmode = \"wasm\"\ncomponent = {:?}\nargs = [\"0\", \"split\"]\n",
        crate::test_guest("command").display().to_string()
    )
}

impl TestDashboard {
    /// A dashboard that will listen on a free port once [`Self::serve`] is called.
    pub fn new() -> Self {
        let port = crate::free_port();
        Self {
            inner: Arc::default(),
            addr: ([127, 0, 0, 1], port).into(),
            server: None,
        }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts answering.
    pub async fn serve(&mut self) {
        let app = Router::new()
            .route("/api/heartbeat", post(heartbeat))
            .route("/api/assignment", get(assignment))
            .route("/api/report", post(report))
            .route("/configs/{name}", get(config))
            .with_state(self.inner.clone());
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind dashboard");
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Queues an assignment of `config` (served at `/configs/{name}`) for split `split_index`.
    pub fn assign(&self, name: &str, config: &str, split_index: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.configs.insert(name.into(), config.into());
        inner.assignments.push_back(json!({"id": format!("a-{split_index}"), "config_url": format!("/configs/{name}"), "split_index": split_index}));
    }

    /// Reports received.
    pub fn reports(&self) -> Vec<Value> {
        self.inner.lock().unwrap().reports.clone()
    }

    /// Waits until `n` reports have arrived (panics after `timeout`).
    pub async fn wait_reports(&self, n: usize, timeout: std::time::Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let reports = self.reports();
            if reports.len() >= n {
                return reports;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} reports",
                reports.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Heartbeats received: (machine id, when).
    pub fn heartbeats(&self) -> Vec<(String, Instant)> {
        self.inner.lock().unwrap().heartbeats.clone()
    }

    /// Assignment polls received.
    pub fn polls(&self) -> usize {
        self.inner.lock().unwrap().polls
    }
}

impl Default for TestDashboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDashboard {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn heartbeat(State(state): Shared, Json(body): Json<Value>) -> StatusCode {
    let id = body["machineId"].as_str().unwrap_or_default().to_string();
    state.lock().unwrap().heartbeats.push((id, Instant::now()));
    StatusCode::OK
}

async fn assignment(State(state): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = state.lock().unwrap();
    inner.polls += 1;
    if q.get("machineId").is_none_or(|m| m.is_empty()) {
        return (StatusCode::BAD_REQUEST, "machineId is required").into_response();
    }
    match inner.assignments.pop_front() {
        Some(a) => Json(a).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn report(State(state): Shared, Json(body): Json<Value>) -> StatusCode {
    state.lock().unwrap().reports.push(body);
    StatusCode::OK
}

async fn config(State(state): Shared, Path(name): Path<String>) -> Response {
    match state.lock().unwrap().configs.get(&name) {
        Some(c) => c.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
