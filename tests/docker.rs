//! Container jobs through the real node and the real Docker engine: image
//! jobs over the API, concurrency without leaks, the sweep after `kill -9`,
//! SPLAI command tasks in the sandbox image and tools mapped to images.

use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use wasmnode_e2e::{NodeProcess, wait_terminal};

const WAIT: Duration = Duration::from_secs(120);

/// The test images (built without a registry by `scripts/test-image.sh`).
fn image() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-image.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run test-image.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn config(worker: &str, extra: &str) -> String {
    image();
    format!(
        "[node]\nworker_id = \"{worker}\"\n[docker]\nmode = \"on\"\nallowed_images = [\"wasmnode-test/*\"]\n{extra}"
    )
}

fn image_job(id: &str, cmd: &[&str], payload: Value, seconds: f64) -> Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": "shell", "payload": payload},
        "runtime": {"mode": "image", "image": image(), "cmd": cmd, "limits": {"max_runtime_seconds": seconds}}})
}

/// Ids of the containers labelled for `worker`, running or not.
fn labelled_ids(worker: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.wasmnode.node={worker}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn labelled(worker: &str) -> usize {
    labelled_ids(worker).len()
}

#[tokio::test]
async fn image_jobs_return_stdout_stderr_and_exit_code() {
    let node = NodeProcess::start(&config("e2e-img", "")).await;
    let client = reqwest::Client::new();
    let info: Value = node.get_json("/info").await;
    assert_eq!(info["runtime_modes"], json!(["wasm", "image"]), "{info}");
    let health: Value = node.get_json("/health").await;
    let engine_root = Command::new("docker")
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .output()
        .unwrap();
    let engine_root = String::from_utf8_lossy(&engine_root.stdout)
        .trim()
        .to_string();
    assert_eq!(health["docker_root_dir"], engine_root.as_str(), "{health}");
    let total = health["docker_disk_total_mb"].as_u64().unwrap();
    assert!(total > 0 && total >= health["docker_disk_available_mb"].as_u64().unwrap());
    let job = image_job(
        "img",
        &["sh", "-c", "cat; echo err >&2; exit 2"],
        json!({"x": 1}),
        30.0,
    );
    let (status, body) = node.post_json("/jobs", &job).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &node, "img", WAIT).await;
    assert_eq!(done["state"], "failed");
    assert_eq!(done["error"]["code"], "NON_ZERO_EXIT");
    assert_eq!(done["exit_code"], 2);
    assert_eq!(done["stdout"], "{\"x\":1}");
    assert_eq!(done["stderr"], "err\n");

    let mut denied = image_job("denied", &["true"], Value::Null, 5.0);
    denied["runtime"]["image"] = json!("busybox:latest");
    let (_, body) = node.post_json("/jobs", &denied).await;
    assert_eq!(
        body["error"]["code"], "POLICY_DENIED",
        "image allowlist enforced at submit: {body}"
    );
}

#[tokio::test]
async fn twenty_container_jobs_with_four_slots_finish_without_leaks() {
    let node = NodeProcess::start(&config(
        "e2e-twenty",
        "[scheduler]\nmax_concurrent_jobs = 4\n",
    ))
    .await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let job = image_job(
            &format!("c{i}"),
            &["sh", "-c", &format!("sleep 0.2; echo {i}")],
            Value::Null,
            60.0,
        );
        assert_eq!(
            client
                .post(node.at("/jobs"))
                .json(&job)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for i in 0..20 {
        let done = wait_terminal(&client, &node, &format!("c{i}"), WAIT).await;
        assert_eq!(done["state"], "finished", "{done}");
        assert_eq!(done["stdout"], format!("{i}\n"));
    }
    assert_eq!(labelled("e2e-twenty"), 0, "no container leaked");
}

#[tokio::test]
async fn leftover_containers_are_swept_after_kill_dash_nine() {
    let mut node = NodeProcess::start(&config("e2e-sweep", "")).await;
    let client = reqwest::Client::new();
    let job = image_job("long", &["sleep", "300"], Value::Null, 600.0);
    node.post_json("/jobs", &job).await;
    let started = std::time::Instant::now();
    while labelled("e2e-sweep") != 1 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(labelled("e2e-sweep"), 1, "the job's container runs");
    node.signal("KILL");
    node.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        labelled("e2e-sweep"),
        1,
        "kill -9 leaves the container behind"
    );
    node.restart().await;
    assert_eq!(labelled("e2e-sweep"), 0, "the next start removes it");
    let long = wait_terminal(&client, &node, "long", WAIT).await;
    assert_eq!(long["error"]["code"], "INTERRUPTED");
}

