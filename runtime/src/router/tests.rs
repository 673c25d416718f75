use super::*;
use crate::failure::FailureKind;
use crate::task::{ImageRuntime, Mount, WasmRuntime};
use crate::wasm::{AllocatorChoice, EngineSettings, WasmConfig};
use serde_json::json;
use std::time::Duration;

pub(super) fn router(policy: Policy) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = WasmExecutor::new(WasmConfig {
        engine: EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        },
        cache_dir: None,
        ..WasmConfig::default()
    })
    .unwrap();
    let executors = Executors::new(Arc::new(wasm));
    let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
    let router = Router::new(
        executors,
        policy,
        ToolRegistry::builtin(),
        artifacts,
        dir.path().join("scratch"),
    );
    (dir, router)
}

fn component(plan: &Plan) -> String {
    match &plan.task.runtime {
        Runtime::Wasm(w) => format!("{:?}", w.component),
        other => other.mode().into(),
    }
}

#[test]
fn splai_types_route_to_builtins_with_their_mounts() {
    let (_d, r) = router(Policy::default());
    let plan = r
        .plan(TaskSpec::new("j", "aggregation", json!({})))
        .unwrap();
    assert_eq!(component(&plan), "builtin:aggregation");
    assert_eq!(plan.task.mounts[0].source, MountSource::Artifacts);
    let plan = r
        .plan(TaskSpec::new("j", "retrieval", json!({"query": "q"})))
        .unwrap();
    assert_eq!(component(&plan), "builtin:retrieval");
    assert_eq!(plan.executor.name(), "wasm");
}

#[test]
fn tools_route_by_name_with_a_workspace_and_their_args() {
    let (_d, r) = router(Policy::default());
    let plan = r
        .plan(TaskSpec::new(
            "j",
            "tool_execution",
            json!({"op": "grep", "pattern": "x"}),
        ))
        .unwrap();
    assert_eq!(component(&plan), "builtin:grep");
    assert_eq!(plan.task.payload, json!({"pattern": "x"}));
    assert_eq!(plan.task.mounts[0].guest_path, WORKSPACE_MOUNT);
    let plan = r
        .plan(TaskSpec::new(
            "j",
            "tool_execution",
            json!({"tool": "list", "args_json": "{\"path\": \".\"}"}),
        ))
        .unwrap();
    assert_eq!(plan.task.payload, json!({"path": "."}));
    let err = r
        .plan(TaskSpec::new(
            "j",
            "tool_execution",
            json!({"tool": "nmap"}),
        ))
        .err()
        .unwrap();
    assert!(err.message.contains("unknown tool `nmap`"), "{err}");
    let err = r
        .plan(TaskSpec::new(
            "j",
            "tool_execution",
            json!({"tool": "list", "args_json": "[1]"}),
        ))
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::InvalidInput);
}

#[test]
fn an_auto_tasks_environment_and_allowed_settings_reach_the_tool() {
    let (_d, r) = router(Policy::default());
    let mut tools = ToolRegistry::builtin();
    tools
        .configure(BTreeMap::from([(
            "grep".to_string(),
            crate::tools::ToolSettings {
                config: BTreeMap::from([("mode".into(), "fast".into())]),
                job_config: vec!["depth".into()],
                allowed_hosts: vec!["example.com".into()],
                ..Default::default()
            },
        )]))
        .unwrap();
    r.replace_tools(tools);
    let mut task = TaskSpec::new(
        "j",
        "tool_execution",
        json!({"tool": "grep", "pattern": "x", "config": {"depth": 2}}),
    );
    task.runtime = Runtime::Auto {
        env: BTreeMap::from([("LANG".into(), "C".into())]),
    };
    let plan = r.plan(task).unwrap();
    let Runtime::Wasm(wasm) = &plan.task.runtime else {
        panic!("a wasm tool: {:?}", plan.task.runtime);
    };
    assert_eq!(wasm.env["LANG"], "C");
    assert_eq!(wasm.config["mode"], "fast");
    assert_eq!(wasm.config["depth"], "2");
    assert!(
        wasm.http
            .as_ref()
            .is_some_and(|g| g.permits("example.com", 443, 443)),
        "the tool's grant travels with the task"
    );
    assert_eq!(
        plan.task.payload,
        json!({"pattern": "x"}),
        "settings are not arguments"
    );
    let mut model = TaskSpec::new("j", "llm_inference", json!({"prompt": "hi"}));
    model.runtime = Runtime::Auto {
        env: BTreeMap::from([("LANG".into(), "C".into())]),
    };
    let err = r.plan(model).err().unwrap();
    assert!(err.message.contains("model server"), "{err}");
}

