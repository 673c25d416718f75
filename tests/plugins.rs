//! The plugin-author path: build the template in `examples/plugin-tool`,
//! inspect it, and run it by name from a plugin directory, through the CLI
//! and through the job API.

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use wasmnode_e2e::{
    NodeProcess, json, plugin_tool as plugin, stderr, tool_run, wait_terminal, wasmnode,
};

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin(), dir.path().join("word_count.wasm")).unwrap();
    dir
}

#[test]
fn the_template_builds_inspects_and_runs_by_name() {
    let data = tempfile::tempdir().unwrap();
    let out = wasmnode(
        data.path(),
        &["tool", "inspect", plugin().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["tool"]["name"], "word_count");

    let plugins = plugin_dir();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let config = data.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nplugin_dir = {:?}\n",
            plugins.path().display().to_string()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let listed = wasmnode(data.path(), &["--config", config, "tool", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("word_count\tplugin"),
        "{}",
        stderr(&listed)
    );
    let mount = format!("{}:/in", files.path().display());
    let out = wasmnode(
        data.path(),
        &[
            "--config",
            config,
            "tool",
            "run",
            "word_count",
            "--mount",
            &mount,
            "--args",
            r#"{"path": "/in/poem.txt"}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out),
        json!({"path": "/in/poem.txt", "lines": 2, "words": 3, "bytes": 14})
    );
}

#[tokio::test]
async fn plugins_serve_tool_execution_jobs() {
    let plugins = plugin_dir();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.path().display().to_string()
    ))
    .await;
    let client = reqwest::Client::new();
    let job = json!({"protocol_version": 1, "job_id": "wc",
        "task": {"type": "tool_execution", "payload": {"tool": "word_count", "path": "/workspace/missing.txt"}},
        "runtime": {"mode": "auto"}});
    let r = client
        .post(node.at("/jobs"))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = wait_terminal(&client, &node, "wc", std::time::Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed");
    assert_eq!(
        done["error"]["code"], "INVALID_INPUT",
        "the tool's not-found error maps to INVALID_INPUT: {done}"
    );
    let info: serde_json::Value = node.get_json("/info").await;
    assert!(
        info["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("word_count"))
    );
}

#[test]
fn a_tools_arguments_are_checked_against_its_schema_before_it_runs() {
    let data = tempfile::tempdir().unwrap();
    let wasm = plugin();
    let run = |args: &str| {
        wasmnode(
            data.path(),
            &["tool", "run", wasm.to_str().unwrap(), "--args", args],
        )
    };
    let out = run(r#"{"path": 3}"#);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("INVALID_INPUT") && err.contains("/path"),
        "{err}"
    );
    let out = run("{}");
    assert!(
        stderr(&out).contains("\"path\" is a required property"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_read_write_mount_on_a_tool_that_does_not_write_is_refused_not_downgraded() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mount = format!("{}:/src:rw", files.path().display());
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "run",
            "builtin:grep",
            "--mount",
            &mount,
            "--args",
            r#"{"pattern": "x", "path": "/src"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("does not write") && err.contains(":ro"),
        "{err}"
    );
}

#[test]
fn inspect_shows_mount_needs_as_objects_and_list_speaks_json() {
    let data = tempfile::tempdir().unwrap();
    let out = wasmnode(data.path(), &["tool", "inspect", "builtin:file_write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tool = &json(&out)["tool"];
    assert_eq!(tool["writes"], true, "{tool}");
    assert!(tool["mounts"].is_array(), "{tool}");
    let out = wasmnode(data.path(), &["tool", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json(&out);
    assert!(
        listed
            .as_array()
            .unwrap()
            .contains(&json!({"name": "grep", "kind": "builtin", "image": null})),
        "{listed}"
    );
}

#[tokio::test]
async fn a_submission_that_breaks_a_known_tools_contract_is_refused_at_once() {
    let plugins = plugin_dir();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.path().display().to_string()
    ))
    .await;
    let tool_job = |id: &str, payload: serde_json::Value| {
        json!({"protocol_version": 1, "job_id": id,
            "task": {"type": "tool_execution", "payload": payload}, "runtime": {"mode": "auto"}})
    };
    // Plugins are described when they are loaded.
    let (status, body) = node
        .post_json(
            "/jobs",
            &tool_job("typed", json!({"tool": "word_count", "path": 3})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_INPUT", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("/path"),
        "{body}"
    );
    // Built-in tools once the node has prepared them.
    node.wait_warm().await;
    let (status, body) = node
        .post_json(
            "/jobs",
            &tool_job(
                "bogus",
                json!({"tool": "grep", "pattern": "x", "bogus": true}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("bogus"),
        "{body}"
    );
    let texts =
        json!({"tool": "list", "path": "/workspace", "max_entries": "5", "recursive": "false"});
    assert_eq!(
        node.post_json("/jobs", &tool_job("texts", texts)).await.0,
        200
    );
    let client = reqwest::Client::new();
    let done = wait_terminal(&client, &node, "texts", std::time::Duration::from_secs(60)).await;
    assert_eq!(
        done["state"], "finished",
        "numbers and booleans sent as text still pass: {done}"
    );
}

#[test]
fn tool_run_shows_the_whole_outcome_with_full_and_takes_a_memory_limit() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("a.txt"), "needle\n").unwrap();
    let mount = format!("{}:/src", files.path().display());
    let args = r#"{"pattern": "needle", "path": "/src"}"#;
    let base = [
        "tool",
        "run",
        "builtin:grep",
        "--mount",
        &mount,
        "--args",
        args,
    ];
    let out = wasmnode(
        data.path(),
        &[&base[..], &["--full", "--memory-mb", "64"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = json(&out);
    assert!(whole["output"].is_object(), "{whole}");
    assert!(
        whole["metrics"]["peak_memory_bytes"].as_u64().unwrap() <= 64 << 20,
        "{whole}"
    );
    let out = wasmnode(
        data.path(),
        &[&base[..], &["--memory-mb", "999999999"]].concat(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a limit beyond the node's maximum is refused: {}",
        stderr(&out)
    );
}

#[test]
fn a_new_tool_project_builds_outside_the_repository_tests_and_runs() {
    let started = std::time::Instant::now();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("line_count");
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "new",
            "line_count",
            "--dir",
            project.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        project.join("wit/tool.wit").is_file(),
        "the WIT travels with the project"
    );
    let again = wasmnode(
        data.path(),
        &[
            "tool",
            "new",
            "line_count",
            "--dir",
            project.to_str().unwrap(),
        ],
    );
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing directory is never overwritten"
    );
    let bad = wasmnode(data.path(), &["tool", "new", "Line-Count"]);
    assert!(stderr(&bad).contains("lower-case"), "{}", stderr(&bad));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/wasm-guests");
    let cargo = || {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&project)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        c
    };
    let tested = cargo()
        .args(["test", "--target-dir"])
        .arg(target.join("native"))
        .status()
        .unwrap();
    assert!(tested.success(), "the project's own test passes");
    let built = cargo()
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .unwrap();
    assert!(built.success(), "the project builds");
    let wasm = target.join("wasm32-wasip2/release/line_count.wasm");
    std::fs::write(work.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let mount = format!("{}:/in", work.path().display());
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "run",
            wasm.to_str().unwrap(),
            "--mount",
            &mount,
            "--args",
            r#"{"path": "/in/poem.txt"}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["lines"], 2);
    let cases = project.join("cases");
    let tool_test = || {
        let args = [
            "tool",
            "test",
            wasm.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
        ];
        let out = wasmnode(data.path(), &args);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        (out, table)
    };
    let (out, table) = tool_test();
    assert!(
        out.status.success() && table.contains("3 passed, 0 failed"),
        "{table}{}",
        stderr(&out)
    );
    std::fs::write(
        cases.join("wrong.json"),
        r#"{"args": {"path": "/in/poem.txt"}, "mounts": ["data:/in"], "expect": {"output": {"lines": 9}}}"#,
    )
    .unwrap();
    let (out, table) = tool_test();
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("FAIL  wrong") && table.contains("3 passed, 1 failed"),
        "{table}"
    );
    let wit = wasmnode(data.path(), &["wit"]);
    assert!(String::from_utf8_lossy(&wit.stdout).contains("world tool"));
    println!(
        "tool new to a passing tool test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_tool_reads_its_settings_and_logs_through_the_tool_world() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let mount = format!("{}:/in", files.path().display());
    let plugin = plugin();
    let poem = r#"{"path": "/in/poem.txt"}"#;
    let run = |extra: &[&str]| {
        tool_run(
            data.path(),
            &plugin,
            &mount,
            poem,
            &[&["--full"], extra].concat(),
        )
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = json(&out);
    assert_eq!(
        whole["stderr"], "[INFO word_count] counted /in/poem.txt (14 bytes)\n",
        "a log record is a line of the task's stderr: {whole}"
    );
    let out = run(&["--set", "max_bytes=5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("over max_bytes (5)"),
        "the setting reached the tool: {}",
        stderr(&out)
    );
    let node_toml = data.path().join("node.toml");
    std::fs::write(&node_toml, "[tools.word_count.config]\nmax_bytes = \"5\"\n").unwrap();
    let out = run(&["--config", node_toml.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("over max_bytes (5)"),
        "the operator's setting reaches a tool run from its file: {}",
        stderr(&out)
    );
    let out = run(&[
        "--config",
        node_toml.to_str().unwrap(),
        "--set",
        "max_bytes=100",
    ]);
    assert!(out.status.success(), "--set overrides: {}", stderr(&out));
    let relative = tool_run(data.path(), &plugin, &mount, r#"{"path": "poem.txt"}"#, &[]);
    assert!(
        stderr(&relative).contains("poem.txt: no such file"),
        "as the README says, a guest's relative paths start at /: {}",
        stderr(&relative)
    );
    let out = run(&["--set", "no-equals-sign"]);
    assert!(stderr(&out).contains("KEY=VALUE"), "{}", stderr(&out));
}

#[tokio::test]
async fn jobs_set_only_the_tool_settings_the_operator_allows_and_follow_its_log() {
    let plugins = plugin_dir();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n[policy]\nmount_roots = [{:?}]\n\
         [tools.word_count]\njob_config = [\"max_bytes\"]\n[tools.word_count.config]\nmax_bytes = \"1000\"\n",
        plugins.path(),
        files.path()
    ))
    .await;
    let job = |id: &str, config: serde_json::Value| {
        json!({"protocol_version": 1, "job_id": id, "task": {"type": "tool_execution",
            "payload": {"tool": "word_count", "args": {"path": "/in/poem.txt"}, "config": config}},
            "runtime": {"mode": "auto", "mounts": [{"source": files.path(), "target": "/in"}]}})
    };
    let client = reqwest::Client::new();
    let (status, body) = node
        .post_json("/jobs", &job("small", json!({"max_bytes": 5})))
        .await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &node, "small", std::time::Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_bytes (5)"),
        "{done}"
    );
    let (status, body) = node
        .post_json("/jobs", &job("secret", json!({"token": "x"})))
        .await;
    assert_eq!(
        status, 422,
        "a key the operator did not open is refused: {body}"
    );
    assert_eq!(body["error"]["code"], "POLICY_DENIED", "{body}");

    let (status, body) = node.post_json("/jobs", &job("fine", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &node, "fine", std::time::Duration::from_secs(60)).await;
    assert_eq!(done["state"], "finished", "{done}");
    let job = node.get_json("/jobs/fine").await;
    assert_eq!(
        job["stderr"], "[INFO word_count] counted /in/poem.txt (14 bytes)\n",
        "the tool's log is kept with the job: {job}"
    );
}
