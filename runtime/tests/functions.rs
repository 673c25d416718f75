//! Components that export plain functions: found with their JSON Schemas,
//! called with JSON arguments, their results (and `err`s) back as JSON, and
//! held to the same sandbox and limits as every other task.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use wasmnode_runtime::builtins::test_guests;
use wasmnode_runtime::wasm::{WasmConfig, World};
use wasmnode_runtime::{
    ComponentSource, FailureKind, Runtime, TaskFailure, TaskOutcome, TaskSpec, WasmExecutor,
    WasmRuntime,
};

fn functions() -> ComponentSource {
    ComponentSource::File(test_guests::FUNCTIONS.into())
}

/// A task calling `export` of the test component with `args`.
fn call(export: &str, args: Value) -> TaskSpec {
    let mut spec = TaskSpec::new("job-1", "wasm", args);
    spec.runtime = Runtime::Wasm(WasmRuntime {
        function: Some(export.into()),
        ..WasmRuntime::new(functions())
    });
    spec
}

async fn output(export: &str, args: Value) -> Value {
    let out: TaskOutcome = run(call(export, args)).await.unwrap();
    out.output
}

async fn failure(export: &str, args: Value) -> TaskFailure {
    run(call(export, args)).await.unwrap_err()
}

#[tokio::test]
async fn inspect_lists_each_callable_function_with_its_schemas() {
    let info = executor().inspect(&functions()).await.unwrap();
    assert_eq!(info.world, World::Functions);
    let exports: Vec<&str> = info.functions.iter().map(|f| f.export.as_str()).collect();
    for export in [
        "add",
        "greet",
        "divide",
        "spin",
        "save",
        "test:functions/shapes#area",
        "test:functions/shapes#centroid",
        "test:functions/shapes#label",
        "test:functions/shapes#split",
    ] {
        assert!(exports.contains(&export), "{export} in {exports:?}");
    }
    let skipped: Vec<&str> = info.skipped.iter().map(|s| s.export.as_str()).collect();
    assert!(
        skipped.contains(&"test:functions/counters#make"),
        "{skipped:?}"
    );
    assert!(
        info.skipped
            .iter()
            .all(|s| s.reason == "it uses a resource, which has no JSON form"),
        "{:?}",
        info.skipped
    );
    let schema = |export: &str| {
        info.functions
            .iter()
            .find(|f| f.export == export)
            .unwrap()
            .clone()
    };
    let area = schema("test:functions/shapes#area");
    assert_eq!(
        area.args_schema["required"],
        json!(["s"]),
        "option params may be left out"
    );
    assert_eq!(
        area.args_schema["properties"]["s"]["oneOf"][2],
        json!({"const": "dot"})
    );
    assert_eq!(area.output_schema, Some(json!({"type": "number"})));
    let label = schema("test:functions/shapes#label");
    assert_eq!(
        label.args_schema["properties"]["styles"]["items"]["enum"],
        json!(["bold", "italic"])
    );
    assert_eq!(label.args_schema["properties"]["tag"]["maxLength"], 1);
    assert_eq!(
        schema("divide").output_schema,
        Some(json!({"type": "number"})),
        "a result's ok type is the output; its err fails the call"
    );
    assert_eq!(schema("save").output_schema, None);
    assert_eq!(
        schema("test:functions/shapes#split").args_schema["properties"]["n"]["maximum"],
        json!(u64::MAX)
    );
}

