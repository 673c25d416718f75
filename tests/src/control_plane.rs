//! A small SPLAI-protocol control plane for the tests (never shipped in the
//! binary): registration, heartbeats, assignments under leases that expire
//! and are re-assigned (extended by heartbeats, or of a fixed term), reports deduplicated by task and idempotency key,
//! dependencies between tasks, a switch to take it down and up again on
//! the same port, and a slow mode in which it answers one request at a time,
//! each after a delay (as a control plane that writes its state file on
//! every request does).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A task to hand out.
#[derive(Debug, Clone)]
pub struct TaskDef {
    /// SPLAI job id.
    pub job_id: String,
    /// SPLAI task id.
    pub task_id: String,
    /// Task type.
    pub task_type: String,
    /// Inputs (strings).
    pub inputs: BTreeMap<String, String>,
    /// Tasks that must complete before this one is assigned.
    pub after: Vec<String>,
}

impl TaskDef {
    /// A task with `inputs` and no dependencies.
    pub fn new(job: &str, task: &str, task_type: &str, inputs: Value) -> Self {
        let inputs = inputs
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            job_id: job.into(),
            task_id: task.into(),
            task_type: task_type.into(),
            inputs,
            after: Vec::new(),
        }
    }

    /// Assigned only after `tasks` completed.
    pub fn after(mut self, tasks: &[&str]) -> Self {
        self.after = tasks.iter().map(|t| t.to_string()).collect();
        self
    }
}

/// A report as received.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    /// Reporting worker.
    pub worker_id: String,
    /// SPLAI job id.
    pub job_id: String,
    /// SPLAI task id.
    pub task_id: String,
    /// Lease id.
    pub lease_id: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Running, Completed or Failed.
    pub status: String,
    /// Output artifact URI.
    #[serde(default)]
    pub output_artifact_uri: String,
    /// The node's signed receipt of the run, as an artifact URI.
    #[serde(default)]
    pub receipt_artifact_uri: String,
    /// Error text.
    #[serde(default)]
    pub error: String,
}

#[derive(Debug)]
struct Lease {
    worker: String,
    attempt: u32,
    expires: Instant,
    task: TaskDef,
}

#[derive(Debug, Default)]
struct Inner {
    token: Option<String>,
    heartbeat_seconds: u64,
    lease_ttl: Duration,
    registrations: HashMap<String, Value>,
    heartbeats: HashMap<String, Vec<Instant>>,
    pending: VecDeque<(TaskDef, u32)>,
    leases: HashMap<String, Lease>,
    completed: HashMap<String, Report>,
    failed: HashMap<String, Report>,
    reports: Vec<Report>,
    keys: HashSet<String>,
    assigned_at: HashMap<String, Instant>,
    completed_at: HashMap<String, Instant>,
    next_lease: u64,
    unauthorized: u64,
    refuse_reports: bool,
    /// Each request waits this long, one request at a time.
    latency: Duration,
    /// Leases run for their term from the assignment; heartbeats do not extend them.
    fixed_term: bool,
    /// Taken by each request in slow mode.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Inner {
    fn expire_leases(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for task in expired {
            let lease = self.leases.remove(&task).expect("lease");
            self.pending.push_front((lease.task, lease.attempt + 1));
        }
    }

    fn ready(&self, task: &TaskDef) -> bool {
        task.after.iter().all(|t| self.completed.contains_key(t))
    }
}

/// The control plane; stops serving when dropped.
pub struct TestControlPlane {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Deserialize)]
struct PollQuery {
    max_tasks: Option<usize>,
}

