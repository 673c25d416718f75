//! The Vera-style task API on the real node: every endpoint, callbacks
//! (allowlisted, retried, recorded, resumed after a crash), priorities
//! under load, the health and JSON metrics additions.

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmnode_e2e::{Gate, NodeProcess, callback_task, test_guest_dir};

const WAIT: Duration = Duration::from_secs(60);

/// A callback receiver that fails the first `failures` calls with 500.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let calls = Arc::new(Mutex::new(0usize));
        let seen = received.clone();
        let app = axum::Router::new().route(
            "/hooks/done",
            post(move |axum::Json(body): axum::Json<Value>| {
                let (seen, calls) = (seen.clone(), calls.clone());
                async move {
                    let mut n = calls.lock().unwrap();
                    *n += 1;
                    if *n <= failures {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    seen.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/done", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received }
    }
}

fn config(extra: &str) -> String {
    with_policy(
        &format!(
            "[policy]\ncomponent_roots = [{:?}]\n",
            test_guest_dir().display().to_string()
        ),
        extra,
    )
}

fn with_policy(policy: &str, extra: &str) -> String {
    format!(
        "{policy}[vera]\ncallback_allowlist = [\"http://127.0.0.1:\"]\ncallback_backoff_ms = 100\n{extra}"
    )
}

async fn wait_status(node: &NodeProcess, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status: Value = node.get_json(&format!("/task/{id}/status")).await;
        if until(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn done(status: &Value) -> bool {
    matches!(
        status["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

#[tokio::test]
async fn execute_status_result_and_cancel() {
    let node = NodeProcess::start(&config("")).await;
    let client = reqwest::Client::new();
    let (status, body) = node.post_json("/execute", &json!({"task_id": "v1", "task_type": "data_processing",
        "payload": {"operation": "aggregation", "items_json": "[{\"k\":\"v\"}]", "timeout": 10}, "priority": "high"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert!(
        body["estimated_completion"].is_string() && body["worker_id"].is_string(),
        "{body}"
    );
    let status = wait_status(&node, "v1", done).await;
    assert_eq!(
        (status["status"].as_str(), status["progress"].as_f64()),
        (Some("completed"), Some(1.0)),
        "{status}"
    );
    assert!(status["started_at"].is_string());
    let job: Value = node.get_json("/jobs/v1").await;
    assert_eq!(job["via"], "vera", "the same job, and who took it: {job}");
    let result: Value = node.get_json("/task/v1/result").await;
    assert_eq!(result["result"]["report"], json!({"k": "v"}));
    assert_eq!(
        result["receipt"]["payloadType"], "application/vnd.in-toto+json",
        "the node's signed receipt comes with the result: {result}"
    );
    assert!(
        result["execution_time_seconds"].as_f64().unwrap() >= 0.0
            && result["completed_at"].is_string()
    );

    for (id, body) in [
        (
            "v2",
            json!({"task_id": "v2", "task_type": "custom", "payload": {"tool": "list", "path": "/workspace"}}),
        ),
        (
            "v3",
            json!({"task_id": "v3", "task_type": "toolchain_execution", "payload": {"component": "builtin:retrieval", "query": "x", "documents": "x marks"}}),
        ),
    ] {
        assert_eq!(node.post_json("/execute", &body).await.0, 200);
        assert_eq!(wait_status(&node, id, done).await["status"], "completed");
    }

    let (status, body) = node.post_json("/execute", &json!({"task_id": "slow", "task_type": "custom",
        "payload": {"component": test_guest_dir().join("hostile.wasm").display().to_string(), "action": "sleep", "ms": 30000}})).await;
    assert_eq!(status, 200, "{body}");
    wait_status(&node, "slow", |s| s["status"] == "running").await;
    let cancelled: Value = client
        .delete(node.at("/task/slow"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["task_id"], "slow");
    assert_eq!(
        wait_status(&node, "slow", done).await["status"],
        "cancelled"
    );

    let (status, body) = node.post_json("/execute", &json!({"task_id": "py", "task_type": "sandboxed_execution", "payload": {"code": "print(1)", "language": "python"}})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("BACKEND_UNAVAILABLE")),
        "{body}"
    );
    assert_eq!(
        (body["task_id"].as_str(), body["status"].as_str()),
        (Some("py"), Some("rejected")),
        "refusals come in the Vera task shape: {body}"
    );
    let (status, body) = node
        .post_json(
            "/execute",
            &json!({"task_id": "x", "task_type": "teleport"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("UNKNOWN_TASK_TYPE"))
    );
    assert_eq!(
        client
            .get(node.at("/task/none/status"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let health: Value = node.get_json("/health").await;
    for field in [
        "worker_id",
        "capabilities",
        "active_tasks",
        "queue_depth",
        "uptime_seconds",
        "status",
        "load_average",
    ] {
        assert!(!health[field].is_null(), "{field} missing from {health}");
    }
    let metrics: Value = client
        .get(node.at("/metrics"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["tasks_completed"], 3, "{metrics}");
    for field in [
        "tasks_failed",
        "success_rate",
        "avg_execution_time_seconds",
        "cpu_usage_percent",
        "memory_usage_gb",
        "uptime_hours",
    ] {
        assert!(metrics[field].is_number(), "{field} missing from {metrics}");
    }
    let text = client
        .get(node.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("# HELP"),
        "Prometheus text stays the default"
    );
}

#[tokio::test]
async fn callbacks_are_allowlisted_retried_and_recorded() {
    let node = NodeProcess::start(&config("")).await;
    let flaky = Receiver::start(2).await;
    let job = |id: &str, url: &str| {
        json!({"task_id": id, "task_type": "data_processing",
        "payload": {"operation": "aggregation", "items_json": "[{\"n\":1}]"}, "callback_url": url})
    };
    assert_eq!(
        node.post_json("/execute", &job("cb1", &flaky.url)).await.0,
        200
    );
    let status = wait_status(&node, "cb1", |s| s["callback"]["state"] == "delivered").await;
    assert_eq!(
        status["callback"]["attempts"], 3,
        "two failures, then delivered: {status}"
    );
    let received = flaky.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (
            received[0]["task_id"].as_str(),
            received[0]["status"].as_str()
        ),
        (Some("cb1"), Some("completed"))
    );
    assert_eq!(received[0]["result"]["report"]["n"], 1);

    let dead = "http://127.0.0.1:9/hooks/done";
    assert_eq!(node.post_json("/execute", &job("cb2", dead)).await.0, 200);
    let status = wait_status(&node, "cb2", |s| s["callback"]["state"] == "failed").await;
    assert_eq!(
        status["callback"]["attempts"], 4,
        "the first try and three retries: {status}"
    );
    assert!(status["callback"]["last_error"].is_string());

    let (status, body) = node
        .post_json(
            "/execute",
            &job("cb3", "http://169.254.169.254/latest/meta-data"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("POLICY_DENIED")),
        "no SSRF from submitted jobs: {body}"
    );
}

#[tokio::test]
async fn a_callback_pending_when_the_node_is_killed_is_delivered_after_its_restart() {
    let config = format!(
        "[policy]\ncomponent_roots = [{:?}]\n[vera]\ncallback_allowlist = [\"http://127.0.0.1:\"]\ncallback_attempts = 3\ncallback_backoff_ms = 3600000\n",
        test_guest_dir().display().to_string()
    );
    let mut node = NodeProcess::start(&config).await;
    let receiver = Receiver::start(1).await;
    assert_eq!(
        node.post_json("/execute", &callback_task("cb", &receiver.url))
            .await
            .0,
        200
    );
    // The first attempt fails and the next is an hour away.
    let status = wait_status(&node, "cb", |s| s["callback"]["attempts"] == 1).await;
    assert_eq!(status["callback"]["state"], "pending", "{status}");

    node.crash_and_restart().await;
    let status = wait_status(&node, "cb", |s| s["callback"]["state"] == "delivered").await;
    assert_eq!(status["callback"]["attempts"], 2, "{status}");
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["task_id"], "cb");
}

#[tokio::test]
async fn priorities_are_honoured_under_load() {
    let gate = Gate::new();
    let node = NodeProcess::start(&with_policy(
        &gate.policy(""),
        "[scheduler]\nmax_concurrent_jobs = 1\n",
    ))
    .await;
    let hostile = test_guest_dir().join("hostile.wasm").display().to_string();
    let blocker = json!({"task_id": "blocker", "task_type": "custom", "payload": {"component": hostile,
        "action": "block", "until": "/gate/open", "mounts": gate.mount()}});
    assert_eq!(node.post_json("/execute", &blocker).await.0, 200);
    wait_status(&node, "blocker", |s| s["status"] == "running").await;
    let mut order = Vec::new();
    for i in 0..4 {
        for priority in ["low", "normal", "high"] {
            let id = format!("{priority}-{i}");
            order.push(id.clone());
            // Each job sleeps 5 ms, so start times (in ms) never tie.
            let body = json!({"task_id": id, "task_type": "custom", "priority": priority,
                "payload": {"component": hostile, "action": "sleep", "ms": 5}});
            assert_eq!(node.post_json("/execute", &body).await.0, 200);
        }
    }
    gate.open();
    let mut started = Vec::new();
    for id in &order {
        let status = wait_status(&node, id, done).await;
        started.push((
            status["started_at"].as_str().unwrap().to_string(),
            id.clone(),
        ));
    }
    started.sort();
    let ran: Vec<&str> = started.iter().map(|(_, id)| id.as_str()).collect();
    let expected = [
        "high-0", "high-1", "high-2", "high-3", "normal-0", "normal-1", "normal-2", "normal-3",
        "low-0", "low-1", "low-2", "low-3",
    ];
    assert_eq!(
        ran, expected,
        "high before normal before low, FIFO within each"
    );
}
