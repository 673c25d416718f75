//! The deployment files as operators use them (`make test-deploy`): the
//! systemd unit through `systemd-analyze verify`, the Kubernetes manifests
//! through kubernetes-validate, the Nomad job through python-hcl2 and a
//! JSON Schema, the configs they embed through the node itself, and the
//! FROM-scratch image running a job on its published port.
//! `WASMNODE_DEPLOY_PYTHON` names the checkers' python
//! (scripts/deploy-check-setup.sh) and `WASMNODE_IMAGE` the image
//! (scripts/image.sh).

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use wasmnode_e2e::{binary, stderr, stdout, wasmnode};

/// The Kubernetes release the manifests are checked against.
const KUBERNETES: &str = "1.30.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
#[ignore = "needs the checkers: make test-deploy"]
fn kubernetes_and_nomad_files_pass_their_checkers_and_their_configs_load() {
    let python = std::env::var("WASMNODE_DEPLOY_PYTHON").expect("WASMNODE_DEPLOY_PYTHON");
    let out = Command::new(python)
        .arg(root().join("tests/deploy/check.py"))
        .arg(root().join("deploy"))
        .arg(KUBERNETES)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let configs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let configs = configs.as_object().unwrap();
    assert!(
        configs.contains_key("kubernetes:wasmnode.yaml"),
        "{configs:?}"
    );
    assert!(
        configs.contains_key("nomad:wasmnode.nomad.hcl"),
        "{configs:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, toml) in configs {
        let file = dir.path().join("node.toml");
        std::fs::write(&file, toml.as_str().unwrap()).unwrap();
        let out = wasmnode(dir.path(), &["--config", file.to_str().unwrap(), "config"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains("[control_plane]"), "{name}");
    }
}

#[test]
#[ignore = "needs systemd-analyze: make test-deploy"]
fn the_systemd_unit_verifies_and_waits_longer_than_the_drain() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/wasmnode.service")).unwrap();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=wasmnode",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == setting), "{setting} is missing");
    }
    let stop_seconds: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|s| s.parse().ok())
        .expect("TimeoutStopSec in seconds");
    let drain = wasmnode_e2e::wasmnode(tempfile::tempdir().unwrap().path(), &["config"]);
    let drain: toml::Table = toml::from_str(&stdout(&drain)).unwrap();
    let drain = drain["scheduler"]["drain_timeout_seconds"]
        .as_integer()
        .unwrap() as u64;
    assert!(
        stop_seconds > drain,
        "stop {stop_seconds} s <= drain {drain} s"
    );

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("wasmnode.service");
    let here = binary().canonicalize().unwrap();
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/wasmnode", here.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "systemd-analyze warned");
}

/// Removes the container when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
#[ignore = "needs the image: make test-deploy"]
fn the_scratch_images_static_binary_allocates_with_mimalloc() {
    let image = std::env::var("WASMNODE_IMAGE").expect("WASMNODE_IMAGE");
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-e",
            "MIMALLOC_VERBOSE=1",
            &image,
            "--version",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mimalloc: process init"),
        "musl's own malloc, not mimalloc: {}",
        stderr(&out)
    );
}

#[tokio::test]
#[ignore = "needs the image: make test-deploy"]
async fn the_scratch_image_runs_a_wasm_job_on_its_published_port() {
    let image = std::env::var("WASMNODE_IMAGE").expect("WASMNODE_IMAGE");
    let out = Command::new("docker")
        .args(["run", "-d", "-p", "127.0.0.1::9000"])
        .args(["-e", "WASMNODE_API_KEY=deploy-test-key", &image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let container = Container(stdout(&out).trim().to_string());
    let port = Command::new("docker")
        .args(["port", &container.0, "9000/tcp"])
        .output()
        .unwrap();
    let address = stdout(&port).lines().next().unwrap().trim().to_string();
    let url = format!("http://{address}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the container never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get = |path: &str| {
        client
            .get(format!("{url}{path}"))
            .header("x-api-key", "deploy-test-key")
            .send()
    };
    let info: Value = get("/info").await.unwrap().json().await.unwrap();
    assert_eq!(
        info["runtime_modes"],
        json!(["wasm"]),
        "no Docker socket: {info}"
    );
    let job = json!({"protocol_version": 1, "job_id": "in-image",
        "task": {"type": "retrieval", "payload": {"query": "wasm", "documents": "wasm\ndocker"}},
        "runtime": {"mode": "wasm"}});
    let answer: Value = client
        .post(format!("{url}/jobs?wait=60"))
        .header("x-api-key", "deploy-test-key")
        .json(&job)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["state"], "finished", "{answer}");
    assert_eq!(answer["result"]["documents"][0]["text"], "wasm", "{answer}");
}