impl TestControlPlane {
    /// Starts on a free loopback port: heartbeat interval 1 s, leases of 3 s.
    pub async fn start() -> Self {
        let inner = Inner {
            heartbeat_seconds: 1,
            lease_ttl: Duration::from_secs(3),
            ..Inner::default()
        };
        let mut cp = Self {
            inner: Arc::new(Mutex::new(inner)),
            addr: "127.0.0.1:0".parse().unwrap(),
            shutdown: None,
        };
        cp.up().await;
        cp
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requires `token` in `X-SPLAI-Token`.
    pub fn require_token(&self, token: &str) {
        self.inner.lock().unwrap().token = Some(token.into());
    }

    /// Sets the heartbeat interval it tells workers and the lease duration.
    pub fn set_timing(&self, heartbeat_seconds: u64, lease: Duration) {
        let mut inner = self.inner.lock().unwrap();
        inner.heartbeat_seconds = heartbeat_seconds;
        inner.lease_ttl = lease;
    }

    /// Queues tasks.
    pub fn submit(&self, tasks: impl IntoIterator<Item = TaskDef>) {
        let mut inner = self.inner.lock().unwrap();
        for task in tasks {
            inner.pending.push_back((task, 1));
        }
    }

    /// Takes the server down (connections refused) until [`Self::up`].
    pub async fn down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Serves again on the same port with the same state.
    pub async fn up(&mut self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/workers/register", post(register))
            .route("/v1/workers/{id}/heartbeat", post(heartbeat))
            .route("/v1/workers/{id}/assignments", get(assignments))
            .route("/v1/tasks/report", post(report))
            .with_state(self.inner.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shutdown = Some(tx);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    }

    /// Leases run for their term from the assignment, whatever the heartbeats.
    pub fn fixed_term_leases(&self) {
        self.inner.lock().unwrap().fixed_term = true;
    }

    /// Answers every request one at a time, each after `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().unwrap().latency = latency;
    }

    /// Answers reports with 503 while `refuse` (the worker must keep them).
    pub fn refuse_reports(&self, refuse: bool) {
        self.inner.lock().unwrap().refuse_reports = refuse;
    }

    /// Forgets every registration (as after a control-plane restart without state).
    pub fn forget_workers(&self) {
        self.inner.lock().unwrap().registrations.clear();
    }

    /// Registration documents by worker.
    pub fn registrations(&self) -> HashMap<String, Value> {
        self.inner.lock().unwrap().registrations.clone()
    }

    /// Times of the heartbeats of `worker`.
    pub fn heartbeats(&self, worker: &str) -> Vec<Instant> {
        self.inner
            .lock()
            .unwrap()
            .heartbeats
            .get(worker)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the current lease of `task` has run out.
    pub fn lease_expired(&self, task: &str) -> bool {
        self.inner
            .lock()
            .unwrap()
            .leases
            .get(task)
            .is_some_and(|lease| lease.expires <= Instant::now())
    }

    /// Completed tasks: task id → the accepted report.
    pub fn completed(&self) -> HashMap<String, Report> {
        self.inner.lock().unwrap().completed.clone()
    }

    /// Failed tasks: task id → the accepted report.
    pub fn failed(&self) -> HashMap<String, Report> {
        self.inner.lock().unwrap().failed.clone()
    }

    /// Every report received, duplicates included.
    pub fn reports(&self) -> Vec<Report> {
        self.inner.lock().unwrap().reports.clone()
    }

    /// Requests refused for a bad token.
    pub fn unauthorized(&self) -> u64 {
        self.inner.lock().unwrap().unauthorized
    }

    /// Time from first assignment to the accepted Completed report, per task.
    pub fn dispatch_latencies(&self) -> Vec<Duration> {
        let inner = self.inner.lock().unwrap();
        inner
            .completed_at
            .iter()
            .filter_map(|(task, done)| Some(done.duration_since(*inner.assigned_at.get(task)?)))
            .collect()
    }

    /// Time from the first assignment of any of `tasks` to the last of
    /// their accepted Completed reports (`None` until every one completed).
    pub fn batch_span(&self, tasks: &[String]) -> Option<Duration> {
        let inner = self.inner.lock().unwrap();
        let each = |at: &HashMap<String, Instant>| -> Option<Vec<Instant>> {
            tasks.iter().map(|t| at.get(t).copied()).collect()
        };
        let first = each(&inner.assigned_at)?.into_iter().min()?;
        let last = each(&inner.completed_at)?.into_iter().max()?;
        Some(last.duration_since(first))
    }

    /// Waits until `n` tasks completed or failed; panics after `timeout`.
    pub async fn wait_done(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let done = {
                let inner = self.inner.lock().unwrap();
                inner.completed.len() + inner.failed.len()
            };
            if done >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {done}/{n} tasks done after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

/// In slow mode, waits for this request's turn and its delay; the returned
/// guard holds the turn until the answer is built.
async fn slow(state: &Arc<Mutex<Inner>>) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let (latency, turn) = {
        let inner = state.lock().unwrap();
        (inner.latency, inner.turn.clone())
    };
    if latency.is_zero() {
        return None;
    }
    let guard = turn.lock_owned().await;
    tokio::time::sleep(latency).await;
    Some(guard)
}

fn authorized(inner: &mut Inner, headers: &HeaderMap) -> Result<(), (StatusCode, Json<Value>)> {
    match &inner.token {
        Some(token)
            if headers.get("x-splai-token").and_then(|v| v.to_str().ok())
                != Some(token.as_str()) =>
        {
            inner.unauthorized += 1;
            Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid token"})),
            ))
        }
        _ => Ok(()),
    }
}

async fn register(
    State(state): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let _turn = slow(&state).await;
    let mut inner = state.lock().unwrap();
    if let Err(e) = authorized(&mut inner, &headers) {
        return e;
    }
    let worker = body["worker_id"].as_str().unwrap_or_default().to_string();
    inner.registrations.insert(worker, body);
    (
        StatusCode::OK,
        Json(json!({"accepted": true, "heartbeat_interval_seconds": inner.heartbeat_seconds})),
    )
}

async fn heartbeat(
    State(state): Shared,
    headers: HeaderMap,
    Path(worker): Path<String>,
) -> (StatusCode, Json<Value>) {
    let _turn = slow(&state).await;
    let mut inner = state.lock().unwrap();
    if let Err(e) = authorized(&mut inner, &headers) {
        return e;
    }
    if !inner.registrations.contains_key(&worker) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown worker"})),
        );
    }
    inner
        .heartbeats
        .entry(worker.clone())
        .or_default()
        .push(Instant::now());
    let ttl = inner.lease_ttl;
    if !inner.fixed_term {
        for lease in inner.leases.values_mut().filter(|l| l.worker == worker) {
            lease.expires = Instant::now() + ttl;
        }
    }
    (StatusCode::OK, Json(json!({"accepted": true})))
}

