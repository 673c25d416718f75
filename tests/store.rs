//! The job store against the real binary: what is accepted reads back at
//! the nesting limit, one id never becomes two jobs, a full disk degrades
//! the node and it heals without a restart, a damaged file is a clear error
//! (exit status 2) that `wasmnode store repair` mends, and the queue's byte
//! cap and the disk-space floor refuse new work with their own codes.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wasmnode_e2e::{Gate, NodeProcess, test_guest_dir, wait_state, wait_terminal, wasm_job};

const WAIT: Duration = Duration::from_secs(120);

fn guests_allowed(extra: &str) -> String {
    format!(
        "[policy]\ncomponent_roots = [{:?}]\n{extra}",
        test_guest_dir().display().to_string()
    )
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[tokio::test]
async fn what_is_accepted_reads_back_at_the_nesting_limits() {
    let mut node = NodeProcess::start(&guests_allowed("")).await;
    let client = reqwest::Client::new();
    // The payload object is one level, its `deep` field the other 63.
    let at_limit = wasm_job(
        "p64",
        "builtin:aggregation",
        json!({"items_json": "[]", "deep": nested(63)}),
    );
    let (status, body) = node.post_json("/jobs", &at_limit).await;
    assert_eq!(status, 200, "{body}");
    let too_deep = wasm_job(
        "p65",
        "builtin:aggregation",
        json!({"items_json": "[]", "deep": nested(64)}),
    );
    let (status, body) = node.post_json("/jobs", &too_deep).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_JOB")),
        "{body}"
    );

    // The deepest output the JSON parser accepts from a guest.
    let deepest = (1..200)
        .take_while(|n| serde_json::from_str::<Value>(&("[".repeat(*n) + &"]".repeat(*n))).is_ok())
        .last()
        .unwrap() as u64;
    let deep_out = wasm_job(
        "o-deep",
        "hostile",
        json!({"action": "deep", "depth": deepest}),
    );
    assert_eq!(node.post_json("/jobs", &deep_out).await.0, 200);
    for id in ["p64", "o-deep"] {
        let done = wait_terminal(&client, &node, id, WAIT).await;
        assert_eq!(done["state"], "finished", "{done}");
    }
    node.crash_and_restart().await;
    assert_eq!(node.get_json("/jobs/p64").await["state"], "finished");
    let served = node.get_text("/jobs/o-deep/result").await;
    let expected = "[".repeat(deepest as usize) + &"]".repeat(deepest as usize);
    assert_eq!(
        served, expected,
        "the output is served as the guest produced it"
    );
}

#[tokio::test]
async fn two_documents_under_one_id_never_both_become_jobs() {
    let node = NodeProcess::start("").await;
    let client = reqwest::Client::new();
    let doc = |id: &str, who: &str| {
        wasm_job(
            id,
            "builtin:aggregation",
            json!({"items_json": format!("[{{\"who\":\"{who}\"}}]")}),
        )
    };
    let mut winners = Vec::new();
    for round in 0..200 {
        let id = format!("race-{round}");
        let (doc_a, doc_b) = (doc(&id, "a"), doc(&id, "b"));
        let (a, b) = tokio::join!(
            node.post_json("/jobs", &doc_a),
            node.post_json("/jobs", &doc_b)
        );
        let mut codes = [a.0, b.0];
        codes.sort();
        assert_eq!(codes, [200, 409], "round {round}: {a:?} {b:?}");
        winners.push((id, if a.0 == 200 { "a" } else { "b" }));
    }
    for (id, who) in winners {
        let done = wait_terminal(&client, &node, &id, WAIT).await;
        assert_eq!(done["state"], "finished", "{done}");
        let result: Value = node.get_json(&format!("/jobs/{id}/result")).await;
        assert_eq!(
            result["report"]["who"], who,
            "{id} ran the document it acknowledged"
        );
    }
}

