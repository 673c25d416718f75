//! The local job API against the real binary on 127.0.0.1: Job Protocol v1,
//! the extensions, durability across `kill -9`, drain, auth and limits.

use futures::StreamExt;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use wasmnode_e2e::{Gate, NodeProcess, test_guest_dir, wait_state, wait_terminal, wasm_job};

fn guests_allowed(extra: &str) -> String {
    format!(
        "[policy]\ncomponent_roots = [{:?}]\n{extra}",
        test_guest_dir().display().to_string()
    )
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn submit_poll_and_fetch_results_for_wasm_and_splai_jobs() {
    let node = NodeProcess::start(&guests_allowed("")).await;
    let client = reqwest::Client::new();
    let docs = json!([{"id": "a", "text": "wasm components run sandboxed"}, {"id": "b", "text": "docker images"}]).to_string();
    let jobs = [
        (
            "w",
            wasm_job(
                "w",
                "builtin:retrieval",
                json!({"query": "sandboxed wasm", "documents_json": docs}),
            ),
        ),
        (
            "r",
            json!({"protocol_version": 1, "job_id": "r", "task": {"type": "retrieval", "payload": {"query": "docker", "documents_json": docs}}, "runtime": {"mode": "wasm"}}),
        ),
        (
            "a",
            json!({"protocol_version": 1, "job_id": "a", "task": {"type": "aggregation", "payload": {"items_json": "[{\"x\":1},{\"y\":2}]"}}, "runtime": {"mode": "auto"}}),
        ),
        (
            "t",
            json!({"protocol_version": 1, "job_id": "t", "task": {"type": "tool_execution", "payload": {"tool": "file_write", "path": "/workspace/a.txt", "content": "hi"}}, "runtime": {"mode": "auto"}}),
        ),
    ];
    for (id, job) in &jobs {
        let (status, body) = node.post_json("/jobs", job).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"accepted": true, "job_id": id, "state": "queued"})
        );
    }
    for (id, _) in &jobs {
        let job = wait_terminal(&client, &node, id, WAIT).await;
        assert_eq!(job["state"], "finished", "{job}");
        assert_eq!(job["via"], "api", "the front door is recorded: {job}");
    }
    let get = |id: &'static str| {
        let client = client.clone();
        let url = node.at(&format!("/jobs/{id}/result"));
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("w").await["documents"][0]["id"], "a");
    assert_eq!(get("r").await["documents"][0]["id"], "b");
    assert_eq!(get("a").await["report"], json!({"x": 1, "y": 2}));
    assert_eq!(get("t").await["bytes_written"], 2);

    let sync = wasm_job(
        "sync",
        "builtin:aggregation",
        json!({"items_json": "[{\"z\":9}]"}),
    );
    let answer: Value = client
        .post(node.at("/jobs?wait=30"))
        .json(&sync)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (answer["accepted"].as_bool(), answer["state"].as_str()),
        (Some(true), Some("finished")),
        "{answer}"
    );
    assert_eq!(get("sync").await["report"]["z"], 9);
    assert_eq!(
        answer["result"]["report"]["z"], 9,
        "a waited-for job's answer holds its result: {answer}"
    );
    let bad = client
        .post(node.at("/jobs?wait=soon"))
        .json(&sync)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let list: Value = node.get_json("/jobs?state=finished&limit=2").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_u64().unwrap();
    let rest: Value = node
        .get_json(&format!("/jobs?state=finished&cursor={cursor}"))
        .await;
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 3);
    assert!(rest["next_cursor"].is_null());

    let newest: Value = node.get_json("/jobs?order=desc&limit=1").await;
    assert_eq!(newest["jobs"][0]["job_id"], "sync", "{newest}");
    let typed: Value = node.get_json("/jobs?type=aggregation").await;
    let ids: Vec<&str> = typed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a"], "{typed}");
    let by_door: Value = node.get_json("/jobs?origin=mcp").await;
    assert!(by_door["jobs"].as_array().unwrap().is_empty(), "{by_door}");
    let api: Value = node.get_json("/jobs?via=api").await;
    let all: Value = node.get_json("/jobs").await;
    assert_eq!(
        api["jobs"], all["jobs"],
        "every job here came through the API"
    );
    for bad in ["/jobs?limit=0", "/jobs?order=sideways"] {
        let status = reqwest::get(node.at(bad)).await.unwrap().status();
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn a_job_calls_a_plain_function_with_its_payload_as_arguments() {
    let node = NodeProcess::start(&guests_allowed("")).await;
    let client = reqwest::Client::new();
    let call = |id: &str, payload: Value| {
        let mut job = wasm_job(id, "functions", payload);
        job["runtime"]["function"] = json!("test:functions/shapes#area");
        job
    };
    let (status, body) = node
        .post_json(
            "/jobs?wait=30",
            &call("area", json!({"s": {"rect": [2, 5]}})),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("finished")),
        "{body}"
    );
    assert_eq!(node.get_json("/jobs/area/result").await, json!(10.0));

    let (status, _) = node
        .post_json("/jobs", &call("hexagon", json!({"s": "hexagon"})))
        .await;
    assert_eq!(status, 200);
    let ended = wait_terminal(&client, &node, "hexagon", WAIT).await;
    assert_eq!(ended["error_code"], "INVALID_INPUT", "{ended}");
}