async fn assignments(
    State(state): Shared,
    headers: HeaderMap,
    Path(worker): Path<String>,
    Query(q): Query<PollQuery>,
) -> (StatusCode, Json<Value>) {
    let _turn = slow(&state).await;
    let mut inner = state.lock().unwrap();
    if let Err(e) = authorized(&mut inner, &headers) {
        return e;
    }
    if !inner.registrations.contains_key(&worker) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown worker"})),
        );
    }
    inner.expire_leases();
    let mut out = Vec::new();
    let mut skipped = VecDeque::new();
    while out.len() < q.max_tasks.unwrap_or(1) {
        let Some((task, attempt)) = inner.pending.pop_front() else {
            break;
        };
        if inner.completed.contains_key(&task.task_id) || inner.failed.contains_key(&task.task_id) {
            continue;
        }
        if !inner.ready(&task) {
            skipped.push_back((task, attempt));
            continue;
        }
        inner.next_lease += 1;
        let lease_id = format!("lease-{}", inner.next_lease);
        out.push(
            json!({"job_id": task.job_id, "task_id": task.task_id, "type": task.task_type,
            "inputs": task.inputs, "attempt": attempt, "lease_id": lease_id}),
        );
        inner
            .assigned_at
            .entry(task.task_id.clone())
            .or_insert_with(Instant::now);
        let expires = Instant::now() + inner.lease_ttl;
        inner.leases.insert(
            task.task_id.clone(),
            Lease {
                worker: worker.clone(),
                attempt,
                expires,
                task,
            },
        );
    }
    for item in skipped.into_iter().rev() {
        inner.pending.push_front(item);
    }
    (StatusCode::OK, Json(json!({"assignments": out})))
}

async fn report(
    State(state): Shared,
    headers: HeaderMap,
    Json(report): Json<Report>,
) -> (StatusCode, Json<Value>) {
    let _turn = slow(&state).await;
    let mut inner = state.lock().unwrap();
    if let Err(e) = authorized(&mut inner, &headers) {
        return e;
    }
    if inner.refuse_reports {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "reports refused for the test"})),
        );
    }
    inner.reports.push(report.clone());
    if !inner.keys.insert(report.idempotency_key.clone()) {
        return (
            StatusCode::OK,
            Json(json!({"accepted": true, "duplicate": true})),
        );
    }
    match report.status.as_str() {
        "Completed" | "Failed"
            if inner.completed.contains_key(&report.task_id)
                || inner.failed.contains_key(&report.task_id) =>
        {
            return (
                StatusCode::OK,
                Json(json!({"accepted": true, "duplicate": true})),
            );
        }
        "Completed" => {
            inner
                .completed_at
                .insert(report.task_id.clone(), Instant::now());
            inner.leases.remove(&report.task_id);
            inner.completed.insert(report.task_id.clone(), report);
        }
        "Failed" => {
            inner.leases.remove(&report.task_id);
            inner.failed.insert(report.task_id.clone(), report);
        }
        _ => {}
    }
    (StatusCode::OK, Json(json!({"accepted": true})))
}
