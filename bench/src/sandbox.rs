//! In-process sandbox benchmarks: a fresh sandbox per trivial task (section
//! 1) and the file_read tool (section 3, wasm side).

use crate::report::{Row, Samples, human};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmnode_runtime::wasm::{AllocatorChoice, EngineSettings, WasmConfig};
use wasmnode_runtime::{
    ArtifactStore, ComponentSource, Executor, LimitPolicy, LimitRequest, Mount, MountSource,
    Runtime, TaskContext, TaskSpec, WasmExecutor, WasmRuntime,
};

const S1: &str = "1. instantiate + run";

/// An executor as the node makes one: an engine per CPU.
pub(crate) fn executor(
    allocator: AllocatorChoice,
    cache: Option<std::path::PathBuf>,
) -> anyhow::Result<WasmExecutor> {
    with_engines(allocator, cache, WasmConfig::default().engines)
}

fn with_engines(
    allocator: AllocatorChoice,
    cache: Option<std::path::PathBuf>,
    engines: usize,
) -> anyhow::Result<WasmExecutor> {
    Ok(WasmExecutor::new(WasmConfig {
        engine: EngineSettings {
            allocator,
            ..EngineSettings::default()
        },
        engines,
        cache_dir: cache,
        ..WasmConfig::default()
    })?)
}

/// The trivial built-in task: aggregate an empty list.
fn trivial() -> TaskSpec {
    let mut spec = TaskSpec::new("bench", "aggregation", json!({"items_json": "[]"}));
    spec.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin(
        "aggregation".into(),
    )));
    spec
}

/// A task context over one artifact store opened once, as the node's is
/// (opening one per task would time `mkdir` and `open` of a shared
/// directory, which serialise threads on its inode lock).
pub(crate) fn context(limits: &LimitRequest) -> TaskContext {
    static ARTIFACTS: OnceLock<ArtifactStore> = OnceLock::new();
    TaskContext::new(
        LimitPolicy::default().resolve(limits).expect("limits"),
        ARTIFACTS.get_or_init(ArtifactStore::detached).clone(),
    )
}

async fn run_once(executor: &WasmExecutor, spec: TaskSpec) -> Duration {
    let limits = spec.limits.clone();
    let started = Instant::now();
    executor
        .run(spec, context(&limits))
        .await
        .expect("benchmark task runs");
    started.elapsed()
}

/// Runs `n` trivial tasks on each of `threads` threads sharing one executor
/// (whose engines they share by the CPU each task starts on);
/// returns the per-task latencies and the overall rate.
fn trivial_load(executor: &Arc<WasmExecutor>, threads: usize, n: usize) -> (Samples, f64) {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let executor = executor.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let mut samples = Vec::with_capacity(n);
                for _ in 0..n {
                    samples.push(rt.block_on(run_once(&executor, trivial())));
                }
                samples
            })
        })
        .collect();
    let samples: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect();
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    (Samples(samples), rate)
}

/// Child-process side of the two-process row: warms a pooling executor,
/// prints `ready`, waits for a line on stdin, runs `n` trivial tasks on one
/// thread and prints their p50 in nanoseconds.
pub fn trivial_worker(n: usize) -> anyhow::Result<()> {
    let executor = Arc::new(executor(AllocatorChoice::Pooling, None)?);
    warm_up(&executor, n)?;
    println!("ready");
    std::io::stdout().flush()?;
    std::io::stdin().read_line(&mut String::new())?;
    let (samples, _) = trivial_load(&executor, 1, n);
    println!("{}", samples.p50().as_nanos());
    Ok(())
}

/// The first task (which instantiates the code) and a tenth of the load.
fn warm_up(executor: &WasmExecutor, n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for _ in 0..=n / 10 {
        rt.block_on(run_once(executor, trivial()));
    }
    Ok(())
}

/// The one-thread load run in two processes of this binary at once (each
/// with its own engine and pool): the largest p50 of the two and the
/// combined rate, from the moment both were told to start until both
/// reported.
fn two_processes(n: usize) -> anyhow::Result<(Duration, f64)> {
    let exe = std::env::current_exe()?;
    let mut children = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--trivial-worker", &n.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        anyhow::ensure!(read_line(&mut out)? == "ready", "worker did not start");
        outputs.push(out);
    }
    let started = Instant::now();
    for child in &mut children {
        writeln!(child.stdin.as_mut().expect("piped stdin"), "go")?;
    }
    let mut p50 = Duration::ZERO;
    for out in &mut outputs {
        p50 = p50.max(Duration::from_nanos(read_line(out)?.parse()?));
    }
    let rate = (2 * n) as f64 / started.elapsed().as_secs_f64();
    for mut child in children {
        anyhow::ensure!(child.wait()?.success(), "worker failed");
    }
    Ok((p50, rate))
}