#[tokio::test]
async fn a_failed_job_keeps_its_metrics() {
    let node = NodeProcess::start(&guests_allowed("")).await;
    let client = reqwest::Client::new();
    let mut greedy = wasm_job("greedy", "hostile", json!({"action": "alloc", "mb": 1024}));
    greedy["runtime"]["limits"] = json!({"memory_mb": 32});
    assert_eq!(node.post_json("/jobs", &greedy).await.0, 200);
    let ended = wait_terminal(&client, &node, "greedy", WAIT).await;
    assert_eq!(ended["error_code"], "MEMORY_EXCEEDED", "{ended}");
    let peak = ended["metrics"]["peak_memory_bytes"]
        .as_u64()
        .unwrap_or_default();
    assert!(peak >= 16 << 20, "the guest's peak memory is kept: {ended}");
    assert!(
        ended["metrics"]["wall_time_ms"].as_f64().unwrap() > 0.0,
        "{ended}"
    );

    let mut refused = wasm_job("refused", "functions", json!({"s": "hexagon"}));
    refused["runtime"]["function"] = json!("test:functions/shapes#area");
    assert_eq!(node.post_json("/jobs", &refused).await.0, 200);
    let ended = wait_terminal(&client, &node, "refused", WAIT).await;
    assert_eq!(ended["error_code"], "INVALID_INPUT", "{ended}");
    assert!(
        ended["metrics"]["wall_time_ms"].is_number(),
        "a failure before the guest ran keeps its time: {ended}"
    );
}

#[tokio::test]
async fn events_stream_state_changes_and_output_in_order() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy("[scheduler]\nmax_concurrent_jobs = 1\n")).await;
    // A blocker keeps the slot busy so the followed job is still queued when we subscribe.
    node.post_json("/jobs", &gate.job("blocker")).await;
    node.post_json(
        "/jobs",
        &wasm_job(
            "talker",
            "hostile",
            json!({"action": "print", "stdout": "hello out", "stderr": "hello err"}),
        ),
    )
    .await;
    // The blocker goes once the first event (queued) came.
    let events = node.job_events("talker", Some(&gate)).await;
    let body = format!("{events:?}");
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let states: Vec<&str> = events
        .iter()
        .filter_map(|(_, v)| v["state"].as_str())
        .collect();
    assert_eq!(states, ["queued", "running", "finished"], "{body}");
    assert_eq!(names.last(), Some(&"end"));
    let running = events
        .iter()
        .position(|(_, v)| v["state"] == "running")
        .unwrap();
    let stdout = names
        .iter()
        .position(|n| *n == "stdout")
        .expect("stdout event");
    let finished = events
        .iter()
        .position(|(_, v)| v["state"] == "finished")
        .unwrap();
    assert!(running < stdout && stdout < finished, "{names:?}");
    let out: String = events
        .iter()
        .filter(|(n, _)| n == "stdout")
        .map(|(_, v)| v["data"].as_str().unwrap())
        .collect();
    assert_eq!(out, "hello out\n");
}