#[tokio::test]
async fn splai_commands_run_in_the_sandbox_image_and_tools_map_to_images() {
    let extra = "sandbox_image = \"wasmnode-test/busybox:1\"\n[docker.tool_images]\nshout = \"wasmnode-test/upper:1\"\n";
    let node = NodeProcess::start(&config("e2e-cmd", extra)).await;
    let client = reqwest::Client::new();
    let cmd = json!({"protocol_version": 1, "job_id": "cmd",
        "task": {"type": "tool_execution", "payload": {"op": "bash", "command": "echo hi > /workspace/x && cat /workspace/x && id -u && hostname -i 2>/dev/null; ls /sys/class/net"}},
        "runtime": {"mode": "auto"}});
    assert_eq!(
        client
            .post(node.at("/jobs"))
            .json(&cmd)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let done = wait_terminal(&client, &node, "cmd", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    let stdout = done["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("hi\n65534\n"),
        "ran as nobody in the container, not on the host: {stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("lo"),
        "only the loopback interface: {stdout}"
    );

    let tool = json!({"protocol_version": 1, "job_id": "shout",
        "task": {"type": "tool_execution", "payload": {"tool": "shout", "word": "quiet"}}, "runtime": {"mode": "auto"}});
    assert_eq!(
        client
            .post(node.at("/jobs"))
            .json(&tool)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let done = wait_terminal(&client, &node, "shout", WAIT).await;
    assert_eq!(
        done["stdout"], "{\"WORD\":\"QUIET\"}",
        "the tool's args arrive on stdin: {done}"
    );
    let result: Value = node.get_json("/jobs/shout/result").await;
    assert_eq!(result, json!({"WORD": "QUIET"}));
}

/// `docker inspect` of the containers labelled for `worker`, as JSON.
fn inspect_labelled(worker: &str) -> Vec<Value> {
    let ids = labelled_ids(worker);
    if ids.is_empty() {
        return Vec::new();
    }
    let out = std::process::Command::new("docker")
        .arg("inspect")
        .args(&ids)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Seconds within the day of `2026-11-29T21:00:00.123456789Z`.
fn rfc3339_seconds(text: &str) -> f64 {
    let time = text.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

#[tokio::test]
async fn a_container_stops_at_its_limit_even_when_the_node_was_killed() {
    let mut node = NodeProcess::start(&config("e2e-backstop", "")).await;
    let job = image_job("late", &["sleep", "300"], Value::Null, 2.0);
    node.post_json("/jobs", &job).await;
    let running = |c: &Value| c["State"]["Running"] == true;
    let deadline = std::time::Instant::now() + WAIT;
    while !inspect_labelled("e2e-backstop").iter().any(running) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.signal("KILL");
    node.wait_exit(Duration::from_secs(10)).await;
    let stopped = loop {
        let containers = inspect_labelled("e2e-backstop");
        if let Some(c) = containers.iter().find(|c| c["State"]["Running"] == false) {
            break c.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived its limit with the node gone: {containers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let state = &stopped["State"];
    assert_eq!(state["ExitCode"], 124, "stopped by the backstop: {state}");
    let ran = (rfc3339_seconds(state["FinishedAt"].as_str().unwrap())
        - rfc3339_seconds(state["StartedAt"].as_str().unwrap()))
    .rem_euclid(86_400.0);
    assert!(
        (2.0..20.0).contains(&ran),
        "ran {ran:.1} s for a 2 s limit (plus the backstop's 5 s grace)"
    );
    node.restart().await;
    assert_eq!(labelled("e2e-backstop"), 0, "the next start removes it");
}

#[tokio::test]
async fn a_container_filling_its_workspace_fails_as_output_exceeded() {
    let node = NodeProcess::start(&config("e2e-quota", "")).await;
    let client = reqwest::Client::new();
    // One writes until it is stopped; one writes 400 MiB and ends at once.
    let endless = "i=0; while true; do dd if=/dev/zero of=/workspace/f$i bs=1048576 count=4 2>/dev/null; i=$((i+1)); done";
    let burst = "dd if=/dev/zero of=/workspace/big bs=1048576 count=400; echo done";
    for (id, script) in [("endless", endless), ("burst", burst)] {
        let mut job = image_job(id, &["sh", "-c", script], Value::Null, 120.0);
        job["runtime"]["limits"]["workspace_mb"] = json!(16);
        node.post_json("/jobs", &job).await;
    }
    for id in ["endless", "burst"] {
        let done = wait_terminal(&client, &node, id, WAIT).await;
        assert_eq!(
            (done["state"].as_str(), done["error"]["code"].as_str()),
            (Some("failed"), Some("OUTPUT_EXCEEDED")),
            "{done}"
        );
        assert!(
            done["error"]["message"]
                .as_str()
                .unwrap()
                .contains("workspace"),
            "{done}"
        );
    }
    assert_eq!(labelled("e2e-quota"), 0, "the containers are gone");
}

#[tokio::test]
async fn a_containers_workspace_becomes_its_files_and_its_links_lead_nowhere() {
    let node = NodeProcess::start(&config("e2e-files", "")).await;
    let client = reqwest::Client::new();
    let script = "mkdir -p /workspace/out && echo report > /workspace/out/r.txt \
        && ln -s /etc/passwd /workspace/passwd && ln -s / /workspace/root \
        && mkfifo /workspace/pipe && echo done";
    let job = image_job("files", &["sh", "-c", script], Value::Null, 60.0);
    node.post_json("/jobs", &job).await;
    let done = wait_terminal(&client, &node, "files", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    let listed = node.get_json("/jobs/files/files").await;
    assert_eq!(
        listed["files"],
        json!([{"path": "out/r.txt", "size": 7}]),
        "{listed}"
    );
    for path in ["passwd", "root/etc/passwd", "pipe"] {
        let response = client
            .get(node.at(&format!("/jobs/files/files/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let archive = client
        .get(node.at("/jobs/files/files?archive=tar"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut names = Vec::new();
    for entry in tar::Archive::new(archive.as_ref()).entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(names, ["out/r.txt"]);
}
