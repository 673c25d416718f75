//! Memory stays bounded and the API keeps answering whatever clients and
//! peers do, against the real binary: no built-in's code held after the
//! warm-up, large queued payloads through list
//! and restart, event streams of clients that hang up, submitter-chosen
//! metric labels, slow clients under a small descriptor limit, endless
//! control-plane answers and model downloads.

use axum::body::Body;
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wasmnode_e2e::{Gate, NodeProcess, test_guest_dir, wait_state, wait_terminal, wasm_job};

const WAIT: Duration = Duration::from_secs(120);
/// Resident memory the node may reach in these tests.
const CEILING_MIB: u64 = 150;

/// Whether the node's last error from its control plane says an answer was
/// cut off for its size.
fn cut_off(health: &Value) -> bool {
    health["control_plane"]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("larger than"))
}

/// A local HTTP server for `app`; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A body that never ends (1 MiB chunks), without a length.
fn endless() -> Body {
    let chunk = axum::body::Bytes::from(vec![b'['; 1 << 20]);
    Body::from_stream(futures::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

#[tokio::test]
async fn listing_and_restarting_with_large_queued_payloads_stays_small() {
    let gate = Gate::new();
    let extra = "[scheduler]\nmax_concurrent_jobs = 1\n";
    let mut node = NodeProcess::start(&gate.policy(extra)).await;
    // Compiling the built-in guests at first start peaks at about 40 MiB
    // of its own; measured over it, the payloads' share read anywhere from
    // 120 to 153 MiB, depending on how the two overlapped.
    node.wait_warm().await;
    node.reset_peak_rss();
    assert_eq!(node.post_json("/jobs", &gate.job("hold")).await.0, 200);
    wait_state(&node, "hold", "running").await;
    let pad = "x".repeat(4 << 20);
    for i in 0..40 {
        let job = wasm_job(
            &format!("big-{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]", "pad": pad}),
        );
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    }
    for _ in 0..3 {
        let list = node.get_json("/jobs?limit=1000").await;
        assert_eq!(list["jobs"].as_array().unwrap().len(), 41);
        let queued = node.get_json("/jobs?state=queued&limit=1000").await;
        assert_eq!(queued["jobs"].as_array().unwrap().len(), 40);
    }
    let peak = node.peak_rss_mib();
    assert!(
        peak < CEILING_MIB,
        "{peak} MiB while holding 160 MiB of queued payloads"
    );

    node.crash_and_restart().await;
    let queued = node.get_json("/jobs?limit=1000").await;
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 41);
    let peak = node.peak_rss_mib();
    assert!(
        peak < CEILING_MIB,
        "{peak} MiB after recovering 160 MiB of queued payloads"
    );
}

#[tokio::test]
async fn after_its_warm_up_an_idle_node_holds_no_built_in_code_and_a_tool_loads_it_from_the_cache()
{
    let node = NodeProcess::start("").await;
    node.wait_warm().await;
    let tools = node.get_json("/tools").await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "grep" && t["args_schema"].is_object()),
        "{tools}"
    );
    let job = json!({
        "protocol_version": 1,
        "job_id": "first-grep",
        "task": {"type": "tool_execution",
                 "payload": {"tool": "grep", "pattern": "wasm", "path": "/results"}},
        "runtime": {"mode": "wasm",
                    "mounts": [{"source": "artifacts", "target": "/results", "mode": "ro"}]}
    });
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    let ended = wait_terminal(&reqwest::Client::new(), &node, "first-grep", WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(
        ended["metrics"]["code_cache"], "disk",
        "the warm-up described the tool, then let go of its code, and listing the tools did not load it again: {ended}"
    );
}

