//! MCP end to end with a real client, the official MCP Python SDK (`mcp`
//! from PyPI), over stdio (`wasmnode mcp`) and Streamable HTTP (`/mcp` on
//! `wasmnode serve`). Run by `make test-mcp` (part of `make test`), which
//! installs the SDK once per machine and names its python in
//! `WASMNODE_MCP_PYTHON`.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wasmnode_e2e::web::WebSite;
use wasmnode_e2e::{NodeProcess, binary, plugin_tool, test_guest, wait_terminal};

const KEY: &str = "mcp-test-key";

fn python() -> PathBuf {
    std::env::var_os("WASMNODE_MCP_PYTHON")
        .map(PathBuf::from)
        .expect("WASMNODE_MCP_PYTHON names a python with `mcp` (make test-mcp sets it)")
}

/// A directory to mount, a plugin directory, and the node's configuration.
struct Fixture {
    files: tempfile::TempDir,
    plugins: tempfile::TempDir,
    site: WebSite,
}

impl Fixture {
    async fn new() -> Self {
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("notes.txt"), "alpha\nbeta wasm\n").unwrap();
        // Empty at first: a plugin is dropped in while the client is connected.
        let plugins = tempfile::tempdir().unwrap();
        Self {
            files,
            plugins,
            site: WebSite::start().await,
        }
    }

    fn config(&self) -> String {
        format!(
            "[node]\nplugin_dir = {:?}\n[policy]\nmount_roots = [{:?}]\n\
             [mcp]\nmounts = [\"{}:/src\"]\n[tools.web_fetch]\nallowed_hosts = [\"{}\"]\n",
            self.plugins.path(),
            self.files.path(),
            self.files.path().display(),
            self.site.authority
        )
    }

    /// The steps every transport is driven through, and what each answers.
    fn plan(&self) -> Value {
        json!([
            {"do": "list"},
            {"do": "call", "tool": "grep", "args": {"pattern": "wasm", "path": "/src"}},
            {"do": "call", "tool": "grep", "args": {"pattern": "x", "bogus": 1}},
            {"do": "call", "tool": "no_such_tool", "args": {}},
            {"do": "cancel", "tool": "web_fetch",
             "args": {"url": self.site.url("/hang"), "timeout_ms": 60000}},
            {"do": "add_plugin", "from": plugin_tool(),
             "to": self.plugins.path().join("word_count.wasm"), "expect": "word_count"},
            {"do": "call", "tool": "word_count", "args": {"path": "/src/notes.txt"}},
            {"do": "add_plugin", "from": test_guest("functions"),
             "to": self.plugins.path().join("calc.wasm"), "expect": "calc.add"},
            {"do": "list"},
            {"do": "call", "tool": "calc.add", "args": {"a": 2, "b": 3}},
            {"do": "call", "tool": "calc.shapes.centroid",
             "args": {"points": [{"x": 0, "y": 0}, {"x": 2, "y": 4}]}},
            {"do": "call", "tool": "calc.divide", "args": {"a": 1, "b": 0}},
            {"do": "call", "tool": "calc.add", "args": {"a": "two", "b": 3}},
        ])
    }
}

