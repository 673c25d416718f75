//! Container benchmarks against the real engine: a file read done by a
//! container per call (section 3, the baseline of the wasm tool), and the
//! node's container job against `docker run --rm` of the same image
//! (section 4).

use crate::report::{Row, Samples, human};
use std::process::Command;
use std::time::{Duration, Instant};
use wasmnode_runtime::docker::{DockerExecutor, DockerSettings, ImageAllowlist};
use wasmnode_runtime::{
    ArtifactStore, Executor, ImageRuntime, LimitPolicy, Runtime, TaskContext, TaskSpec,
};

const S3: &str = "3. file_read 4 KiB";
const S4: &str = "4. Docker job overhead";

/// The busybox test image (built without a registry).
pub fn image() -> anyhow::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-image.sh");
    let out = Command::new(script).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn docker_run(args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        status.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    started.elapsed()
}

/// Section 3: wasm file_read (measured by the caller) against
/// `docker run --rm` reading the same file.
pub fn file_read(dir: &std::path::Path, wasm: &Samples, n: usize) -> anyhow::Result<Vec<Row>> {
    let image = image()?;
    let mount = format!("{}:/data:ro", dir.display());
    let container = Samples(
        (0..n)
            .map(|_| {
                docker_run(&[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-v",
                    &mount,
                    &image,
                    "cat",
                    "/data/file.bin",
                ])
            })
            .collect(),
    );
    let ratio = container.p50().as_secs_f64() / wasm.p50().as_secs_f64();
    Ok(vec![
        Row::info(
            S3,
            "wasm tool, in-process: p50 / p99",
            format!("{} / {}", human(wasm.p50()), human(wasm.p99())),
        ),
        Row::info(
            S3,
            "container per call (docker run --rm): p50",
            human(container.p50()),
        ),
        Row::target(
            S3,
            "speed-up of the wasm tool",
            format!("{ratio:.0}×"),
            "≥ 100×",
            ratio >= 100.0,
        ),
    ])
}

/// Section 4: the node's container job against `docker run --rm`.
pub fn job_overhead(n: usize) -> anyhow::Result<Vec<Row>> {
    let image = image()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let docker = rt.block_on(DockerExecutor::connect(DockerSettings {
        allowed_images: ImageAllowlist::new([image.clone()]),
        node_id: "wasmnode-bench".into(),
        ..DockerSettings::default()
    }))?;
    let run_node = || {
        let workspace = tempfile::tempdir().expect("workspace");
        let mut spec = TaskSpec::new("bench", "image", serde_json::Value::Null);
        spec.runtime = Runtime::Image(ImageRuntime {
            image: image.clone(),
            cmd: vec!["true".into()],
            ..ImageRuntime::default()
        });
        let mut ctx = TaskContext::new(
            LimitPolicy::default()
                .resolve(&spec.limits)
                .expect("limits"),
            ArtifactStore::detached(),
        );
        ctx.workspace = Some(workspace.path().to_path_buf());
        let started = Instant::now();
        rt.block_on(docker.run(spec, ctx)).expect("container job");
        started.elapsed()
    };
    run_node();
    docker_run(&["run", "--rm", "--network", "none", &image, "true"]);
    let mut node = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..n {
        node.push(run_node());
        cli.push(docker_run(&[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "true",
        ]));
    }
    let (node, cli) = (Samples(node), Samples(cli));
    let ratio = node.p50().as_secs_f64() / cli.p50().as_secs_f64();
    Ok(vec![
        Row::info(
            S4,
            "node container job (hardened, `true`): p50",
            human(node.p50()),
        ),
        Row::info(S4, "docker run --rm (same image): p50", human(cli.p50())),
        Row::target(
            S4,
            "node / docker run",
            format!("{ratio:.2}×"),
            "≤ 1.0×",
            ratio <= 1.0,
        ),
    ])
}
