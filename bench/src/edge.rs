//! Section 10, edge: the `edge` profile's memory idle and loaded (beside
//! the standard profile's in section 7), and the first task of an aarch64
//! build under qemu with the edge profile on a fresh data directory, with
//! the built-in's code embedded in the binary and without it (its guest
//! compiled on the spot), against the same task once the code cache holds it.

use crate::api::{sample_peak_rss, settled_rss_kib};
use crate::report::{Row, human};
use futures::StreamExt;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmnode_e2e::NodeProcess;

const S10: &str = "10. edge";

fn job(id: usize) -> serde_json::Value {
    json!({"protocol_version": 1, "job_id": format!("edge-{id}"),
           "task": {"type": "retrieval", "payload": {"query": "wasm", "documents": "wasm\ndocker\nedge"}},
           "runtime": {"mode": "wasm"}})
}

/// The edge profile's idle RSS (code cache warm) and its peak while
/// `jobs` retrieval jobs from 8 clients run on its 2 slots.
pub async fn profile_memory(jobs: usize) -> anyhow::Result<Vec<Row>> {
    let mut node = NodeProcess::start("[node]\nprofile = \"edge\"\n").await;
    node.wait_warm().await;
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(30)).await;
    node.restart().await;
    let pid = node.pid();
    let idle = settled_rss_kib(pid).await;
    let (peak, sampler) = sample_peak_rss(pid, idle);
    let client = reqwest::Client::new();
    let url = node.at("/jobs?wait=60");
    let finished = futures::stream::iter(0..jobs)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let answer: serde_json::Value =
                    client.post(&url).json(&job(i)).send().await?.json().await?;
                anyhow::Ok(answer["state"] == "finished")
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    sampler.abort();
    let done = finished
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    anyhow::ensure!(done == jobs, "only {done} of {jobs} edge jobs finished");
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    Ok(vec![
        Row::info(S10, "edge profile: idle RSS (code cache warm)", mib(idle)),
        Row::info(
            S10,
            format!("edge profile: peak RSS, {jobs} retrieval jobs from 8 clients on 2 slots"),
            mib(peak.load(Ordering::Relaxed)),
        ),
    ])
}

/// `wasmnode run aggregation` of the aarch64 build under qemu-aarch64 with
/// the edge profile (reserving the standard profile's 256-instance pool
/// alone takes about 30 s under qemu): on a fresh data directory with the
/// built-in's code embedded in the binary, on a fresh one declining it
/// (`wasm.precompiled_builtins = false`, so the guest is compiled), then
/// again on that one (its code on disk). Each run's reported code origin is
/// checked, so a row never claims what did not happen.
pub fn first_task_under_qemu(aarch64: Option<&Path>) -> anyhow::Result<Vec<Row>> {
    let Some(binary) = aarch64 else {
        return Ok(vec![Row::info(
            S10,
            "aarch64 first task under qemu",
            "not measured: no aarch64 build given (--aarch64)",
        )]);
    };
    let run = |data: &Path, embedded: bool, expect: &str| -> anyhow::Result<Duration> {
        let config = data.join("wasmnode.toml");
        std::fs::write(
            &config,
            format!("[wasm]\nprecompiled_builtins = {embedded}\n"),
        )?;
        let started = Instant::now();
        let out = Command::new("qemu-aarch64-static")
            .arg(binary)
            .args([
                "run",
                "aggregation",
                "--full",
                "--input",
                "items_json=[{\"a\":1}]",
            ])
            .env("WASMNODE_CONFIG", &config)
            .env("WASMNODE_DATA_DIR", data)
            .env("WASMNODE_PROFILE", "edge")
            .env("WASMNODE_LOG", "warn")
            .output()?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let origin = &outcome["metrics"]["code_cache"];
        anyhow::ensure!(
            origin == expect,
            "{} reported code from {origin}, not {expect} (was it built by scripts/build-embedded.sh?)",
            binary.display()
        );
        Ok(elapsed)
    };
    let embedded = run(tempfile::tempdir()?.path(), true, "embedded")?;
    let data = tempfile::tempdir()?;
    let compiled = run(data.path(), false, "compiled")?;
    let on_disk = run(data.path(), false, "disk")?;
    Ok(vec![
        Row::info(
            S10,
            "aarch64 under qemu, edge profile: first task, fresh data dir, code embedded in the binary",
            human(embedded),
        ),
        Row::info(
            S10,
            "aarch64 under qemu, edge profile: first task, fresh data dir, embedded code declined (guest compiled)",
            human(compiled),
        ),
        Row::info(
            S10,
            "aarch64 under qemu, edge profile: first task, compiled code on disk",
            human(on_disk),
        ),
    ])
}