#[tokio::test]
async fn a_thousand_concurrent_jobs_with_two_slots_all_finish_once() {
    let node = NodeProcess::start("[scheduler]\nmax_concurrent_jobs = 2\n").await;
    let client = reqwest::Client::new();
    let submits = (0..1000).map(|i| {
        let client = client.clone();
        let url = node.at("/jobs");
        async move {
            let job = json!({"protocol_version": 1, "job_id": format!("bulk-{i}"),
                "task": {"type": "aggregation", "payload": {"items_json": format!("[{{\"i\":{i}}}]")}},
                "runtime": {"mode": "auto"}});
            let r = client.post(url).json(&job).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    futures::stream::iter(submits)
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let mut intervals = Vec::new();
    for i in 0..1000 {
        let job = wait_terminal(&client, &node, &format!("bulk-{i}"), WAIT).await;
        assert_eq!(job["state"], "finished", "{job}");
        assert_eq!(job["attempts"], 1, "a job never starts twice");
        let ms = |k: &str| humantime_ms(job[k].as_str().unwrap());
        intervals.push((ms("started_at"), ms("finished_at")));
    }
    // Sweep: at no instant were more than two jobs between start and finish.
    let mut points: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|(s, f)| [(*s, 1), (*f, -1)])
        .collect();
    points.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in points {
        now += d;
        peak = peak.max(now);
    }
    assert!(peak <= 2, "{peak} jobs ran at once");
    // A job's counters move just after its result is stored, so the last
    // few may lag the job API for a moment.
    let counted =
        "wasmnode_jobs_completed_total{state=\"finished\",task_type=\"aggregation\"} 1000";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let metrics = node.get_text("/metrics").await;
        if metrics.contains(counted) && metrics.contains("wasmnode_jobs_running 0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn humantime_ms(rfc3339: &str) -> u64 {
    // "2026-11-24T06:10:12.347Z": compare within one run, so seconds of the day suffice.
    let time = rfc3339.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: u64 = parts.next().unwrap().parse().unwrap();
    let m: u64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as u64
}

#[tokio::test]
async fn queue_full_oversized_bad_version_unknown_and_duplicates_are_refused_clearly() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy(
        "[scheduler]\nmax_concurrent_jobs = 1\nqueue_capacity = 1\n[api]\nmax_body_bytes = 4096\n",
    ))
    .await;
    let client = reqwest::Client::new();
    let sleeper = |id: &str| gate.job(id);
    assert_eq!(node.post_json("/jobs", &sleeper("s1")).await.0, 200);
    // Wait until s1 runs so the queue is empty again, then fill it.
    wait_state(&node, "s1", "running").await;
    assert_eq!(node.post_json("/jobs", &sleeper("s2")).await.0, 200);
    let r = client
        .post(node.at("/jobs"))
        .json(&sleeper("s3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["accepted"].clone(),
            body["state"].clone(),
            body["error"]["code"].clone()
        ),
        (json!(false), json!("rejected"), json!("QUEUE_FULL"))
    );

    let big = json!({"protocol_version": 1, "job_id": "big", "task": {"type": "retrieval", "payload": {"query": "x".repeat(8000)}}, "runtime": {"mode": "wasm"}});
    let (status, body) = node.post_json("/jobs", &big).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("BODY_TOO_LARGE"))
    );

    let (status, body) = node.post_json("/jobs", &json!({"protocol_version": 7, "job_id": "v", "task": {"type": "x"}, "runtime": {"mode": "wasm"}})).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["job_id"].as_str()
        ),
        (400, Some("BAD_PROTOCOL_VERSION"), Some("v"))
    );
    let (status, body) = node.post_json("/jobs", &json!({"protocol_version": 1, "job_id": "m", "task": {"type": "x"}, "runtime": {"mode": "vm"}})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BAD_RUNTIME_MODE"))
    );
    let (status, body) = node
        .post_json(
            "/jobs",
            &json!({"protocol_version": 1, "job_id": "p", "task": {"type": "x"},
        "runtime": {"mode": "wasm", "component": "/etc/passwd"}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("POLICY_DENIED"))
    );
    let r = client
        .post(node.at("/jobs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = client.get(node.at("/jobs/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "JOB_NOT_FOUND"
    );
    assert_eq!(
        client
            .delete(node.at("/jobs/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(node.at("/no/such/route"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let (status, body) = node.post_json("/jobs", &sleeper("s1")).await;
    assert_eq!(
        (status, body["accepted"].as_bool()),
        (200, Some(true)),
        "same request again is idempotent: {body}"
    );
    let mut changed = sleeper("s1");
    changed["task"]["payload"]["until"] = json!("/gate/other");
    let (status, body) = node.post_json("/jobs", &changed).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("DUPLICATE_JOB_ID"))
    );

    let r: Value = client
        .delete(node.at("/jobs/s2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["state"], "cancelled");
    let r: Value = client
        .delete(node.at("/jobs/s1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"job_id": "s1", "state": "running", "note": "Cancellation requested"})
    );
    let job = wait_terminal(&client, &node, "s1", WAIT).await;
    assert_eq!(job["state"], "cancelled");
}

#[tokio::test]
async fn kill_dash_nine_keeps_finished_results_reruns_queued_and_fails_interrupted_jobs() {
    let gate = Gate::new();
    let mut node = NodeProcess::start(&gate.policy("[scheduler]\nmax_concurrent_jobs = 1\n")).await;
    let client = reqwest::Client::new();
    node.post_json(
        "/jobs",
        &wasm_job("done", "hostile", json!({"action": "echo", "v": 1})),
    )
    .await;
    assert_eq!(
        wait_terminal(&client, &node, "done", WAIT).await["state"],
        "finished"
    );
    node.post_json("/jobs", &gate.job("long")).await;
    let mut again = wasm_job("again", "hostile", json!({"action": "sleep", "ms": 500}));
    again["idempotent"] = json!(true);
    node.post_json("/jobs", &again).await;
    node.post_json(
        "/jobs",
        &wasm_job("waiting", "hostile", json!({"action": "echo", "v": 2})),
    )
    .await;
    wait_state(&node, "long", "running").await;

    node.crash_and_restart().await;

    let long = wait_terminal(&client, &node, "long", WAIT).await;
    assert_eq!(
        (long["state"].as_str(), long["error"]["code"].as_str()),
        (Some("failed"), Some("INTERRUPTED")),
        "{long}"
    );
    assert_eq!(
        wait_terminal(&client, &node, "again", WAIT).await["state"],
        "finished"
    );
    assert_eq!(
        wait_terminal(&client, &node, "waiting", WAIT).await["state"],
        "finished"
    );
    let done: Value = node.get_json("/jobs/done/result").await;
    assert_eq!(done["v"], 1, "finished results survive");
}

#[tokio::test]
async fn an_idempotent_job_running_at_the_crash_runs_again() {
    let gate = Gate::new();
    let mut node = NodeProcess::start(&gate.policy("")).await;
    let client = reqwest::Client::new();
    let mut job = gate.job("rerun");
    job["idempotent"] = json!(true);
    node.post_json("/jobs", &job).await;
    wait_state(&node, "rerun", "running").await;
    node.crash_and_restart().await;
    gate.open();
    let done = wait_terminal(&client, &node, "rerun", WAIT).await;
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_u64()),
        (Some("finished"), Some(2)),
        "{done}"
    );
}

#[tokio::test]
async fn drain_finishes_running_jobs_and_refuses_new_ones() {
    let gate = Gate::new();
    let mut node = NodeProcess::start(
        &gate.policy("[scheduler]\nmax_concurrent_jobs = 1\ndrain_timeout_seconds = 60\n"),
    )
    .await;
    let client = reqwest::Client::new();
    node.post_json("/jobs", &gate.job("runner")).await;
    node.post_json(
        "/jobs",
        &wasm_job("queued", "hostile", json!({"action": "echo"})),
    )
    .await;
    wait_state(&node, "runner", "running").await;
    node.signal("TERM");
    let deadline = std::time::Instant::now() + WAIT;
    while node.get_json("/health").await["status"] != "draining" {
        assert!(std::time::Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = node
        .post_json(
            "/jobs",
            &wasm_job("late", "hostile", json!({"action": "echo"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("DRAINING"))
    );
    // The running job may finish during the drain.
    gate.open();
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    let log = node.log();
    assert!(
        log.contains("stopped") && !log.contains("panicked"),
        "a clean stop: {log}"
    );

    node.restart().await;
    let runner: Value = node.get_json("/jobs/runner").await;
    assert_eq!(
        runner["state"], "finished",
        "the running job finished during the drain: {runner}"
    );
    assert_eq!(
        wait_terminal(&client, &node, "queued", WAIT).await["state"],
        "finished",
        "queued work survives a drain"
    );
}

#[tokio::test]
async fn api_key_is_required_except_for_health() {
    let node = NodeProcess::start("[api]\napi_key = \"s3cret-key\"\n").await;
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(node.at("/info")).send().await.unwrap().status(),
        401
    );
    let wrong = client
        .get(node.at("/info"))
        .header("X-API-Key", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "UNAUTHORIZED"
    );
    assert_eq!(
        client
            .get(node.at("/info"))
            .header("X-API-Key", "s3cret-key")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(node.at("/info"))
            .bearer_auth("s3cret-key")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .post(node.at("/jobs"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(node.at("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn wasmnode_drain_drains_the_node_and_returns_once_it_has_stopped() {
    let mut node = NodeProcess::start("").await;
    let url = node.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        wasmnode_e2e::wasmnode(dir.path(), &["drain", "--url", &url])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", wasmnode_e2e::stderr(&out));
    assert_eq!(node.wait_exit(Duration::from_secs(30)).await, Some(0));
    assert!(node.log().contains("POST /drain"), "{}", node.log());

    let dir = tempfile::tempdir().unwrap();
    let url = node.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        wasmnode_e2e::wasmnode(dir.path(), &["drain", "--url", &url])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "no node: exit 1");
    assert!(wasmnode_e2e::stderr(&out).contains("no node answers"));
}

#[tokio::test]
async fn dashboards_read_os_cpu_memory_disks_and_temperature_with_cors_from_a_flag() {
    let sysfs = tempfile::tempdir().unwrap();
    let zone = sysfs.path().join("class/thermal/thermal_zone0");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("temp"), "42000\n").unwrap();
    let config = format!("[node]\nsysfs_root = {:?}\n", sysfs.path());
    let node = NodeProcess::start_command(
        &["serve", "--cors-origin", "http://cluster.example"],
        &config,
    )
    .await;
    let info: Value = node.get_json("/info").await;
    assert_eq!(info["arch"], std::env::consts::ARCH);
    assert!(info["os"].as_str().unwrap().contains("Linux"), "{info}");
    let machine = Command::new("uname").arg("-m").output().unwrap();
    assert_eq!(
        info["os_architecture"],
        String::from_utf8_lossy(&machine.stdout).trim()
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model = info["cpu_model"].as_str().unwrap();
    assert!(cpuinfo.contains(model), "{model} is not in /proc/cpuinfo");

    let health: Value = node.get_json("/health").await;
    assert_eq!(health["temperature_c"], 42.0, "{health}");
    assert_eq!(
        health["cpu_threads"],
        std::thread::available_parallelism().unwrap().get()
    );
    let total = health["memory_total_mb"].as_u64().unwrap();
    let available = health["memory_available_mb"].as_u64().unwrap();
    assert!(available > 0 && available <= total && total == info["memory_mb"]);
    assert_eq!(health["jobs_path"], node.data_dir.path().to_str().unwrap());
    let disk_total = health["jobs_disk_total_mb"].as_u64().unwrap();
    assert!(disk_total >= health["jobs_disk_available_mb"].as_u64().unwrap());

    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, node.at("/info"))
        .header("Origin", "http://cluster.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://cluster.example"
    );
}

#[tokio::test]
async fn info_health_cors_and_metrics() {
    let node = NodeProcess::start(
        "[api]\ncors_origins = [\"http://dashboard.example\"]\n[node]\nlabels = [\"edge\"]\n",
    )
    .await;
    let client = reqwest::Client::new();
    let info: Value = node.get_json("/info").await;
    assert_eq!(info["protocol_version"], 1);
    assert_eq!(info["labels"], json!(["edge"]));
    assert!(info["memory_mb"].as_u64().unwrap() > 0);
    let health: Value = node.get_json("/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["load_average"].as_array().unwrap().len(), 3);
    let preflight = client
        .request(reqwest::Method::OPTIONS, node.at("/jobs"))
        .header("Origin", "http://dashboard.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://dashboard.example"
    );
    let metrics = client
        .get(node.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE wasmnode_queue_depth gauge"),
        "{metrics}"
    );
}

#[tokio::test]
async fn task_types_list_their_inputs_and_tools_their_argument_schemas() {
    let node = NodeProcess::start("").await;
    let catalog = node.get_json("/task-types").await;
    let types = catalog["task_types"].as_array().unwrap();
    let info = node.get_json("/info").await;
    let names: Vec<&Value> = types.iter().map(|t| &t["name"]).collect();
    let known: Vec<&Value> = info["task_types"].as_array().unwrap().iter().collect();
    assert_eq!(names, known, "every task type /info names, and no other");
    let retrieval = types.iter().find(|t| t["name"] == "retrieval").unwrap();
    let query = &retrieval["inputs"][0];
    assert_eq!(
        (&query["name"], &query["kind"], &query["required"]),
        (&json!("query"), &json!("text"), &json!(true)),
        "{retrieval}"
    );

    let tools = node.get_json("/tools").await;
    let listed = tools["tools"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        info["tools"].as_array().unwrap().len(),
        "{tools}"
    );
    let write = listed.iter().find(|t| t["name"] == "file_write").unwrap();
    assert_eq!(write["kind"], "component");
    assert!(write["description"].as_str().unwrap().len() > 10, "{write}");
    assert_eq!(write["args_schema"]["properties"]["path"]["type"], "string");
    assert_eq!(write["writes"], true);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_needs_no_key() {
    let node = NodeProcess::start("[api]\napi_key = \"k3y\"\n").await;
    let response = reqwest::get(node.at("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200, "the description is public");
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/info", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/metrics/history", "get"),
        ("/jobs", "get"),
        ("/jobs", "post"),
        ("/jobs/{id}", "get"),
        ("/jobs/{id}", "delete"),
        ("/jobs/{id}/result", "get"),
        ("/jobs/{id}/request", "get"),
        ("/jobs/{id}/receipt", "get"),
        ("/jobs/{id}/events", "get"),
        ("/jobs/{id}/files", "get"),
        ("/jobs/{id}/files/{path}", "get"),
        ("/usage", "get"),
        ("/task-types", "get"),
        ("/tools", "get"),
        ("/drain", "post"),
        ("/blobs", "put"),
        ("/blobs/{hash}", "get"),
        ("/execute", "post"),
        ("/task/{id}/status", "get"),
        ("/task/{id}/result", "get"),
        ("/task/{id}", "delete"),
    ];
    let paths = document["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len(), "{:?}", paths.keys());
    for (path, method) in routes {
        assert!(
            paths[path][method]["responses"].is_object(),
            "{method} {path} is not described"
        );
    }
    let submit = &paths["/jobs"]["post"];
    assert_eq!(
        submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobRequest"
    );
    let job = &document["components"]["schemas"]["JobRequest"];
    assert!(
        job["required"]
            .as_array()
            .unwrap()
            .contains(&json!("job_id"))
    );
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
}
