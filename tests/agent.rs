//! `wasmnode agent` against the test SPLAI control plane, with real
//! processes on 127.0.0.1: mixed batches, three nodes and a `kill -9`,
//! control-plane outages, the durable outbox across a crash, heartbeats
//! under CPU load, bad tokens and forgotten registrations.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wasmnode_e2e::control_plane::{TaskDef, TestControlPlane};
use wasmnode_e2e::{Gate, NodeProcess, test_guest_dir, wait_state, wait_terminal, wasm_job};

const WAIT: Duration = Duration::from_secs(120);

/// A config sharing `artifacts` as the artifact root (SPLAI's shared store).
fn config(artifacts: &std::path::Path, extra: &str) -> String {
    format!(
        "[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 200\nbackoff_max_seconds = 2\n{extra}",
        artifacts.display().to_string()
    )
}

fn docs(n: usize) -> String {
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("document {i} about topic {} and sandbox number {}", i % 17, i * 7)}))
        .collect();
    Value::Array(docs).to_string()
}

fn artifact(root: &std::path::Path, uri: &str) -> Value {
    let path = root.join(uri.strip_prefix("artifact://").unwrap());
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[tokio::test]
async fn a_mixed_batch_with_dependencies_completes_exactly_once() {
    let cp = TestControlPlane::start().await;
    let artifacts = tempfile::tempdir().unwrap();
    let _node = NodeProcess::start_agent(&cp.url(), "w-mixed", &config(artifacts.path(), "")).await;
    cp.submit([
        TaskDef::new(
            "job1",
            "r1",
            "retrieval",
            json!({"query": "topic 3 sandbox", "documents_json": docs(40), "top_k": "2"}),
        ),
        TaskDef::new(
            "job1",
            "a1",
            "aggregation",
            json!({"items_json": "[{\"owner\":\"ops\"}]"}),
        ),
        TaskDef::new(
            "job1",
            "t1",
            "tool_execution",
            json!({"tool": "list", "path": "/workspace"}),
        ),
        TaskDef::new(
            "job1",
            "a2",
            "aggregation",
            json!({
                "items_json": "[{\"title\":\"weekly\"}]",
                "dep:r1:output_uri": "artifact://job1/r1/output.json",
                "dep:t1:output_uri": "artifact://job1/t1/output.json",
                "required_fields": "title,documents,entries",
            }),
        )
        .after(&["r1", "t1"]),
    ]);
    cp.wait_done(4, WAIT).await;
    let completed = cp.completed();
    assert_eq!(completed.len(), 4, "failed: {:?}", cp.failed());
    let finals: Vec<_> = cp
        .reports()
        .into_iter()
        .filter(|r| r.status == "Completed")
        .collect();
    assert_eq!(finals.len(), 4, "each task reported Completed exactly once");
    let running: Vec<_> = cp
        .reports()
        .into_iter()
        .filter(|r| r.status == "Running")
        .collect();
    assert_eq!(running.len(), 4, "a Running report precedes each final one");
    assert!(
        running
            .iter()
            .all(|r| r.idempotency_key.ends_with(":running"))
    );

    let r1 = artifact(artifacts.path(), &completed["r1"].output_artifact_uri);
    assert_eq!(
        (
            r1["job_id"].as_str(),
            r1["task_id"].as_str(),
            r1["type"].as_str()
        ),
        (Some("job1"), Some("r1"), Some("retrieval"))
    );
    assert!(r1["created_at"].is_string());
    assert_eq!(r1["documents"].as_array().unwrap().len(), 2);
    let a1 = artifact(artifacts.path(), &completed["a1"].output_artifact_uri);
    assert_eq!(a1["report"]["owner"], "ops");
    let a2 = artifact(artifacts.path(), &completed["a2"].output_artifact_uri);
    assert_eq!(a2["report"]["title"], "weekly");
    assert_eq!(a2["provenance"]["documents"], "dep:r1");
    assert_eq!(a2["provenance"]["entries"], "dep:t1");
    assert_eq!(
        a2["report"]["path"], "/workspace",
        "the tool's output fields were merged"
    );
    assert_eq!(completed["r1"].idempotency_key, "w-mixed:job1:r1:1");
    assert_eq!(
        completed["r1"].receipt_artifact_uri,
        "artifact://job1/r1/receipt.json"
    );
    let receipt = artifact(artifacts.path(), &completed["r1"].receipt_artifact_uri);
    assert_eq!(receipt["payloadType"], "application/vnd.in-toto+json");

    let registration = &cp.registrations()["w-mixed"];
    assert_eq!(
        registration["cpu"].as_u64().unwrap() as usize,
        wasmnode_e2e_cores()
    );
    assert!(registration["memory"].as_str().unwrap().ends_with("Mi"));
    assert_eq!(registration["gpu"], false);
    assert!(
        registration["identity"]["fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("SHA256:")),
        "{registration}"
    );
    assert!(
        registration["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("grep"))
    );
}

fn wasmnode_e2e_cores() -> usize {
    let out = std::process::Command::new("nproc")
        .arg("--all")
        .output()
        .unwrap();
    let threads: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let cores = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("cpu cores"))
            .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
    });
    cores.unwrap_or(threads)
}

