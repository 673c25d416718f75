//! End-to-end through the local API (section 2) against a release node in
//! its own process, with the load generated here, and its footprint
//! (section 7: RSS idle and under load, binary size).

use crate::report::{Row, Samples, human};
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmnode_e2e::NodeProcess;

const S2: &str = "2. API end to end";
const S7: &str = "7. footprint";

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS once it has not moved by more than 64 KiB for two seconds (the
/// node compiles its built-ins in the background after a first start).
pub(crate) async fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    let mut steady = 0;
    for _ in 0..240 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid);
        steady = if now.abs_diff(last) <= 64 {
            steady + 1
        } else {
            0
        };
        last = now;
        if steady >= 8 {
            break;
        }
    }
    last
}

/// Voluntary context switches of each of `pid`'s threads, by thread id.
fn voluntary_switches(pid: u32) -> HashMap<u64, u64> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    threads
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse::<u64>().ok()?;
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let line = status
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
            Some((tid, line.split_whitespace().nth(1)?.parse::<u64>().ok()?))
        })
        .collect()
}

/// How often `pid`'s threads wake per second, counted over `window`, thread
/// by thread: a thread that ends meanwhile (tokio's blocking threads do
/// after 10 s idle) must not take its earlier wakeups off the others'.
async fn wakeups_per_second(pid: u32, window: Duration) -> f64 {
    let before = voluntary_switches(pid);
    tokio::time::sleep(window).await;
    let woken: u64 = voluntary_switches(pid)
        .into_iter()
        .map(|(tid, now)| now.saturating_sub(before.get(&tid).copied().unwrap_or(0)))
        .sum();
    woken as f64 / window.as_secs_f64()
}

/// Samples `pid`'s RSS every 20 ms into the returned peak (KiB, starting at
/// `start`) until the task is aborted.
pub(crate) fn sample_peak_rss(
    pid: u32,
    start: u64,
) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(start));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    (peak, sampler)
}

/// Two slots and room for every submitted job.
const CONFIG: &str = "[scheduler]\nmax_concurrent_jobs = 2\nqueue_capacity = 100000\n";

/// Jobs per second through `node`: accepted (32 clients submitting), and
/// from the first submission until every job finished.
struct Throughput {
    accepted: f64,
    finished: f64,
}

