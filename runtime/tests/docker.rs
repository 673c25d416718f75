//! The Docker executor against the real local engine, with an image built
//! here without a registry (`scripts/test-image.sh`).

use serde_json::json;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wasmnode_runtime::docker::{DockerExecutor, DockerSettings, ImageAllowlist, NODE_LABEL};
use wasmnode_runtime::{
    ArtifactStore, Executor, FailureKind, ImageRuntime, LimitPolicy, LimitRequest, Runtime,
    TaskContext, TaskFailure, TaskOutcome, TaskSpec,
};

/// The busybox test image, built once per test run.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
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
    })
}

async fn executor(node_id: &str) -> DockerExecutor {
    DockerExecutor::connect(DockerSettings {
        allowed_images: ImageAllowlist::new([image().to_string()]),
        node_id: node_id.into(),
        ..DockerSettings::default()
    })
    .await
    .expect("the tests need the local Docker engine")
}

fn task(job: &str, cmd: &[&str], limits: LimitRequest) -> TaskSpec {
    let mut spec = TaskSpec::new(job, "image", serde_json::Value::Null);
    spec.runtime = Runtime::Image(ImageRuntime {
        image: image().into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..ImageRuntime::default()
    });
    spec.limits = limits;
    spec
}

/// Runs `spec` with a fresh workspace; returns the result and the context's token.
async fn run(executor: &DockerExecutor, spec: TaskSpec) -> Result<TaskOutcome, TaskFailure> {
    let (ctx, _dirs) = context(&spec);
    executor.run(spec, ctx).await
}

fn context(spec: &TaskSpec) -> (TaskContext, (tempfile::TempDir, tempfile::TempDir)) {
    let artifacts = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let limits = LimitPolicy::default().resolve(&spec.limits).unwrap();
    let mut ctx = TaskContext::new(limits, ArtifactStore::open(artifacts.path()).unwrap());
    ctx.workspace = Some(workspace.path().to_path_buf());
    (ctx, (artifacts, workspace))
}

async fn containers_labelled(node_id: &str) -> usize {
    let out = tokio::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={NODE_LABEL}={node_id}"),
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn seconds(s: f64) -> LimitRequest {
    LimitRequest {
        max_runtime_seconds: Some(s),
        ..LimitRequest::default()
    }
}

#[tokio::test]
async fn stdout_stderr_exit_code_and_stdin_come_back_exactly() {
    let docker = executor("t-io").await;
    let mut spec = task(
        "io",
        &["sh", "-c", "cat; echo to-err >&2; exit 3"],
        seconds(30.0),
    );
    if let Runtime::Image(i) = &mut spec.runtime {
        i.stdin = Some(b"line one\nline two\n".to_vec());
    }
    let err = run(&docker, spec).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NonZeroExit, "{err}");
    let captured = err.captured.unwrap();
    assert_eq!(captured.exit_code, Some(3));
    assert_eq!(captured.stdout, "line one\nline two\n");
    assert_eq!(captured.stderr, "to-err\n");

    let mut spec = task("json", &["cat"], seconds(30.0));
    spec.payload = json!({"k": [1, 2]});
    let out = run(&docker, spec).await.unwrap();
    assert_eq!(
        out.output,
        json!({"k": [1, 2]}),
        "the payload arrives on stdin as JSON"
    );
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(
        containers_labelled("t-io").await,
        0,
        "containers are removed"
    );
}

/// Whether this machine lets the node read containers' cgroups: the
/// engine's cgroupfs driver, and the node (this test) running as root.
fn cgroups_readable() -> bool {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.CgroupDriver}}"])
        .output()
        .expect("docker info");
    String::from_utf8_lossy(&out.stdout).trim() == "cgroupfs"
        // SAFETY: geteuid has no preconditions.
        && unsafe { libc::geteuid() } == 0
}

#[tokio::test]
async fn a_container_reports_the_cpu_time_and_memory_it_used_where_cgroups_can_be_read() {
    let docker = executor("t-usage").await;
    // A fixed amount of work, so its CPU time does not depend on the load.
    let spin = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo spun";
    let out = run(&docker, task("usage", &["sh", "-c", spin], seconds(120.0)))
        .await
        .expect("the loop ends");
    let metrics = &out.metrics;
    if !cgroups_readable() {
        assert_eq!(metrics.cpu_time_ms, None, "no cgroups to read: {metrics:?}");
        return;
    }
    let cpu = metrics.cpu_time_ms.expect("CPU time measured");
    assert!(
        cpu > 20.0 && cpu <= metrics.wall_time_ms,
        "CPU {cpu} ms, wall {} ms",
        metrics.wall_time_ms
    );
    assert!(metrics.peak_memory_bytes > Some(0), "{metrics:?}");
    // The node's own cgroup parent (v1 or v2 layout) holds no container's.
    let own = [
        "/sys/fs/cgroup/cpuacct/wasmnode/t-usage",
        "/sys/fs/cgroup/wasmnode/t-usage",
    ];
    let left: Vec<_> = own
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "the container's cgroup stays: {left:?}");

    let failed = run(
        &docker,
        task("usage-fail", &["sh", "-c", "exit 4"], seconds(60.0)),
    )
    .await
    .expect_err("exit 4");
    let metrics = failed.metrics.expect("a failure carries its metrics");
    assert!(metrics.cpu_time_ms.is_some(), "{metrics:?}");
}