#[tokio::test]
async fn three_nodes_share_300_tasks_and_survive_a_kill_dash_nine() {
    let cp = TestControlPlane::start().await;
    cp.set_timing(1, Duration::from_secs(2));
    let artifacts = tempfile::tempdir().unwrap();
    let cfg = config(artifacts.path(), "max_parallel_tasks = 2\n");
    let mut nodes = Vec::new();
    for w in ["w1", "w2", "w3"] {
        nodes.push(NodeProcess::start_agent(&cp.url(), w, &cfg).await);
    }
    let corpus = docs(600);
    cp.submit((0..300).map(|i| {
        TaskDef::new(
            "big",
            &format!("t{i:03}"),
            "retrieval",
            json!({"query": format!("topic {} sandbox", i % 17), "documents_json": corpus}),
        )
    }));
    // Kill w1 mid-batch.
    let deadline = Instant::now() + WAIT;
    while cp.completed().len() < 40 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[0].signal("KILL");
    cp.wait_done(300, WAIT).await;
    let completed = cp.completed();
    assert_eq!(
        completed.len(),
        300,
        "all 300 complete; failed: {:?}",
        cp.failed().keys().take(5).collect::<Vec<_>>()
    );
    let by_worker = |w: &str| completed.values().filter(|r| r.worker_id == w).count();
    assert!(by_worker("w2") > 0 && by_worker("w3") > 0, "work is shared");
    let completed_reports = cp
        .reports()
        .into_iter()
        .filter(|r| r.status == "Completed")
        .count();
    assert!(
        completed_reports >= 300,
        "duplicates are possible after a lease expires, and the control plane deduplicates them"
    );
    let reassigned = cp
        .reports()
        .iter()
        .any(|r| r.worker_id != "w1" && r.idempotency_key.ends_with(":2"));
    assert!(
        reassigned,
        "tasks leased to the killed node were re-assigned with a new attempt"
    );
}