#[tokio::test]
async fn listing_functions_again_needs_none_of_the_components_code() {
    let cache = tempfile::tempdir().unwrap();
    let executor = WasmExecutor::new(WasmConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..WasmConfig::default()
    })
    .unwrap();
    let listed = executor.functions(&functions()).await.unwrap();
    assert!(listed.iter().any(|f| f.export == "add"), "add is listed");
    assert!(
        !executor.is_ready(&functions()),
        "listed, then its code let go"
    );
    assert!(
        executor
            .tool_description(&functions())
            .await
            .unwrap()
            .is_none(),
        "not a tool"
    );
    let again = executor.functions(&functions()).await.unwrap();
    assert_eq!(again.len(), listed.len());
    assert!(
        again.iter().zip(&listed).all(|(a, b)| Arc::ptr_eq(a, b)),
        "the same functions"
    );
    assert!(
        !executor.is_ready(&functions()),
        "listed again without loading its code"
    );
    let out = run_on(&executor, call("add", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!(out.output, json!(5));
    assert_eq!(out.metrics.code_cache.as_deref(), Some("disk"));
}

#[tokio::test]
async fn functions_take_and_return_json_for_every_wit_type() {
    assert_eq!(output("add", json!({"a": 2, "b": -5})).await, json!(-3));
    assert_eq!(
        output("greet", json!({"name": "ada"})).await,
        json!(["hello, ada"]),
        "an absent option is none"
    );
    assert_eq!(
        output("greet", json!({"name": "ada", "times": 2})).await,
        json!(["hello, ada", "hello, ada"])
    );
    assert_eq!(
        output(
            "test:functions/shapes#area",
            json!({"s": {"rect": [10, 20]}, "u": "cm"})
        )
        .await,
        json!(2.0)
    );
    assert_eq!(
        output("test:functions/shapes#area", json!({"s": "dot", "u": null})).await,
        json!(0.0)
    );
    assert_eq!(
        output(
            "test:functions/shapes#centroid",
            json!({"points": [{"x": 0, "y": 0}, {"x": 4, "y": 2}]})
        )
        .await,
        json!({"x": 2.0, "y": 1.0})
    );
    assert_eq!(
        output(
            "test:functions/shapes#label",
            json!({"p": {"x": 1, "y": 2}, "styles": ["bold"], "tag": "é"})
        )
        .await,
        json!("**é(1, 2)**")
    );
    assert_eq!(
        output(
            "test:functions/shapes#split",
            json!({"n": u64::MAX, "d": 10})
        )
        .await,
        json!([u64::MAX / 10, u64::MAX % 10])
    );
}

#[tokio::test]
async fn an_err_result_fails_the_call_with_its_value() {
    let err = failure("divide", json!({"a": 1, "b": 0})).await;
    assert_eq!(err.kind, FailureKind::NonZeroExit);
    assert_eq!(
        err.message,
        "function `divide` returned an error: division by zero"
    );
    let err = failure("test:functions/shapes#centroid", json!({"points": []})).await;
    assert!(
        err.message.ends_with("returned an error: no points"),
        "{err}"
    );
}

#[tokio::test]
async fn arguments_that_do_not_fit_the_types_are_invalid_input() {
    let cases = [
        ("add", json!({"a": 1}), "\"b\" is a required property"),
        (
            "add",
            json!({"a": 1, "b": 2, "c": 3}),
            "Additional properties",
        ),
        ("add", json!({"a": 1, "b": 3000000000u64}), "/b"),
        ("test:functions/shapes#area", json!({"s": "hexagon"}), "/s"),
        (
            "test:functions/shapes#label",
            json!({"p": {"x": 1, "y": 2}, "styles": [], "tag": "ab"}),
            "/tag",
        ),
        ("greet", json!([1]), "is not of type \"object\""),
    ];
    for (export, args, expected) in cases {
        let err = failure(export, args.clone()).await;
        assert_eq!(
            err.kind,
            FailureKind::InvalidInput,
            "{export} {args}: {err}"
        );
        assert!(err.message.contains(expected), "{export} {args}: {err}");
    }
}

#[tokio::test]
async fn a_call_must_name_a_function_the_component_can_run() {
    let mut unnamed = call("add", json!({}));
    if let Runtime::Wasm(wasm) = &mut unnamed.runtime {
        wasm.function = None;
    }
    let err = run(unnamed).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidInput);
    assert!(err.message.contains("name the one to call"), "{err}");
    assert!(err.message.contains("test:functions/shapes#area"), "{err}");

    let err = failure("nope", json!({})).await;
    assert!(err.message.contains("no function `nope`"), "{err}");
    let err = failure("test:functions/counters#make", json!({})).await;
    assert!(err.message.contains("uses a resource"), "{err}");

    let mut on_a_tool = task(ComponentSource::Builtin("grep".into()), json!({}));
    if let Runtime::Wasm(wasm) = &mut on_a_tool.runtime {
        wasm.function = Some("invoke".into());
    }
    let err = run(on_a_tool).await.unwrap_err();
    assert!(err.message.contains("not plain functions"), "{err}");
}

#[tokio::test]
async fn a_function_is_held_to_its_deadline_and_its_mounts() {
    let mut spin = call("spin", json!({}));
    spin.limits = short(1.0);
    let err = run(spin).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Timeout, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut save = call("save", json!({"name": "a.txt", "text": "hi"}));
    save.mounts = vec![mount(dir.path(), "/out", true)];
    assert_eq!(run(save).await.unwrap().output, Value::Null);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "hi"
    );

    let mut read_only = call("save", json!({"name": "b.txt", "text": "hi"}));
    read_only.mounts = vec![mount(dir.path(), "/out", false)];
    let err = run(read_only).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NonZeroExit, "{err}");
    assert!(!dir.path().join("b.txt").exists());

    let err = failure("save", json!({"name": "c.txt", "text": "hi"})).await;
    assert!(
        err.message.starts_with("function `save` returned an error"),
        "{err}"
    );
}
