//! The node built for an ARM board, run under qemu-user (`make test-arm64`
//! for aarch64, `make test-edge` for armv7 on Pulley): `WASMNODE_BIN`
//! names a wrapper that starts the cross-built binary under
//! `qemu-*-static`. Ignored in the plain test run, which has no such binary.

use serde_json::json;
use std::time::Duration;
use wasmnode_e2e::{NodeProcess, json, stderr, test_guest_dir, wasm_job, wasmnode};

/// Emulated and unoptimised for this CPU: generous, but bounded.
const WAIT: Duration = Duration::from_secs(300);

fn cross_binary() {
    let bin = std::env::var("WASMNODE_BIN").expect("WASMNODE_BIN names the cross-built node");
    assert!(std::path::Path::new(&bin).exists(), "{bin} is missing");
}

#[test]
#[ignore = "needs a cross-built binary: make test-arm64 / make test-edge"]
fn the_board_build_runs_retrieval_and_a_file_tool_over_a_mount() {
    cross_binary();
    let dir = tempfile::tempdir().unwrap();
    let out = wasmnode(
        dir.path(),
        &[
            "run",
            "retrieval",
            "--full",
            "--input",
            "query=reset password",
            "--input",
            r#"documents_json=[{"id": "inv", "text": "invoices are monthly"}, {"id": "pw", "text": "reset your password on the sign-in page"}]"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let outcome = json(&out);
    assert_eq!(outcome["output"]["documents"][0]["id"], "pw", "{outcome}");
    assert_eq!(
        outcome["metrics"]["code_cache"], "embedded",
        "a fresh data dir compiles nothing: the built-in's code is in the binary"
    );

    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("todo.txt"), "first\nTODO: ship\n").unwrap();
    let mount = format!("{}:/data:ro", data.display());
    let out = wasmnode(
        dir.path(),
        &[
            "tool",
            "run",
            "builtin:grep",
            "--mount",
            &mount,
            "--args",
            r#"{"pattern": "TODO", "path": "/data"}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["matches"][0]["line"], 2);
}

#[tokio::test]
#[ignore = "needs a cross-built binary: make test-arm64 / make test-edge"]
async fn the_board_build_serves_jobs_and_stops_a_guest_that_never_ends() {
    cross_binary();
    let config = format!(
        "[policy]\ncomponent_roots = [{:?}]\n",
        test_guest_dir().display().to_string()
    );
    let node = NodeProcess::start(&config).await;
    let health = node.get_json("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    let info = node.get_json("/info").await;
    let arch = std::env::var("WASMNODE_EXPECT_ARCH").expect("WASMNODE_EXPECT_ARCH");
    assert_eq!(info["arch"], arch.as_str(), "{info}");

    let job = wasm_job(
        "agg",
        "builtin:aggregation",
        json!({"items_json": "[{\"a\":1},{\"b\":2}]"}),
    );
    let done = node.run_job(&job, WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");

    let mut endless = wasm_job("endless", "hostile", json!({"action": "loop"}));
    endless["runtime"]["limits"] = json!({"max_runtime_seconds": 3});
    let ended = node.run_job(&endless, WAIT).await;
    assert_eq!(ended["error"]["code"], "TIMEOUT", "{ended}");
}

#[test]
#[ignore = "needs a cross-built binary: make test-arm64 / make test-edge"]
fn a_board_that_declines_the_embedded_code_compiles_the_builtin_for_its_cpu() {
    cross_binary();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wasmnode.toml");
    std::fs::write(&config, "[wasm]\nprecompiled_builtins = false\n").unwrap();
    let out = wasmnode(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "aggregation",
            "--full",
            "--input",
            r#"items_json=[{"a": 1}]"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out)["metrics"]["code_cache"],
        "compiled",
        "{}",
        json(&out)
    );
}

#[test]
#[ignore = "needs a cross-built binary: make test-arm64 / make test-edge"]
fn the_64_bit_board_build_allocates_with_mimalloc_and_armv7_with_musls_own() {
    cross_binary();
    let out = std::process::Command::new(wasmnode_e2e::binary())
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let arch = std::env::var("WASMNODE_EXPECT_ARCH").expect("WASMNODE_EXPECT_ARCH");
    assert_eq!(
        stderr(&out).contains("mimalloc: process init"),
        arch == "aarch64",
        "{arch}: {}",
        stderr(&out)
    );
}