#[tokio::test]
async fn a_control_plane_outage_of_thirty_seconds_loses_nothing() {
    let mut cp = TestControlPlane::start().await;
    cp.set_timing(1, Duration::from_secs(120));
    let artifacts = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_agent(
        &cp.url(),
        "w-outage",
        &config(artifacts.path(), "max_parallel_tasks = 2\n"),
    )
    .await;
    let corpus = docs(3000);
    cp.submit((0..30).map(|i| {
        TaskDef::new(
            "o",
            &format!("o{i}"),
            "retrieval",
            json!({"query": "topic 5", "documents_json": corpus}),
        )
    }));
    while cp.completed().len() < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cp.down().await;
    let outage = Instant::now();
    let deadline = outage + WAIT;
    while node.get_json("/health").await["control_plane"]["state"] != "disconnected" {
        assert!(
            Instant::now() < deadline,
            "the node never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage lasts thirty seconds, whatever the node does meanwhile.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let health: Value = node.get_json("/health").await;
    assert_eq!(health["status"], "ok", "the node kept running");
    cp.up().await;
    cp.wait_done(30, WAIT).await;
    assert_eq!(cp.completed().len(), 30);
    let health: Value = node.get_json("/health").await;
    assert_eq!(health["control_plane"]["state"], "connected", "{health}");
}

#[tokio::test]
async fn a_report_not_yet_accepted_survives_a_kill_dash_nine() {
    let cp = TestControlPlane::start().await;
    let artifacts = tempfile::tempdir().unwrap();
    let mut node =
        NodeProcess::start_agent(&cp.url(), "w-outbox", &config(artifacts.path(), "")).await;
    cp.refuse_reports(true);
    cp.submit([TaskDef::new(
        "k",
        "k1",
        "aggregation",
        json!({"items_json": "[{\"survives\":true}]"}),
    )]);
    let deadline = Instant::now() + WAIT;
    loop {
        let health: Value = node.get_json("/health").await;
        if health["control_plane"]["pending_reports"]
            .as_u64()
            .unwrap_or(0)
            >= 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.crash_and_restart().await;
    assert!(cp.completed().is_empty());
    cp.refuse_reports(false);
    cp.wait_done(1, WAIT).await;
    let report = &cp.completed()["k1"];
    assert_eq!(report.worker_id, "w-outbox");
    assert_eq!(
        artifact(artifacts.path(), &report.output_artifact_uri)["report"]["survives"],
        true
    );
}

#[tokio::test]
async fn heartbeats_keep_their_interval_while_two_cpu_bound_guests_run() {
    let cp = TestControlPlane::start().await;
    let artifacts = tempfile::tempdir().unwrap();
    let extra = format!(
        "[policy]\ncomponent_roots = [{:?}]\n[scheduler]\nmax_concurrent_jobs = 2\n",
        test_guest_dir().display().to_string()
    );
    let node = NodeProcess::start_agent(&cp.url(), "w-hb", &config(artifacts.path(), &extra)).await;
    let client = reqwest::Client::new();
    for id in ["spin1", "spin2"] {
        let r = client
            .post(node.at("/jobs"))
            .json(&wasm_job(
                id,
                "hostile",
                json!({"action": "spin", "ms": 8000}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let from = Instant::now();
    for id in ["spin1", "spin2"] {
        assert_eq!(
            wait_terminal(&client, &node, id, WAIT).await["state"],
            "finished"
        );
    }
    let beats: Vec<Instant> = cp
        .heartbeats("w-hb")
        .into_iter()
        .filter(|t| *t >= from)
        .collect();
    assert!(
        beats.len() >= 6,
        "{} heartbeats in {:?}",
        beats.len(),
        from.elapsed()
    );
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap <= Duration::from_secs(2),
            "a heartbeat came {gap:?} after the previous one (interval 1 s)"
        );
    }
}

#[tokio::test]
async fn a_bad_token_is_a_clear_log_line_not_a_crash_loop_and_forgotten_workers_re_register() {
    let cp = TestControlPlane::start().await;
    cp.require_token("right");
    let artifacts = tempfile::tempdir().unwrap();
    let mut bad = NodeProcess::start_agent(
        &cp.url(),
        "w-bad",
        &config(artifacts.path(), "token = \"wrong\"\n"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while !bad.log().contains("refused our token") {
        assert!(Instant::now() < deadline, "{}", bad.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Backoff, not a hot loop: few attempts over the next seconds.
    let (first, since) = (cp.unauthorized(), Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let attempts = cp.unauthorized() - first;
    assert!(
        attempts <= 8,
        "{attempts} attempts in {:?}",
        since.elapsed()
    );
    assert!(cp.registrations().is_empty());
    bad.signal("TERM");
    assert_eq!(
        bad.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "still alive and stops cleanly"
    );
    assert!(!bad.log().contains("panicked"), "{}", bad.log());

    let good = NodeProcess::start_agent(
        &cp.url(),
        "w-good",
        &config(artifacts.path(), "token = \"right\"\n"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while !cp.registrations().contains_key("w-good") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cp.forget_workers();
    while !cp.registrations().contains_key("w-good") {
        assert!(
            Instant::now() < deadline,
            "the worker registers again after a 404; log:\n{}",
            good.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cp.submit([TaskDef::new(
        "g",
        "g1",
        "aggregation",
        json!({"items_json": "[{\"a\":1}]"}),
    )]);
    cp.wait_done(1, WAIT).await;
    assert_eq!(cp.completed()["g1"].worker_id, "w-good");
}

#[tokio::test]
async fn the_node_registers_again_when_what_it_offers_changes() {
    let cp = TestControlPlane::start().await;
    let artifacts = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let extra = format!(
        "refresh_seconds = 1\n[llm]\nmodel_cache_dir = {:?}\n",
        models.path().display().to_string()
    );
    let node =
        NodeProcess::start_agent(&cp.url(), "w-refresh", &config(artifacts.path(), &extra)).await;
    let registered_models = || {
        cp.registrations()
            .get("w-refresh")
            .map(|r| r["models"].clone())
    };
    let deadline = Instant::now() + WAIT;
    while registered_models().is_none() {
        assert!(Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered_models(), Some(json!([])));

    // A model lands in the cache (as a finished model_download would leave it).
    std::fs::create_dir_all(models.path().join("org/tiny")).unwrap();
    std::fs::write(models.path().join("org/tiny/model.gguf"), b"GGUF").unwrap();
    while registered_models() != Some(json!(["org/tiny/model.gguf"])) {
        assert!(
            Instant::now() < deadline,
            "registered again with the new model; got {:?}; log:\n{}",
            registered_models(),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.log().contains("registering again"), "{}", node.log());
}

#[tokio::test]
async fn a_slow_control_plane_with_short_leases_gets_every_task_done_without_a_retry_storm() {
    let cp = TestControlPlane::start().await;
    cp.set_timing(1, Duration::from_secs(3));
    cp.fixed_term_leases();
    cp.set_latency(Duration::from_millis(300));
    let artifacts = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_agent(
        &cp.url(),
        "w-slow",
        &config(
            artifacts.path(),
            "max_parallel_tasks = 4\nlease_seconds = 3\n",
        ),
    )
    .await;
    let tasks = 40;
    cp.submit((0..tasks).map(|i| {
        TaskDef::new(
            "s",
            &format!("s{i:02}"),
            "aggregation",
            json!({"items_json": format!("[{{\"i\":{i}}}]")}),
        )
    }));
    cp.wait_done(tasks, Duration::from_secs(300)).await;
    assert_eq!(cp.completed().len(), tasks, "failed: {:?}", cp.failed());
    let jobs: Value = node.get_json("/jobs?limit=1000").await;
    for i in 0..tasks {
        let prefix = format!("splai-s-s{i:02}-");
        let runs: u64 = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["job_id"].as_str().unwrap().starts_with(&prefix))
            .map(|j| j["attempts"].as_u64().unwrap())
            .sum();
        assert!(runs <= 2, "task s{i:02} ran {runs} times");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let health: Value = node.get_json("/health").await;
        if health["control_plane"]["pending_reports"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "reports left behind: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_assignment_whose_lease_ran_out_before_it_could_start_is_not_started() {
    let cp = TestControlPlane::start().await;
    cp.set_timing(1, Duration::from_secs(2));
    cp.fixed_term_leases();
    let artifacts = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let extra = format!(
        "lease_seconds = 2\n{}",
        gate.policy("[scheduler]\nmax_concurrent_jobs = 1\n")
    );
    let node =
        NodeProcess::start_agent(&cp.url(), "w-lease", &config(artifacts.path(), &extra)).await;
    let client = reqwest::Client::new();
    let r = client
        .post(node.at("/jobs"))
        .json(&gate.job("hold"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_state(&node, "hold", "running").await;
    let deadline = Instant::now() + WAIT;
    cp.submit([TaskDef::new(
        "l",
        "l1",
        "aggregation",
        json!({"items_json": "[{\"a\":1}]"}),
    )]);
    while node.get_json("/jobs/splai-l-l1-a1").await["state"] != "queued" {
        assert!(Instant::now() < deadline, "the assignment never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !cp.lease_expired("l1") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.open();
    cp.wait_done(1, WAIT).await;
    let stale: Value = node.get_json("/jobs/splai-l-l1-a1").await;
    assert_eq!(
        (
            stale["state"].as_str(),
            stale["error_code"].as_str(),
            stale["attempts"].as_u64()
        ),
        (Some("cancelled"), Some("EXPIRED"), Some(0)),
        "{stale}"
    );
    let report = &cp.completed()["l1"];
    assert!(report.idempotency_key.ends_with(":l1:2"), "{report:?}");
    assert!(
        cp.reports()
            .iter()
            .all(|r| !r.idempotency_key.contains(":l1:1")),
        "nothing was reported under the expired lease"
    );
}

#[tokio::test]
async fn a_task_handed_out_again_after_the_node_finished_it_gets_the_stored_result() {
    let cp = TestControlPlane::start().await;
    cp.set_timing(1, Duration::from_secs(2));
    cp.fixed_term_leases();
    cp.refuse_reports(true);
    let artifacts = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_agent(
        &cp.url(),
        "w-again",
        &config(artifacts.path(), "max_parallel_tasks = 4\n"),
    )
    .await;
    cp.submit([TaskDef::new(
        "r",
        "r1",
        "aggregation",
        json!({"items_json": "[{\"once\":true}]"}),
    )]);
    let deadline = Instant::now() + WAIT;
    while node.get_json("/jobs/splai-r-r1-a1").await["state"] != "finished" {
        assert!(Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its reports are refused until the lease has run out and the task was
    // handed out again: the node then owes a Completed under each lease.
    while node.get_json("/health").await["control_plane"]["pending_reports"] != 3 {
        assert!(Instant::now() < deadline, "{}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cp.refuse_reports(false);
    // The node delivers a job's reports one at a time, so the Completed
    // under the new lease arrives after the one under the old.
    let completed_leases = || -> Vec<String> {
        cp.reports()
            .iter()
            .filter(|r| r.status == "Completed")
            .map(|r| r.lease_id.clone())
            .collect()
    };
    while !completed_leases().contains(&"lease-2".to_string()) {
        assert!(Instant::now() < deadline, "{:?}", completed_leases());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again: Value = node.get_json("/jobs/splai-r-r1-a2").await;
    assert_eq!(
        again["error"]["code"], "JOB_NOT_FOUND",
        "not run again: {again}"
    );
    let first: Value = node.get_json("/jobs/splai-r-r1-a1").await;
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["via"], "splai", "the front door is recorded: {first}");
    assert!(
        node.log().contains("already finished was handed out again"),
        "{}",
        node.log()
    );
}
