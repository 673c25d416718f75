//! Hostile guests: every escape attempt and resource abuse fails its own task
//! with the right `TaskFailure` kind, and the executor keeps serving.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use wasmnode_runtime::{FailureKind, LimitRequest};

/// After any failure the same executor must still run a healthy task.
async fn still_serving() {
    let out = run(hostile(json!({"action": "echo", "n": 1})))
        .await
        .expect("healthy task after a hostile one");
    assert_eq!(out.output["n"], 1);
}

async fn expect_failure(
    spec: wasmnode_runtime::TaskSpec,
    kind: FailureKind,
) -> wasmnode_runtime::TaskFailure {
    let err = tokio::time::timeout(STEP, run(spec))
        .await
        .expect("finished in time")
        .expect_err("must fail");
    assert_eq!(err.kind, kind, "{err}");
    still_serving().await;
    err
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let started = Instant::now();
    let mut spec = hostile(json!({"action": "loop"}));
    spec.limits = short(0.3);
    let err = expect_failure(spec, FailureKind::Timeout).await;
    assert!(err.message.contains("wall-clock limit"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn fuel_budget_stops_a_loop_deterministically() {
    let mut spec = hostile(json!({"action": "loop"}));
    spec.limits = LimitRequest {
        fuel: Some(5_000_000),
        ..Default::default()
    };
    let err = expect_failure(spec, FailureKind::Timeout).await;
    assert!(err.message.contains("fuel"), "{err}");
}

#[tokio::test]
async fn one_gib_allocation_exceeds_memory() {
    let mut spec = hostile(json!({"action": "alloc", "mb": 1024}));
    spec.limits = LimitRequest {
        memory_mb: Some(64),
        ..Default::default()
    };
    let err = expect_failure(spec, FailureKind::MemoryExceeded).await;
    assert!(err.message.contains("64 MiB"), "{err}");
}

#[tokio::test]
async fn hundred_mb_of_stdout_exceeds_output() {
    let mut spec = hostile(json!({"action": "stdout", "mb": 100}));
    spec.limits = LimitRequest {
        max_output_bytes: Some(1 << 20),
        ..Default::default()
    };
    let err = expect_failure(spec, FailureKind::OutputExceeded).await;
    let captured = err.captured.expect("captured output");
    assert_eq!(
        captured.stdout.len(),
        1 << 20,
        "stdout is kept up to the cap"
    );
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let err = expect_failure(
        hostile(json!({"action": "recurse"})),
        FailureKind::GuestTrap,
    )
    .await;
    assert!(err.message.contains("stack overflow"), "{err}");
}

#[tokio::test]
async fn panics_are_guest_traps_with_the_panic_message() {
    let err = expect_failure(hostile(json!({"action": "trap"})), FailureKind::GuestTrap).await;
    assert!(err.message.contains("guest panicked on purpose"), "{err}");
}

#[tokio::test]
async fn path_traversal_absolute_paths_and_outward_symlinks_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let inside = tempfile::tempdir().unwrap();
    std::fs::write(inside.path().join("ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        inside.path().join("link"),
    )
    .unwrap();
    let secret = outside.path().join("secret.txt").display().to_string();

    let mut spec = hostile(json!({"action": "escape", "paths": [
        "/data/../secret.txt",
        "../secret.txt",
        secret,
        "/etc/passwd",
        "/data/link",
    ]}));
    spec.mounts = vec![mount(inside.path(), "/data", false)];
    let err = expect_failure(spec, FailureKind::PolicyDenied).await;
    assert!(!err.message.contains("ESCAPED"));

    let mut spec = hostile(json!({"action": "read", "path": "/data/ok.txt"}));
    spec.mounts = vec![mount(inside.path(), "/data", false)];
    assert_eq!(
        run(spec).await.unwrap().output["text"],
        "fine",
        "the mount itself is readable"
    );
}

#[tokio::test]
async fn writes_into_a_read_only_mount_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = hostile(json!({"action": "write", "path": "/data/new.txt"}));
    spec.mounts = vec![mount(dir.path(), "/data", false)];
    expect_failure(spec, FailureKind::PolicyDenied).await;
    assert!(!dir.path().join("new.txt").exists());

    let mut spec = hostile(json!({"action": "write", "path": "/data/new.txt"}));
    spec.mounts = vec![mount(dir.path(), "/data", true)];
    let out = run(spec).await.expect("read-write mount accepts the write");
    assert!(
        out.output.as_str().unwrap().starts_with("ESCAPED"),
        "the hostile guest reports any write it got through"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written"
    );
}

#[tokio::test]
async fn tcp_connect_is_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let err = expect_failure(
        hostile(json!({"action": "tcp", "addr": addr})),
        FailureKind::PolicyDenied,
    )
    .await;
    assert!(err.message.contains("tcp"), "{err}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing reached the listener");
}

#[tokio::test]
async fn dns_lookup_is_denied() {
    let err = expect_failure(
        hostile(json!({"action": "dns", "name": "localhost"})),
        FailureKind::PolicyDenied,
    )
    .await;
    assert!(err.message.contains("dns"), "{err}");
}

#[tokio::test]
async fn no_environment_arguments_or_cwd_are_inherited() {
    // SAFETY: set before any guest of this test reads the environment; the
    // point is that guests never see the node's variables.
    unsafe { std::env::set_var("WASMNODE_TEST_SECRET", "leak") };
    let out = run(hostile(json!({"action": "env"}))).await.unwrap();
    let env = out.output["env"].as_array().unwrap();
    assert!(
        env.iter().all(|kv| kv[0] != "WASMNODE_TEST_SECRET"),
        "{env:?}"
    );
    assert_eq!(env.len(), 1, "only the mount table: {env:?}");
    assert_eq!(env[0][0], "WASMNODE_MOUNTS");
    assert_eq!(
        out.output["args"],
        json!(["hostile.wasm"]),
        "argv[0] names the component, not where it lives on the host"
    );
}

#[tokio::test]
async fn a_task_never_sees_the_memory_an_earlier_task_wrote() {
    // One engine with a pool of one: every task reuses the same memory slot,
    // whose pages the allocator resets (by scanning for dirty pages where the
    // kernel can).
    let executor = wasmnode_runtime::WasmExecutor::new(wasmnode_runtime::wasm::WasmConfig {
        engine: wasmnode_runtime::wasm::EngineSettings {
            allocator: wasmnode_runtime::wasm::AllocatorChoice::Pooling,
            pool_instances: 1,
            ..Default::default()
        },
        engines: 1,
        ..Default::default()
    })
    .expect("pooling executor");
    let longest = |out: wasmnode_runtime::TaskOutcome| out.output["longest_run"].as_u64().unwrap();
    for kb in [64, 4096] {
        let planted = run_on(&executor, hostile(json!({"action": "plant", "kb": kb})))
            .await
            .expect("plant");
        assert!(
            longest(planted) >= kb << 10,
            "the scan finds what was planted"
        );
        let seen = run_on(&executor, hostile(json!({"action": "scan"})))
            .await
            .expect("scan");
        assert!(
            longest(seen) < 64,
            "planted bytes survived into the next task"
        );
    }
}

#[tokio::test]
async fn a_deterministic_task_reads_the_same_time_and_randomness_on_every_run() {
    let entropy = |seed: Option<u64>| async move {
        let mut task = hostile(json!({"action": "entropy"}));
        task.deterministic = seed;
        run(task).await.expect("entropy").output
    };
    let first = entropy(Some(7)).await;
    assert_eq!(
        first,
        entropy(Some(7)).await,
        "the same seed, the same readings"
    );
    let since_2000 = first["now_ns"].as_u64().unwrap() - 946_684_800_000_000_000;
    assert!(
        since_2000 < 1_000_000_000,
        "the wall clock starts at 2000-01-01: {first}"
    );
    assert!(
        first["elapsed_ns"].as_u64() > Some(0),
        "time passes for the guest: {first}"
    );
    assert_ne!(
        first["random"],
        entropy(Some(8)).await["random"],
        "another seed, other numbers"
    );
    let free = entropy(None).await;
    assert_ne!(free["random"], entropy(None).await["random"]);
    assert!(free["now_ns"].as_u64() > Some(1_600_000_000_000_000_000));
}