#[test]
fn commands_never_run_on_the_host_and_missing_backends_are_unavailable() {
    let (_d, r) = router(Policy::default());
    let err = r
        .plan(TaskSpec::new(
            "j",
            "tool_execution",
            json!({"command": "rm -rf /"}),
        ))
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::BackendUnavailable);
    let err = r
        .plan(TaskSpec::new("j", "llm_inference", json!({"prompt": "hi"})))
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::BackendUnavailable);
    let mut image = TaskSpec::new("j", "x", json!({}));
    image.runtime = Runtime::Image(ImageRuntime {
        image: "busybox".into(),
        ..Default::default()
    });
    assert_eq!(
        r.plan(image).err().unwrap().kind,
        FailureKind::BackendUnavailable
    );
}

#[test]
fn policy_is_enforced_before_anything_runs() {
    let (_d, r) = router(Policy {
        allowed_modes: vec![RuntimeMode::Image],
        ..Policy::default()
    });
    assert_eq!(
        r.plan(TaskSpec::new("j", "retrieval", json!({})))
            .err()
            .unwrap()
            .kind,
        FailureKind::PolicyDenied
    );
    let (_d, r) = router(Policy::default());
    let mut t = TaskSpec::new("j", "retrieval", json!({}));
    t.mounts.push(Mount {
        source: MountSource::Host("/etc".into()),
        guest_path: "/etc".into(),
        writable: false,
    });
    assert_eq!(r.plan(t).err().unwrap().kind, FailureKind::PolicyDenied);
    let mut t = TaskSpec::new("j", "custom", json!({}));
    t.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::File("/bin/ls".into())));
    assert_eq!(r.plan(t).err().unwrap().kind, FailureKind::PolicyDenied);
    let mut t = TaskSpec::new("j", "retrieval", json!({}));
    t.mounts.push(Mount {
        source: MountSource::Artifacts,
        guest_path: "/artifacts".into(),
        writable: true,
    });
    let err = r.plan(t).err().unwrap();
    assert_eq!(err.kind, FailureKind::PolicyDenied, "{err}");
    let err = r
        .plan(TaskSpec::new("j", "compile_cpp", json!({})))
        .err()
        .unwrap();
    assert!(err.message.contains("unknown task type"), "{err}");
}

#[tokio::test]
async fn runs_a_routed_task_end_to_end() {
    let (_d, r) = router(Policy::default());
    let docs =
        json!([{"id": "x", "text": "wasm sandbox"}, {"id": "y", "text": "docker"}]).to_string();
    let out = r
        .run(
            TaskSpec::new(
                "j",
                "retrieval",
                json!({"query": "sandbox", "documents_json": docs}),
            ),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.output["documents"][0]["id"], "x");
}

#[tokio::test]
async fn uploaded_blobs_mount_read_only_and_run_only_where_allowed() {
    let (dir, r) = router(Policy::default());
    let mount = |source: &str, writable| Mount {
        source: MountSource::Blob(source.into()),
        guest_path: "/src".into(),
        writable,
    };
    let mut task = TaskSpec::new("j", "wasm", json!({}));
    task.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin("grep".into())));
    task.mounts = vec![mount(&format!("blob:{}", "a".repeat(64)), false)];
    let no_store = r.plan(task.clone()).err().unwrap();
    assert_eq!(no_store.kind, FailureKind::BackendUnavailable);

    let blobs = BlobStore::open(dir.path().join("blobs"), Default::default()).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    tar.append_data(&mut header, "f", b"hi".as_slice()).unwrap();
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
        tar.into_inner().unwrap(),
    ))]);
    let stored = blobs.put(body).await.unwrap();
    let r = r.with_blobs(blobs);
    task.mounts = vec![mount(&stored.blob, false)];
    let plan = r.plan(task.clone()).unwrap();
    let MountSource::Prepared(tree) = &plan.task.mounts[0].source else {
        panic!("{:?}", plan.task.mounts[0])
    };
    assert_eq!(std::fs::read(tree.join("f")).unwrap(), b"hi");
    task.mounts = vec![mount(&stored.blob, true)];
    assert_eq!(
        r.plan(task.clone()).err().unwrap().kind,
        FailureKind::PolicyDenied
    );
    task.mounts = vec![mount("blob:nonsense", false)];
    assert_eq!(
        r.plan(task.clone()).err().unwrap().kind,
        FailureKind::InvalidInput
    );

    task.mounts.clear();
    task.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Blob(stored.blob.clone())));
    assert_eq!(
        r.plan(task.clone()).err().unwrap().kind,
        FailureKind::PolicyDenied
    );
    let (_d, open) = router(Policy {
        allow_uploaded_components: true,
        ..Policy::default()
    });
    let open = open.with_blobs(r.blobs().unwrap().clone());
    let plan = open.plan(task).unwrap();
    assert!(component(&plan).ends_with(&stored.blob["blob:".len()..]));
}