#[tokio::test]
async fn event_streams_of_clients_that_hang_up_are_released_and_streams_are_capped() {
    let gate = Gate::new();
    let extra = "[scheduler]\nmax_concurrent_jobs = 1\n[api]\nmax_event_streams = 8\n";
    let node = NodeProcess::start(&gate.policy(extra)).await;
    let client = reqwest::Client::new();
    assert_eq!(node.post_json("/jobs", &gate.job("hold")).await.0, 200);
    wait_state(&node, "hold", "running").await;
    node.wait_warm().await;
    let jobs = 600;
    for i in 0..jobs {
        let job = wasm_job(
            &format!("w{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]"}),
        );
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    }
    let before = node.rss_mib();
    // Each client reads the queued job's first event and hangs up.
    for i in 0..jobs {
        let response = client
            .get(node.at(&format!("/jobs/w{i}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "stream {i}");
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("queued"));
    }
    // A stream the node holds at the cap is answered with 429; the ones
    // dropped above left nothing behind.
    let mut open = Vec::new();
    for i in 0..8 {
        let response = client
            .get(node.at(&format!("/jobs/w{i}/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "stream {i} of 8");
        open.push(response);
    }
    let refused = client.get(node.at("/jobs/w9/events")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_STREAMS");
    drop(open);
    let grown = node.rss_mib().saturating_sub(before);
    assert!(grown < 24, "{grown} MiB kept after {jobs} dropped streams");
    assert!(node.peak_rss_mib() < CEILING_MIB);
    // Once the clients are gone, streams open again.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client
            .get(node.at("/jobs/w9/events"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "streams stayed refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn submitter_chosen_task_types_cannot_grow_the_metrics() {
    let node = NodeProcess::start("").await;
    let client = reqwest::Client::new();
    let huge = wasm_job("huge", "builtin:aggregation", json!({"items_json": "[]"}));
    let mut huge = huge;
    huge["task"]["type"] = json!("t".repeat(1 << 20));
    let r = client
        .post(node.at("/jobs"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for i in 0..150 {
        let mut job = wasm_job(
            &format!("typed-{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]"}),
        );
        job["task"]["type"] = json!(format!("type-{i}"));
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    }
    wait_terminal(&client, &node, "typed-149", WAIT).await;
    let metrics = node.get_text("/metrics").await;
    let submitted = metrics
        .lines()
        .filter(|l| l.starts_with("wasmnode_jobs_submitted_total{"))
        .count();
    assert!(submitted <= 65, "{submitted} label values");
    assert!(
        metrics.contains("task_type=\"other\""),
        "the rest counted as other"
    );
    assert!(
        metrics.len() < 256 << 10,
        "{} bytes of metrics",
        metrics.len()
    );
}

/// Runs a small retrieval job on `node` and checks that it finishes.
async fn assert_a_retrieval_job_finishes(node: &NodeProcess, id: &str) {
    let job = wasm_job(
        id,
        "builtin:retrieval",
        json!({"query": "wasm", "documents": "wasm\ndocker"}),
    );
    let done = node.run_job(&job, WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
}

/// An ARM board with a 39-bit address space (512 GiB) cannot hold a pool
/// of 256 instances with 4 GiB memory reservations each; a 16 GiB limit on
/// the address space stands in for it.
#[tokio::test]
async fn a_small_address_space_falls_back_to_on_demand_allocation_and_still_runs_tasks() {
    let node = NodeProcess::start_limited(&["serve"], "", &["--as=17179869184"]).await;
    let info: Value = node.get_json("/info").await;
    assert_eq!(info["wasm"]["allocator"], "on-demand", "{info}");
    assert_eq!(info["wasm"]["dirty_page_reset"], false, "{info}");
    let fallback_lines = node
        .log()
        .lines()
        .filter(|l| l.contains("pooling allocator unavailable"))
        .count();
    assert_eq!(fallback_lines, 1, "{}", node.log());
    assert_a_retrieval_job_finishes(&node, "small-space").await;
}

/// Each engine reserves a pool of its own (16 instances: about 130 GiB of
/// address space): under a 200 GiB limit a second one does not fit, and
/// the node runs on one engine, says so, and still runs tasks.
#[tokio::test]
async fn engines_whose_pools_do_not_fit_the_address_space_leave_the_node_with_fewer() {
    let node = NodeProcess::start_limited(
        &["serve"],
        "[wasm]\nengines = 2\npool_instances = 16\n",
        &["--as=214748364800"],
    )
    .await;
    let info: Value = node.get_json("/info").await;
    assert_eq!(info["wasm"]["allocator"], "pooling", "{info}");
    assert_eq!(info["wasm"]["engines"], 1, "{info}");
    assert!(
        node.log().contains(
            "cannot make another WebAssembly engine (address space?); running with fewer"
        ),
        "{}",
        node.log()
    );
    assert_a_retrieval_job_finishes(&node, "one-engine").await;
}

#[tokio::test]
async fn slow_clients_never_stop_health_answering_under_a_small_descriptor_limit() {
    let node = NodeProcess::start_limited(
        &["serve"],
        "[api]\nheader_timeout_seconds = 30\n",
        &["--nofile=256:256"],
    )
    .await;
    let address = node.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let _ = stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await;
        slow.push(stream);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for round in 0..10 {
        let health = client.get(node.at("/health")).send().await;
        assert!(
            health.as_ref().is_ok_and(|r| r.status() == 200),
            "round {round}: {health:?}"
        );
    }
    let job = wasm_job(
        "still-works",
        "builtin:aggregation",
        json!({"items_json": "[]"}),
    );
    let patient = reqwest::Client::new();
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    let done = wait_terminal(&patient, &node, "still-works", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    drop(slow);
    assert!(
        !node.log().contains("Too many open files"),
        "{}",
        node.log()
    );
}

#[tokio::test]
async fn endless_control_plane_answers_are_cut_off_while_they_arrive() {
    let app = axum::Router::new()
        .route(
            "/v1/workers/register",
            post(|| async {
                axum::Json(json!({"accepted": true, "heartbeat_interval_seconds": 1}))
            }),
        )
        .route(
            "/v1/workers/{id}/heartbeat",
            post(|| async { axum::Json(json!({"accepted": true})) }),
        )
        .route("/v1/workers/{id}/assignments", get(|| async { endless() }));
    let url = serve(app).await;
    let node = NodeProcess::start_agent(
        &url,
        "w-endless",
        "[control_plane]\npoll_millis = 100\nbackoff_max_seconds = 1\n",
    )
    .await;
    node.wait_health(cut_off).await;
    let peak = node.peak_rss_mib();
    assert!(
        peak < CEILING_MIB,
        "{peak} MiB reading an endless poll answer"
    );
}

#[tokio::test]
async fn an_endless_goliat_config_is_cut_off_while_it_arrives() {
    let app = axum::Router::new()
        .route("/api/heartbeat", post(|| async { "ok" }))
        .route(
            "/api/assignment",
            get(|| async {
                axum::Json(json!({"id": "a1", "config_url": "/config.json", "split_index": 0}))
            }),
        )
        .route("/config.json", get(|| async { endless() }))
        .route("/api/report", post(|| async { "ok" }));
    let url = serve(app).await;
    let config = format!(
        "[goliat]\npoll_seconds = 1\nheartbeat_seconds = 1\n[goliat.job]\ncomponent = {:?}\n[control_plane]\nbackoff_max_seconds = 1\n",
        test_guest_dir().join("hostile.wasm").display().to_string()
    );
    let node = NodeProcess::start_command(
        &[
            "agent",
            "--protocol",
            "goliat",
            "--control-plane",
            &url,
            "--machine-id",
            "m1",
        ],
        &config,
    )
    .await;
    node.wait_health(cut_off).await;
    let peak = node.peak_rss_mib();
    assert!(peak < CEILING_MIB, "{peak} MiB reading an endless config");
}

#[tokio::test]
async fn model_downloads_stop_at_their_size_limit() {
    let app = axum::Router::new()
        .route("/endless.bin", get(|| async { endless() }))
        .route(
            "/declared.bin",
            get(|| async {
                axum::response::Response::builder()
                    .header("content-length", "3000000000")
                    .body(endless())
                    .unwrap()
            }),
        );
    let url = serve(app).await;
    let node = NodeProcess::start(&format!(
        "[llm]\nmax_download_bytes = 4194304\ndownload_allowlist = [\"{url}/\"]\n"
    ))
    .await;
    let client = reqwest::Client::new();
    for file in ["endless.bin", "declared.bin"] {
        let id = file.trim_end_matches(".bin");
        let job = json!({"protocol_version": 1, "job_id": id, "task": {"type": "model_download",
            "payload": {"model": "org/model", "source": "url", "url": format!("{url}/{file}"),
                "sha256": "0".repeat(64)}}, "runtime": {"mode": "auto"}});
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
        let done = wait_terminal(&client, &node, id, WAIT).await;
        assert_eq!(done["error"]["code"], "OUTPUT_EXCEEDED", "{done}");
        assert!(
            done["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_download_bytes"),
            "{done}"
        );
    }
    let cache = node.data_dir.path().join("models");
    let files: Vec<String> = walk(&cache);
    assert!(
        files.iter().all(|f| f.ends_with(".lock")),
        "nothing but lock files stays in the cache: {files:?}"
    );
    assert!(node.peak_rss_mib() < CEILING_MIB);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}
