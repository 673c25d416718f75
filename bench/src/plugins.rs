//! A plugin tool called as a job (`POST /jobs?wait`), at its own size and
//! padded to the size of a componentize-py plugin (which carries CPython):
//! what a call costs that grows with the plugin's file (section 3).

use crate::report::{Row, human};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime};
use wasmnode_e2e::NodeProcess;

const S3: &str = "3. file_read 4 KiB";
/// The size of `word_count` built by componentize-py 0.25 (examples/plugin-tool-python).
const PYTHON_PLUGIN_BYTES: usize = 18 << 20;

/// The template plugin's call p50 at its own size and padded; `calls`
/// measured calls after 10 warm-up calls each.
pub async fn call_by_size(files: &Path, calls: usize) -> anyhow::Result<Vec<Row>> {
    let plugin = std::fs::read(wasmnode_e2e::plugin_tool())?;
    let small = call_p50(files, &plugin, calls).await?;
    let padded = pad(&plugin, PYTHON_PLUGIN_BYTES);
    let large = call_p50(files, &padded, calls).await?;
    Ok(vec![Row::info(
        S3,
        format!(
            "plugin tool call as a job (POST /jobs?wait), its file {} / {}: p50",
            megabytes(plugin.len()),
            megabytes(padded.len())
        ),
        format!("{} / {}", human(small), human(large)),
    )])
}

/// `component` with a custom section appended that brings it to `size`
/// bytes (custom sections are ignored by the loader, not by a read).
fn pad(component: &[u8], size: usize) -> Vec<u8> {
    let name = b"wasmnode-bench-padding";
    let payload = size.saturating_sub(component.len() + name.len() + 12);
    let mut body = leb128(name.len());
    body.extend_from_slice(name);
    body.resize(body.len() + payload, 0);
    let mut out = component.to_vec();
    out.push(0);
    out.extend(leb128(body.len()));
    out.extend(body);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A node with `component` installed as a plugin an hour ago, called as a job.
async fn call_p50(files: &Path, component: &[u8], calls: usize) -> anyhow::Result<Duration> {
    let plugins = tempfile::tempdir()?;
    let path = plugins.path().join("word_count.wasm");
    std::fs::write(&path, component)?;
    std::fs::File::options()
        .write(true)
        .open(&path)?
        .set_modified(SystemTime::now() - Duration::from_secs(3600))?;
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n[policy]\nmount_roots = [{:?}]\n",
        plugins.path(),
        files
    ))
    .await;
    let samples = crate::api::wait_each(&node, calls, |i| {
        json!({"protocol_version": 1, "job_id": format!("count-{i}"),
            "task": {"type": "tool_execution", "payload": {"tool": "word_count", "path": "/data/file.bin"}},
            "runtime": {"mode": "auto", "mounts": [{"source": files, "target": "/data"}]}})
    })
    .await?;
    Ok(samples.p50())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmnode_runtime::ComponentSource;
    use wasmnode_runtime::wasm::AllocatorChoice;

    #[tokio::test]
    async fn the_padded_plugin_is_the_size_asked_and_still_the_same_tool() {
        let plugin = std::fs::read(wasmnode_e2e::plugin_tool()).unwrap();
        let padded = pad(&plugin, 4 << 20);
        assert!(padded.len().abs_diff(4 << 20) < 16, "{}", padded.len());
        let executor = crate::sandbox::executor(AllocatorChoice::OnDemand, None).unwrap();
        let tool = executor
            .tool_description(&ComponentSource::Bytes(padded.into()))
            .await
            .unwrap()
            .expect("a tool");
        assert_eq!(tool.name, "word_count");
    }
}