#[tokio::test]
async fn a_kept_workspace_outlives_the_run() {
    let (dir, r) = router(Policy::default());
    let mut task = TaskSpec::new(
        "j",
        "tool_execution",
        json!({"tool": "file_write",
        "path": "/workspace/out.txt", "content": "kept"}),
    );
    task.mounts = vec![Mount {
        source: MountSource::Workspace,
        guest_path: WORKSPACE_MOUNT.into(),
        writable: true,
    }];
    let keep = dir.path().join("files/j");
    let options = RunOptions {
        keep_workspace: Some(keep.clone()),
        ..RunOptions::default()
    };
    r.run(task.clone(), options).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(keep.join("out.txt")).unwrap(),
        "kept"
    );
    r.run(task, RunOptions::default()).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("scratch"))
            .unwrap()
            .count(),
        0
    );
}

/// A stand-in for the Python runtime: a reactor that prints `1`.
const REACTOR: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "1\n")
    (func (export "run") (result i32)
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 2))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.const 0)))"#;

#[tokio::test]
async fn a_python_job_says_it_waits_for_the_runtime_only_until_it_is_ready() {
    use crate::languages::python::{PythonRuntime, tests as python};
    let set = python::artifact_set(
        &wat::parse_str(REACTOR).unwrap(),
        python::zip_of(&[("os.pyc", b"x")]),
    );
    let (dir, r) = router(Policy::default());
    let runtime = PythonRuntime::open(set.path(), &dir.path().join("python")).unwrap();
    let r = r.with_python(Arc::new(runtime));
    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = waits.clone();
    let options = RunOptions {
        events: Some(Arc::new(move |event| {
            if let crate::executor::TaskEvent::Progress { what, .. } = event {
                seen.lock().unwrap().push(what);
            }
        })),
        ..RunOptions::default()
    };
    let python_job = || TaskSpec::new("j", "python", json!({"code": "print(1)"}));
    let first = r.run(python_job(), options.clone()).await.unwrap();
    assert_eq!(first.stdout, "1\n");
    assert_eq!(*waits.lock().unwrap(), [PYTHON_PREPARING]);
    r.run(python_job(), options).await.unwrap();
    assert_eq!(
        waits.lock().unwrap().len(),
        1,
        "the second job did not wait"
    );
}

/// The router of [`router`] with `grep` granted outbound HTTP.
fn router_with_grep_online() -> (tempfile::TempDir, Router) {
    let (dir, r) = router(Policy::default());
    let mut tools = ToolRegistry::builtin();
    tools
        .configure(BTreeMap::from([(
            "grep".to_string(),
            crate::tools::ToolSettings {
                allowed_hosts: vec!["example.com".into()],
                ..Default::default()
            },
        )]))
        .unwrap();
    r.replace_tools(tools);
    (dir, r)
}

fn grep() -> TaskSpec {
    TaskSpec::new(
        "j",
        "tool_execution",
        json!({"tool": "grep", "pattern": "x"}),
    )
}

#[test]
fn only_wasm_tasks_without_outbound_http_or_writable_host_mounts_are_confined() {
    let (dir, r) = router(Policy {
        mount_roots: Some(vec![std::env::temp_dir()]),
        ..Policy::default()
    });
    let mut plan = r
        .plan(TaskSpec::new("j", "aggregation", json!({})))
        .unwrap();
    assert!(plan.confined(), "a built-in with a read-only mount");
    assert!(
        r.plan(grep()).unwrap().confined(),
        "a tool writing its own workspace"
    );
    let mut shared = TaskSpec::new("j", "retrieval", json!({}));
    shared.mounts.push(Mount {
        source: MountSource::Host(dir.path().to_path_buf()),
        guest_path: "/data".into(),
        writable: true,
    });
    assert!(
        !r.plan(shared).unwrap().confined(),
        "a writable host directory"
    );
    let (_d, online) = router_with_grep_online();
    assert!(
        !online.plan(grep()).unwrap().confined(),
        "a tool with outbound HTTP"
    );
    plan.task.runtime = Runtime::Model;
    assert!(!plan.confined(), "a model server");
    plan.task.runtime = Runtime::Image(ImageRuntime::default());
    assert!(!plan.confined(), "a container");
}

#[tokio::test]
async fn a_task_that_can_reach_outside_its_sandbox_runs_only_once_its_start_is_recorded() {
    let (_d, r) = router_with_grep_online();
    let gated = |gate: &StartGate| RunOptions {
        start: Some(gate.clone()),
        ..RunOptions::default()
    };
    let (record, gate) = StartGate::new();
    record.recorded(false);
    let err = r.run(grep(), gated(&gate)).await.unwrap_err();
    assert!(gate.held_back(), "{err}");
    let (record, gate) = StartGate::new();
    record.recorded(true);
    r.run(grep(), gated(&gate)).await.unwrap();
    assert!(!gate.held_back());
}

#[tokio::test]
async fn a_confined_task_runs_without_waiting_for_its_start_to_be_recorded() {
    let (_d, r) = router(Policy::default());
    let (_record, gate) = StartGate::new();
    let options = RunOptions {
        start: Some(gate.clone()),
        ..RunOptions::default()
    };
    tokio::time::timeout(Duration::from_secs(60), r.run(grep(), options))
        .await
        .expect("a confined task does not wait for the record")
        .unwrap();
    assert!(!gate.held_back());
}
