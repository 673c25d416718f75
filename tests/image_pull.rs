//! Images a job names, pulled where the operator opted in (`docker.pull`),
//! against a real registry on 127.0.0.1 (Debian's `docker-registry`) that
//! requires a login: never by default, only allowlisted references, the
//! operator's credentials, a digest honoured exactly, progress as job
//! events, and a failed or stalled pull ending the job with the reason.

use futures::StreamExt;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use wasmnode_e2e::registry::Registry;
use wasmnode_e2e::{Gate, NodeProcess, wait_state, wait_terminal};

const WAIT: Duration = Duration::from_secs(180);
const USER: &str = "ci";
const PASSWORD: &str = "pull-pa55";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Pushes the busybox test image to `registry` as `ci/busybox:1` and
/// removes that name locally, so a node has to pull it; answers the tag
/// and the pinned reference.
fn push(registry: &Registry) -> (String, String) {
    let local = String::from_utf8(
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/test-image.sh"
        ))
        .output()
        .unwrap()
        .stdout,
    )
    .unwrap();
    let tag = format!("{}/ci/busybox:1", registry.addr);
    let config = tempfile::tempdir().unwrap();
    let config = config.path().to_str().unwrap();
    docker(&["tag", local.trim(), &tag]);
    let mut login = Command::new("docker")
        .args([
            "--config",
            config,
            "login",
            &registry.addr,
            "-u",
            USER,
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut login.stdin.take().unwrap(), PASSWORD.as_bytes()).unwrap();
    assert!(login.wait().unwrap().success(), "docker login");
    docker(&["--config", config, "push", &tag]);
    let pinned = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &tag,
    ]);
    forget(&tag);
    (tag, pinned)
}

/// Removes `reference` from the engine (the layers stay under the local
/// test image's name).
fn forget(reference: &str) {
    let _ = Command::new("docker").args(["rmi", reference]).output();
}

fn config(registry: &Registry, pull: &str, password: &str, extra: &str) -> String {
    format!(
        "[docker]\nmode = \"on\"\npull = \"{pull}\"\nallowed_images = [\"{addr}/ci/*\"]\n\
         [docker.registries.\"{addr}\"]\nusername = \"{USER}\"\npassword = \"{password}\"\n{extra}",
        addr = registry.addr
    )
}

fn job(id: &str, image: &str) -> Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": "shell", "payload": null},
        "runtime": {"mode": "image", "image": image, "cmd": ["echo", "pulled and ran"],
            "limits": {"max_runtime_seconds": 120}}})
}

fn failure(ended: &Value) -> (String, String) {
    (
        ended["error"]["code"].as_str().unwrap_or_default().into(),
        ended["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .into(),
    )
}

#[tokio::test]
async fn a_node_pulls_allowlisted_images_with_the_operators_login_only_when_told_to() {
    let registry = Registry::start_with_login(USER, PASSWORD).await;
    let (tag, pinned) = push(&registry);

    // The default: a node never pulls.
    let never = NodeProcess::start(&config(&registry, "never", PASSWORD, "")).await;
    let ended = never.run_job(&job("never", &tag), WAIT).await;
    let (code, message) = failure(&ended);
    assert_eq!(code, "BACKEND_UNAVAILABLE", "{ended}");
    assert!(message.contains("does not pull"), "{message}");
    drop(never);

    // A wrong password: the registry's refusal is the job's error.
    let wrong = NodeProcess::start(&config(&registry, "if-missing", "wrong", "")).await;
    let ended = wrong.run_job(&job("wrong", &tag), WAIT).await;
    let (code, message) = failure(&ended);
    assert_eq!(code, "BACKEND_UNAVAILABLE", "{ended}");
    assert!(message.contains("cannot pull image"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    drop(wrong);

    // Opted in with the right login: pulled, with progress as events (a
    // job holding the only slot keeps the pull queued until its events are
    // followed).
    let gate = Gate::new();
    let extra = format!("{}[scheduler]\nmax_concurrent_jobs = 1\n", gate.policy(""));
    let node = NodeProcess::start(&config(&registry, "if-missing", PASSWORD, &extra)).await;
    assert_eq!(node.post_json("/jobs", &gate.job("holder")).await.0, 200);
    wait_state(&node, "holder", "running").await;
    assert_eq!(node.post_json("/jobs", &job("pull", &tag)).await.0, 200);
    let events = reqwest::get(node.at("/jobs/pull/events")).await.unwrap();
    gate.open();
    let mut stream = events.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: end") {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("events in time")
        {
            Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            None => break,
        }
    }
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains(&format!("pulling {tag}")), "{text}");
    let ended = wait_terminal(&reqwest::Client::new(), &node, "pull", WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(ended["stdout"], "pulled and ran\n", "{ended}");

    // A digest is honoured exactly; one the registry does not have fails.
    forget(&tag);
    let ended = node.run_job(&job("pinned", &pinned), WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let (name, _) = pinned.split_once('@').unwrap();
    let missing = format!("{name}@sha256:{}", "0".repeat(64));
    let ended = node.run_job(&job("missing", &missing), WAIT).await;
    let (code, message) = failure(&ended);
    assert_eq!(code, "BACKEND_UNAVAILABLE", "{ended}");
    assert!(message.contains("cannot pull image"), "{message}");

    // Only allowlisted references are pulled at all.
    let (status, body) = node
        .post_json("/jobs", &job("elsewhere", "docker.io/library/alpine:3"))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("POLICY_DENIED")),
        "{body}"
    );
    forget(&tag);
    forget(&pinned);
}

#[tokio::test]
async fn a_pull_that_stalls_ends_the_job_with_the_reason() {
    // A registry that answers its ping and then never answers a manifest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { "{}" }))
        .fallback(|| async {
            std::future::pending::<()>().await;
            ""
        });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let image = format!("{addr}/ci/stuck:1");
    let config = format!(
        "[docker]\nmode = \"on\"\npull = \"always\"\npull_stall_seconds = 1\nallowed_images = [\"{addr}/ci/*\"]\n"
    );
    let node = NodeProcess::start(&config).await;
    let ended = node.run_job(&job("stuck", &image), WAIT).await;
    let (code, message) = failure(&ended);
    assert_eq!(code, "BACKEND_UNAVAILABLE", "{ended}");
    assert!(message.contains("no progress for 1 s"), "{message}");
}