/// Runs the client with `args` after the plan file; one JSON value per step.
fn client(plan: &Value, args: &[&str]) -> Vec<Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(args[0])
        .arg(file.path())
        .args(&args[1..])
        .output()
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What every transport must show.
fn check(answers: &[Value]) {
    let tools = &answers[0]["tools"];
    for name in ["grep", "file_read", "web_fetch"] {
        assert!(tools.get(name).is_some(), "{name} is listed: {tools}");
    }
    assert!(tools.get("word_count").is_none(), "{tools}");
    assert_eq!(
        tools["grep"]["properties"]["pattern"]["type"], "string",
        "the input schema is the tool's args-schema: {}",
        tools["grep"]
    );
    let grep = &answers[1];
    assert_eq!(grep["isError"], false, "{grep}");
    assert!(
        grep["text"].as_str().unwrap().contains("beta wasm"),
        "grep ran over the operator's mount: {grep}"
    );
    assert!(grep["structured"].is_object(), "{grep}");
    // A schema violation is a tool error naming its kind.
    assert_tool_error(&answers[2], "INVALID_INPUT:");
    let unknown = &answers[3]["rpcError"];
    assert_eq!(
        unknown["code"], -32602,
        "an unknown tool is a protocol error: {unknown}"
    );
    let cancelled = &answers[4];
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert!(
        cancelled["progress"]
            .as_array()
            .unwrap()
            .contains(&json!("running")),
        "progress notifications follow the job: {cancelled}"
    );
    assert!(
        answers[5]["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("word_count")),
        "tools/list_changed came, and the new plugin is listed: {}",
        answers[5]
    );
    let plugin = &answers[6];
    assert_eq!(plugin["isError"], false, "{plugin}");
    assert_eq!(plugin["structured"]["words"], 3, "{plugin}");
    check_functions(&answers[7..]);
}

/// A component of plain functions dropped in the plugin directory: one
/// tool per function, typed by its WIT signature.
fn check_functions(answers: &[Value]) {
    let names = answers[0]["tools"].as_array().unwrap();
    for name in [
        "calc.add",
        "calc.divide",
        "calc.shapes.area",
        "calc.shapes.centroid",
    ] {
        assert!(names.contains(&json!(name)), "{name} is listed: {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.as_str().unwrap().contains("counter")),
        "functions over resources are left out: {names:?}"
    );
    let listed = &answers[1];
    assert_eq!(
        listed["tools"]["calc.add"],
        json!({"type": "object", "additionalProperties": false, "required": ["a", "b"],
               "properties": {"a": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX},
                              "b": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}}}),
        "the input schema comes from the WIT parameters: {listed}"
    );
    assert_eq!(
        listed["outputs"]["calc.add"]["properties"]["result"]["type"], "integer",
        "the output schema comes from the WIT result: {listed}"
    );
    assert_eq!(
        listed["tools"]["calc.shapes.area"]["properties"]["u"],
        json!({"anyOf": [{"type": "string", "enum": ["mm", "cm", "inch"]}, {"type": "null"}]}),
        "{listed}"
    );
    let add = &answers[2];
    assert_eq!(add["isError"], false, "{add}");
    assert_eq!(add["structured"], json!({"result": 5}), "{add}");
    let centroid = &answers[3];
    assert_eq!(
        centroid["structured"],
        json!({"result": {"x": 1.0, "y": 2.0}}),
        "{centroid}"
    );
    let divide = &answers[4];
    assert_eq!(divide["isError"], true, "{divide}");
    assert_eq!(
        divide["text"], "NON_ZERO_EXIT: function `divide` returned an error: division by zero",
        "an `err` result is a tool error: {divide}"
    );
    assert_tool_error(&answers[5], "INVALID_INPUT:");
}

/// `answer` is an `isError` result whose text starts with `kind`.
fn assert_tool_error(answer: &Value, kind: &str) {
    assert_eq!(answer["isError"], true, "{answer}");
    assert!(
        answer["text"].as_str().unwrap().starts_with(kind),
        "{answer}"
    );
}

#[test]
#[ignore = "needs the MCP Python SDK: run by make test-mcp"]
fn an_mcp_client_over_stdio_lists_calls_and_cancels_tools() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fixture = runtime.block_on(Fixture::new());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("node.toml");
    std::fs::write(&config, fixture.config()).unwrap();
    let binary = binary();
    let data_dir = format!("--data-dir={}", data.path().display());
    let answers = client(
        &fixture.plan(),
        &[
            "stdio",
            "--",
            binary.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "mcp",
            &data_dir,
        ],
    );
    check(&answers);
}

#[tokio::test]
#[ignore = "needs the MCP Python SDK: run by make test-mcp"]
async fn an_mcp_client_over_http_calls_tools_as_jobs_of_the_node() {
    let fixture = Fixture::new().await;
    let node = NodeProcess::start(&fixture.config()).await;
    let url = node.at("/mcp");
    let plan = fixture.plan();
    let answers = tokio::task::spawn_blocking(move || client(&plan, &["http", &url, ""]))
        .await
        .unwrap();
    check(&answers);

    // Every call is a job of the node; the cancelled one stops.
    let jobs = node.get_json("/jobs").await;
    let ids: Vec<String> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["via"] == "mcp")
        .filter_map(|j| j["job_id"].as_str())
        .map(str::to_string)
        .collect();
    assert!(
        ids.len() >= 6,
        "grep, web_fetch, word_count and the functions ran as jobs: {jobs}"
    );
    let http = reqwest::Client::new();
    let mut states = Vec::new();
    for id in &ids {
        let ended = wait_terminal(&http, &node, id, Duration::from_secs(120)).await;
        states.push(ended["state"].as_str().unwrap().to_string());
    }
    assert!(states.contains(&"cancelled".to_string()), "{states:?}");
    let metrics = node.get_text("/metrics").await;
    assert!(
        metrics.contains("wasmnode_jobs_submitted_total{task_type=\"tool_execution\",via=\"mcp\"}"),
        "calls are counted by front door: {metrics}"
    );
    assert!(
        states.iter().filter(|s| *s == "finished").count() >= 4,
        "{states:?}"
    );
}

#[tokio::test]
async fn mcp_over_http_is_behind_the_api_key() {
    let node = NodeProcess::start(&format!("[api]\napi_key = \"{KEY}\"\n")).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let refused = reqwest::Client::new()
        .post(node.at("/mcp"))
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn an_mcp_request_over_the_apis_body_cap_is_refused() {
    let node = NodeProcess::start("[api]\nmax_body_bytes = 4096\n").await;
    let padding = "x".repeat(8192);
    let ping =
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": {"pad": padding}}});
    let refused = reqwest::Client::new()
        .post(node.at("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
}
