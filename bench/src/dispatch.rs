//! Control-plane dispatch (section 6): an agent against the test SPLAI
//! control plane, with SPLAI's default poll interval (1.5 s).

use crate::report::{Row, Samples, human};
use serde_json::json;
use std::time::{Duration, Instant};
use wasmnode_e2e::NodeProcess;
use wasmnode_e2e::control_plane::{TaskDef, TestControlPlane};

const S6: &str = "6. control-plane dispatch";
/// SPLAI's worker polls every 1.5 s and takes one task per poll.
const SPLAI_POLL: Duration = Duration::from_millis(1500);

/// Section 6.
pub async fn latency(tasks: usize) -> anyhow::Result<Vec<Row>> {
    let cp = TestControlPlane::start().await;
    cp.set_timing(5, Duration::from_secs(60));
    let artifacts = tempfile::tempdir()?;
    let config = format!(
        "[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 1500\nmax_parallel_tasks = 2\n",
        artifacts.path().display().to_string()
    );
    let _node = NodeProcess::start_agent(&cp.url(), "bench-worker", &config).await;
    // Warm-up task, then the batch, submitted at once.
    cp.submit([TaskDef::new(
        "warm",
        "w0",
        "aggregation",
        json!({"items_json": "[]"}),
    )]);
    cp.wait_done(1, Duration::from_secs(60)).await;
    tokio::time::sleep(SPLAI_POLL).await;
    let ids: Vec<String> = (0..tasks).map(|i| format!("t{i}")).collect();
    let started = Instant::now();
    cp.submit(ids.iter().enumerate().map(|(i, id)| {
        TaskDef::new(
            "batch",
            id,
            "aggregation",
            json!({"items_json": format!("[{{\"i\":{i}}}]")}),
        )
    }));
    cp.wait_done(tasks + 1, Duration::from_secs(120)).await;
    let submitted = started.elapsed();
    let worked = cp
        .batch_span(&ids)
        .ok_or_else(|| anyhow::anyhow!("a task of the batch did not complete"))?;
    let latencies = Samples(cp.dispatch_latencies());
    // One task per poll: the first poll takes one, each of the others
    // waits a poll interval.
    let floor = SPLAI_POLL * (tasks as u32).saturating_sub(1);
    Ok(vec![
        Row::target(
            S6,
            "assignment → accepted Completed report: p50 / p99",
            format!("{} / {}", human(latencies.p50()), human(latencies.p99())),
            "< 1.5 s poll floor",
            latencies.p50() < SPLAI_POLL,
        ),
        Row::info(
            S6,
            format!("batch of {tasks} tasks queued at once: first assignment → last report"),
            format!(
                "{} (SPLAI's worker: ≥ {} at one task per 1.5 s poll)",
                human(worked),
                human(floor)
            ),
        ),
        Row::info(
            S6,
            format!(
                "batch of {tasks} tasks queued at once: submitted → last report (with the wait for the node's next poll, up to 1.5 s)"
            ),
            human(submitted),
        ),
    ])
}