#[tokio::test]
async fn a_full_disk_degrades_the_node_and_it_heals_without_a_restart() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy("")).await;
    let client = reqwest::Client::new();
    assert_eq!(node.post_json("/jobs", &gate.job("during")).await.0, 200);
    wait_state(&node, "during", "running").await;

    // The store may not grow any more: every write that needs room fails.
    let size = std::fs::metadata(node.data_dir.path().join("jobs.redb"))
        .unwrap()
        .len();
    node.set_limit(&format!("--fsize={size}:"));
    let pad = "x".repeat(1 << 20);
    let mut refused = None;
    for i in 0..64 {
        let job = wasm_job(
            &format!("fill-{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]", "pad": pad}),
        );
        let (status, body) = node.post_json("/jobs", &job).await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("a write past the limit was refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("STORE_UNAVAILABLE")),
        "{body}"
    );
    let health = node.get_json("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");

    // The running job ends while nothing can be written: its result is kept.
    gate.open();
    let (status, _) = node
        .post_json(
            "/jobs",
            &wasm_job(
                "refused",
                "builtin:aggregation",
                json!({"items_json": "[]"}),
            ),
        )
        .await;
    assert_eq!(status, 503);

    node.set_limit("--fsize=unlimited:");
    let deadline = Instant::now() + WAIT;
    while node.get_json("/health").await["status"] != "ok" {
        assert!(
            Instant::now() < deadline,
            "never healed; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = wait_terminal(&client, &node, "during", WAIT).await;
    assert_eq!(
        during["state"], "finished",
        "the result written once it could be: {during}"
    );
    assert_eq!(
        node.post_json(
            "/jobs",
            &wasm_job("after", "builtin:aggregation", json!({"items_json": "[]"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        wait_terminal(&client, &node, "after", WAIT).await["state"],
        "finished"
    );
}

/// Runs `wasmnode ARGS` on `data_dir` to its end (at most `WAIT`).
fn run_wasmnode(data_dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(wasmnode_e2e::binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WASMNODE_CONFIG")
        .env("WASMNODE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasmnode {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn a_damaged_store_is_a_clear_error_with_status_2_and_store_repair_brings_the_node_back() {
    let mut node = NodeProcess::start("").await;
    let client = reqwest::Client::new();
    for i in 0..30 {
        let job = wasm_job(
            &format!("j{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]"}),
        );
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    }
    wait_terminal(&client, &node, "j29", WAIT).await;
    node.signal("TERM");
    assert_eq!(node.wait_exit(WAIT).await, Some(0));
    let store = node.data_dir.path().join("jobs.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    for page in (2..bytes.len() / 4096).step_by(3) {
        bytes[page * 4096] = 0xAA;
    }
    std::fs::write(&store, bytes).unwrap();

    let (status, text) = run_wasmnode(node.data_dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(status, Some(2), "{text}");
    assert!(
        text.contains(&store.display().to_string()),
        "names the file: {text}"
    );
    assert!(
        text.contains("wasmnode store repair"),
        "says what to do: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    let (status, text) = run_wasmnode(node.data_dir.path(), &["store", "check"]);
    assert_eq!(status, Some(2), "{text}");

    let (status, text) = run_wasmnode(node.data_dir.path(), &["store", "repair"]);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("damaged file is kept at"), "{text}");
    let kept = std::fs::read_dir(node.data_dir.path())
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("jobs.redb.damaged-")
        });
    assert!(kept, "the damaged file was moved aside, not deleted");
    let (status, text) = run_wasmnode(node.data_dir.path(), &["store", "check"]);
    assert_eq!(status, Some(0), "{text}");

    node.restart().await;
    let job = wasm_job("again", "builtin:aggregation", json!({"items_json": "[]"}));
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    assert_eq!(
        wait_terminal(&client, &node, "again", WAIT).await["state"],
        "finished"
    );
}

#[tokio::test]
async fn the_queue_s_byte_cap_and_the_disk_floor_refuse_new_work() {
    let gate = Gate::new();
    let extra = "[scheduler]\nmax_concurrent_jobs = 1\nmax_queued_bytes = 300000\n";
    let node = NodeProcess::start(&gate.policy(extra)).await;
    let client = reqwest::Client::new();
    assert_eq!(node.post_json("/jobs", &gate.job("hold")).await.0, 200);
    wait_state(&node, "hold", "running").await;
    let pad = "x".repeat(100_000);
    let job = |i: usize| {
        wasm_job(
            &format!("q{i}"),
            "builtin:aggregation",
            json!({"items_json": "[]", "pad": pad}),
        )
    };
    for i in 0..2 {
        assert_eq!(node.post_json("/jobs", &job(i)).await.0, 200);
    }
    let r = client
        .post(node.at("/jobs"))
        .json(&job(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "QUEUE_FULL");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_queued_bytes"),
        "{body}"
    );
    let health = node.get_json("/health").await;
    assert!(
        health["queued_bytes"].as_u64().unwrap() > 200_000,
        "{health}"
    );
    gate.open();

    let floor = NodeProcess::start("[node]\nmin_free_disk_mb = 999999999\n").await;
    let r = client
        .post(floor.at("/jobs"))
        .json(&wasm_job(
            "f",
            "builtin:aggregation",
            json!({"items_json": "[]"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_STORAGE", "{body}");
    let health = floor.get_json("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
}