fn read_line(out: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Section 1.
pub fn instantiate_and_run(n: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for (name, choice) in [
        ("pooling", AllocatorChoice::Pooling),
        ("on-demand", AllocatorChoice::OnDemand),
    ] {
        let executor = Arc::new(executor(choice, None)?);
        warm_up(&executor, n)?;
        let (one, rate1) = trivial_load(&executor, 1, n);
        let (two, rate2) = trivial_load(&executor, 2, n);
        drop(executor);
        let p50 = one.p50();
        rows.push(if name == "pooling" {
            Row::target(
                S1,
                format!("{name}, 1 thread: p50 / p99"),
                format!("{} / {}", human(p50), human(one.p99())),
                "p50 ≤ 60 µs",
                p50 <= Duration::from_micros(60),
            )
        } else {
            Row::info(
                S1,
                format!("{name}, 1 thread: p50 / p99"),
                format!("{} / {}", human(p50), human(one.p99())),
            )
        });
        rows.push(Row::info(
            S1,
            format!("{name}, 1 thread: tasks/s"),
            format!("{rate1:.0}"),
        ));
        rows.push(Row::info(
            S1,
            format!("{name}, 2 threads: p50 / p99"),
            format!("{} / {}", human(two.p50()), human(two.p99())),
        ));
        let scaling = rate2 / rate1;
        rows.push(if name == "pooling" {
            Row::target(
                S1,
                format!("{name}, 2 threads: tasks/s (÷ 1 thread)"),
                format!("{rate2:.0} ({scaling:.2}×)"),
                "≥ 1.8× one thread",
                scaling >= 1.8,
            )
        } else {
            Row::info(
                S1,
                format!("{name}, 2 threads: tasks/s (÷ 1 thread)"),
                format!("{rate2:.0} ({scaling:.2}×)"),
            )
        });
        if name == "pooling" {
            // The same two threads sharing one engine, as every node did
            // before it made one per CPU.
            let shared = Arc::new(with_engines(choice, None, 1)?);
            warm_up(&shared, n)?;
            let (_, rate) = trivial_load(&shared, 2, n);
            drop(shared);
            rows.push(Row::info(
                S1,
                "pooling, 2 threads on one shared engine: tasks/s (÷ 1 thread)",
                format!("{rate:.0} ({:.2}×)", rate / rate1),
            ));
            let (p50, rate) = two_processes(n)?;
            rows.push(Row::info(
                S1,
                "pooling, 2 processes: p50 / tasks/s (÷ 1 thread)",
                format!("{} / {rate:.0} ({:.2}×)", human(p50), rate / rate1),
            ));
        }
    }
    // Compiled-code cache: first task with nothing cached, then on a new
    // executor (a restarted node) with the cache on disk.
    let cache = tempfile::tempdir()?;
    let cold = executor(AllocatorChoice::Pooling, Some(cache.path().to_path_buf()))?;
    let cold_first = rt.block_on(run_once(&cold, trivial()));
    drop(cold);
    let warm = executor(AllocatorChoice::Pooling, Some(cache.path().to_path_buf()))?;
    let warm_first = rt.block_on(run_once(&warm, trivial()));
    rows.push(Row::info(
        S1,
        "first task, cold (compile)",
        human(cold_first),
    ));
    rows.push(Row::info(
        S1,
        "first task, warm disk cache",
        format!(
            "{} ({:.0}× faster)",
            human(warm_first),
            cold_first.as_secs_f64() / warm_first.as_secs_f64()
        ),
    ));
    Ok(rows)
}

/// Section 3, wasm side: file_read of a 4 KiB file through the built-in tool.
pub fn file_read(dir: &std::path::Path, n: usize) -> anyhow::Result<Samples> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let executor = executor(AllocatorChoice::Auto, None)?;
    let spec = || {
        let mut spec = TaskSpec::new("bench", "tool_execution", json!({"path": "/data/file.bin"}));
        spec.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin(
            "file_read".into(),
        )));
        spec.mounts = vec![Mount {
            source: MountSource::Host(dir.to_path_buf()),
            guest_path: "/data".into(),
            writable: false,
        }];
        spec
    };
    rt.block_on(run_once(&executor, spec()));
    let samples = (0..n)
        .map(|_| rt.block_on(run_once(&executor, spec())))
        .collect();
    Ok(Samples(samples))
}
