//! MCP `tools/call` round trip for `file_read` over stdio (`wasmnode mcp`,
//! spoken here as raw JSON-RPC lines), beside the same call submitted as a
//! job through `POST /jobs?wait` (section 2).

use crate::report::{Row, Samples, human};
use anyhow::Context;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use wasmnode_e2e::NodeProcess;

const S2: &str = "2. API end to end";

/// Both rows: `calls` measured calls after 10 warm-up calls each.
pub async fn round_trip(files: &Path, calls: usize, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let config = format!(
        "[policy]\nmount_roots = [{:?}]\n[mcp]\nmounts = [\"{}:/data\"]\n",
        files,
        files.display()
    );
    let stdio = {
        let (binary, config) = (binary.to_path_buf(), config.clone());
        tokio::task::spawn_blocking(move || over_stdio(&binary, &config, calls)).await??
    };
    let api = through_api(files, &config, calls).await?;
    Ok(vec![
        Row::info(
            S2,
            "MCP tools/call file_read (4 KiB) over stdio, 1 client: p50 / p99",
            format!("{} / {}", human(stdio.p50()), human(stdio.p99())),
        ),
        Row::info(
            S2,
            "the same file_read as a job, POST /jobs?wait, 1 client: p50 / p99",
            format!("{} / {}", human(api.p50()), human(api.p99())),
        ),
    ])
}

fn over_stdio(binary: &Path, config: &str, calls: usize) -> anyhow::Result<Samples> {
    let data = tempfile::tempdir()?;
    let config_file = data.path().join("node.toml");
    std::fs::write(&config_file, config)?;
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&config_file)
        .arg("mcp")
        .arg("--data-dir")
        .arg(data.path().join("state"))
        .env("WASMNODE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start wasmnode mcp")?;
    let mut input = child.stdin.take().context("stdin")?;
    let mut output = BufReader::new(child.stdout.take().context("stdout")?);
    let mut send = |message: Value| -> anyhow::Result<()> {
        writeln!(input, "{message}")?;
        Ok(input.flush()?)
    };
    let mut answer = |id: u64| -> anyhow::Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            anyhow::ensure!(
                output.read_line(&mut line)? > 0,
                "wasmnode mcp closed stdout"
            );
            let message: Value = serde_json::from_str(&line)?;
            if message["id"] == id {
                return Ok(message);
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "wasmnode-bench", "version": "1"}}}),
    )?;
    answer(0)?;
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
    let mut samples = Vec::with_capacity(calls);
    for id in 1..=(10 + calls) as u64 {
        let started = Instant::now();
        send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "file_read", "arguments": {"path": "/data/file.bin"}}}))?;
        let reply = answer(id)?;
        anyhow::ensure!(reply["result"]["isError"] == false, "{reply}");
        if id > 10 {
            samples.push(started.elapsed());
        }
    }
    drop(input);
    child.wait()?;
    Ok(Samples(samples))
}

async fn through_api(files: &Path, config: &str, calls: usize) -> anyhow::Result<Samples> {
    let node = NodeProcess::start(config).await;
    crate::api::wait_each(&node, calls, |i| {
        json!({"protocol_version": 1, "job_id": format!("read-{i}"),
            "task": {"type": "tool_execution", "payload": {"tool": "file_read", "args": {"path": "/data/file.bin"}}},
            "runtime": {"mode": "auto", "mounts": [{"source": files, "target": "/data"}]}})
    })
    .await
}