#[tokio::test]
async fn hardened_defaults_hold() {
    let docker = executor("t-hard").await;
    let script = "id -u; touch /x 2>&1 || echo root-ro; touch /tmp/ok && echo tmp-rw; touch /workspace/ok && echo ws-rw; \
                  wget -T 2 -q -O- http://203.0.113.1/ 2>&1 || echo no-net; grep -c Cap /proc/self/status >/dev/null; \
                  grep CapEff /proc/self/status";
    let out = run(&docker, task("hard", &["sh", "-c", script], seconds(30.0)))
        .await
        .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "65534", "non-root: {}", out.stdout);
    assert!(
        out.stdout.contains("Read-only file system") && out.stdout.contains("root-ro"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("tmp-rw") && out.stdout.contains("ws-rw"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("no-net"), "{}", out.stdout);
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "all capabilities dropped: {}",
        out.stdout
    );
}

#[tokio::test]
async fn a_memory_bomb_is_memory_exceeded() {
    let docker = executor("t-mem").await;
    let limits = LimitRequest {
        memory_mb: Some(32),
        max_runtime_seconds: Some(60.0),
        ..LimitRequest::default()
    };
    let err = run(
        &docker,
        task(
            "mem",
            &["sh", "-c", "a=x; while :; do a=\"$a$a\"; done"],
            limits,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::MemoryExceeded, "{err}");
    assert!(err.message.contains("32 MiB"), "{err}");
}

#[tokio::test]
async fn sleeping_past_the_deadline_is_a_timeout_the_node_enforced() {
    let docker = executor("t-time").await;
    let started = Instant::now();
    let err = run(&docker, task("slow", &["sleep", "30"], seconds(1.0)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Timeout, "{err}");
    assert!(err.message.contains("killed the container"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(containers_labelled("t-time").await, 0);
}

#[tokio::test]
async fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    let docker = executor("t-fork").await;
    let limits = LimitRequest {
        pids: Some(16),
        max_runtime_seconds: Some(30.0),
        ..LimitRequest::default()
    };
    let script = "i=0; while [ $i -lt 64 ]; do sleep 20 & i=$((i+1)); done; echo spawned";
    let started = Instant::now();
    let result = run(&docker, task("fork", &["sh", "-c", script], limits)).await;
    let stderr = match &result {
        Ok(out) => out.stderr.clone(),
        Err(e) => e
            .captured
            .as_ref()
            .map(|c| c.stderr.clone())
            .unwrap_or_default(),
    };
    assert!(
        stderr.contains("can't fork"),
        "forks past the limit fail: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the bomb did not run to its sleeps' end"
    );
}

#[tokio::test]
async fn cancelling_removes_the_container_within_two_seconds() {
    let docker = std::sync::Arc::new(executor("t-cancel").await);
    let spec = task("cancel-me", &["sleep", "60"], seconds(120.0));
    let (ctx, dirs) = context(&spec);
    let cancel = ctx.cancel.clone();
    let runner = docker.clone();
    let handle = tokio::spawn(async move { runner.run(spec, ctx).await });
    let started = Instant::now();
    while containers_labelled("t-cancel").await != 1 && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        containers_labelled("t-cancel").await,
        1,
        "the container is running"
    );
    let at = Instant::now();
    cancel.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert_eq!(err.kind, FailureKind::Cancelled);
    assert_eq!(containers_labelled("t-cancel").await, 0);
    assert!(
        at.elapsed() < Duration::from_secs(2),
        "removed after {:?}",
        at.elapsed()
    );
    drop(dirs);
}

#[tokio::test]
async fn missing_and_unlisted_images_fail_clearly() {
    let docker = executor("t-img").await;
    let mut spec = task("missing", &["true"], seconds(5.0));
    spec.runtime = Runtime::Image(ImageRuntime {
        image: "wasmnode-test/absent:9".into(),
        ..ImageRuntime::default()
    });
    let permissive = DockerExecutor::connect(DockerSettings {
        allowed_images: ImageAllowlist::new(["wasmnode-test/*".to_string()]),
        node_id: "t-img".into(),
        ..DockerSettings::default()
    })
    .await
    .unwrap();
    let err = run(&permissive, spec.clone()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::BackendUnavailable);
    assert!(
        err.message.contains("wasmnode-test/absent:9") && err.message.contains("docker load"),
        "{err}"
    );
    let err = run(&docker, spec).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::PolicyDenied, "{err}");
    let mut gpu = task("gpu", &["true"], seconds(5.0));
    if let Runtime::Image(i) = &mut gpu.runtime {
        i.gpus = Some(1);
    }
    assert_eq!(
        run(&docker, gpu).await.unwrap_err().kind,
        FailureKind::PolicyDenied
    );
}

#[tokio::test]
async fn leftover_labelled_containers_are_swept() {
    let docker = executor("t-sweep").await;
    let status = std::process::Command::new("docker")
        .args([
            "create",
            "--label",
            &format!("{NODE_LABEL}=t-sweep"),
            image(),
            "sleep",
            "100",
        ])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(containers_labelled("t-sweep").await, 1);
    assert_eq!(docker.sweep().await.unwrap(), 1);
    assert_eq!(containers_labelled("t-sweep").await, 0);
}