async fn sustained(
    node: &NodeProcess,
    client: &reqwest::Client,
    jobs: usize,
) -> anyhow::Result<Throughput> {
    let started = Instant::now();
    let submit = node.at("/jobs");
    futures::stream::iter(0..jobs)
        .map(|i| {
            let client = client.clone();
            let submit = submit.clone();
            async move {
                client
                    .post(&submit)
                    .json(&job(&format!("tp-{i}")))
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
            }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("submission accepted");
        })
        .await;
    let accepted_in = started.elapsed();
    loop {
        let health: serde_json::Value = client.get(node.at("/health")).send().await?.json().await?;
        if health["queue_depth"] == 0 && health["running_jobs"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    Ok(Throughput {
        accepted: jobs as f64 / accepted_in.as_secs_f64(),
        finished: jobs as f64 / total.as_secs_f64(),
    })
}

/// The mean of the histogram `name` in the metrics text `metrics`, summed
/// over its labels (0 when it has no observations).
fn mean_seconds(metrics: &str, name: &str) -> f64 {
    let total = |suffix: &str| -> f64 {
        let prefix = format!("{name}_{suffix}");
        metrics
            .lines()
            .filter(|l| {
                l.strip_prefix(&prefix)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = total("count");
    if count == 0.0 {
        0.0
    } else {
        total("sum") / count
    }
}

/// The round trips of `calls` jobs, each made by `job` from its number and
/// submitted with `POST /jobs?wait`, after 10 warm-up jobs; each must finish.
pub async fn wait_each(
    node: &NodeProcess,
    calls: usize,
    job: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<Samples> {
    let client = reqwest::Client::new();
    let url = node.at("/jobs?wait=30");
    let mut samples = Vec::with_capacity(calls);
    for i in 0..10 + calls {
        let body = job(i);
        let started = Instant::now();
        let answer: serde_json::Value = client.post(&url).json(&body).send().await?.json().await?;
        anyhow::ensure!(answer["state"] == "finished", "{answer}");
        if i >= 10 {
            samples.push(started.elapsed());
        }
    }
    Ok(Samples(samples))
}

fn job(id: &str) -> serde_json::Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": "aggregation", "payload": {"items_json": "[{\"a\":1}]"}},
           "runtime": {"mode": "wasm", "component": "builtin:aggregation"}})
}

/// Sections 2 and 7.
pub async fn end_to_end(
    latency_jobs: usize,
    throughput_jobs: usize,
    binary: &std::path::Path,
    musl: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Row>> {
    let mut node = NodeProcess::start(CONFIG).await;
    let idle_first = settled_rss_kib(node.pid()).await;
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(30)).await;
    node.restart().await;
    let pid = node.pid();
    let idle = settled_rss_kib(pid).await;
    let wakeups = wakeups_per_second(pid, Duration::from_secs(10)).await;
    let (peak, sampler) = sample_peak_rss(pid, idle);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // Latency: one client at a time, submit and wait for the result in one round trip.
    let url = node.at("/jobs?wait=30");
    for i in 0..20 {
        client
            .post(&url)
            .json(&job(&format!("warm-{i}")))
            .send()
            .await?
            .error_for_status()?;
    }
    let mut samples = Vec::with_capacity(latency_jobs);
    for i in 0..latency_jobs {
        let started = Instant::now();
        let answer: serde_json::Value = client
            .post(&url)
            .json(&job(&format!("lat-{i}")))
            .send()
            .await?
            .json()
            .await?;
        samples.push(started.elapsed());
        anyhow::ensure!(answer["state"] == "finished", "{answer}");
    }
    let latency = Samples(samples);

    let durable = sustained(&node, &client, throughput_jobs).await?;
    let metrics = client.get(node.at("/metrics")).send().await?.text().await?;
    let receipt = mean_seconds(&metrics, "wasmnode_receipt_seconds");
    let task = mean_seconds(&metrics, "wasmnode_task_duration_seconds");
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    drop(node);
    let periodic_node =
        NodeProcess::start(&format!("{CONFIG}[store]\nsync = \"periodic\"\n")).await;
    // Not while it compiles its built-ins, as the durable node did not.
    periodic_node.wait_warm().await;
    let periodic = sustained(&periodic_node, &client, throughput_jobs).await?;
    drop(periodic_node);
    let unsigned_node = NodeProcess::start(&format!("{CONFIG}[receipts]\nenabled = false\n")).await;
    unsigned_node.wait_warm().await;
    let unsigned = sustained(&unsigned_node, &client, throughput_jobs).await?;
    drop(unsigned_node);
    let released = match musl {
        Some(path) => {
            let musl_node = NodeProcess::start_binary(path, CONFIG).await;
            musl_node.wait_warm().await;
            let musl = sustained(&musl_node, &client, throughput_jobs).await?;
            format!(
                "{:.0} jobs/s; {:.2}×",
                musl.finished,
                musl.finished / durable.finished
            )
        }
        None => "not measured: no static build given (--musl)".to_string(),
    };
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![
        Row::target(
            S2,
            "POST /jobs?wait → finished, 1 client: p50 / p99",
            format!("{} / {}", human(latency.p50()), human(latency.p99())),
            "p50 < 2 ms",
            latency.p50() < Duration::from_millis(2),
        ),
        Row::info(
            S2,
            "acceptance, 32 clients: durable (sync = always) / sync = periodic",
            format!("{:.0} / {:.0} jobs/s", durable.accepted, periodic.accepted),
        ),
        Row::target(
            S2,
            format!("sustained, {throughput_jobs} jobs, 2 slots, submit → all finished: durable"),
            format!("{:.0} jobs/s", durable.finished),
            "≥ 6,000 jobs/s",
            durable.finished >= 6000.0,
        ),
        Row::info(
            S2,
            "the same with sync = periodic (commits forced once a second)",
            format!("{:.0} jobs/s", periodic.finished),
        ),
        Row::target(
            S2,
            "durable ÷ periodic, sustained",
            format!("{:.2}×", durable.finished / periodic.finished),
            "≥ 0.8×",
            durable.finished >= 0.8 * periodic.finished,
        ),
        Row::info(
            S2,
            "per job, mean: its signed receipt (hash output and files, sign) / the task itself",
            format!("{:.1} µs / {:.1} µs", receipt * 1e6, task * 1e6),
        ),
        Row::info(
            S2,
            "sustained, durable, without receipts (receipts.enabled = false): jobs/s; with ÷ without",
            format!(
                "{:.0} jobs/s; {:.2}×",
                unsigned.finished,
                durable.finished / unsigned.finished
            ),
        ),
        Row::info(
            S2,
            "sustained, durable, the static x86_64 musl build (as released): jobs/s; ÷ the durable row",
            released,
        ),
        Row::target(
            S7,
            "idle RSS of wasmnode serve (code cache warm: every start but the first)",
            format!("{:.1} MiB", mib(idle)),
            "< 30 MB",
            mib(idle) * 1.048_576 < 30.0,
        ),
        Row::info(
            S7,
            "idle node: its threads woken per second (voluntary context switches over 10 s)",
            format!("{wakeups:.1}"),
        ),
        Row::info(
            S7,
            "idle RSS after the first start (built-ins just compiled)",
            format!("{:.1} MiB", mib(idle_first)),
        ),
        Row::info(
            S7,
            "peak RSS under the API load",
            format!("{:.1} MiB", mib(peak)),
        ),
        Row::target(
            S7,
            "binary size (stripped)",
            format!("{:.1} MiB", size as f64 / 1_048_576.0),
            "< 40 MB",
            (size as f64) < 40e6,
        ),
    ])
}
