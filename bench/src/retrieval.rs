//! Section 5: BM25 retrieval inside the guest against the same code run
//! natively, and the index cache: a first query that builds and stores the
//! index, then repeated queries that read it, with the corpus inline and
//! uploaded once as a blob.

use crate::report::{Row, Samples, human};
use crate::sandbox::{context, executor};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wasmnode_runtime::blobs::{BlobId, BlobStore};
use wasmnode_runtime::index_cache::{IndexCache, IndexCacheSettings, StoredCorpus};
use wasmnode_runtime::wasm::AllocatorChoice;
use wasmnode_runtime::{
    ComponentSource, Executor, LimitRequest, Runtime, TaskSpec, WasmExecutor, WasmRuntime,
};

const S5: &str = "5. retrieval (BM25)";
const QUERY: &str = "scheduler lease timeout retry";
/// The corpus size the issue sets the cache targets at.
const TARGET_SIZE: usize = 100_000;

/// Synthetic, realistic-looking documents: sentences from a technical vocabulary.
pub fn corpus(n: usize) -> Vec<Value> {
    const WORDS: &[&str] = &[
        "node",
        "sandbox",
        "component",
        "memory",
        "limit",
        "timeout",
        "container",
        "image",
        "scheduler",
        "queue",
        "worker",
        "lease",
        "report",
        "artifact",
        "retrieval",
        "ranking",
        "query",
        "document",
        "index",
        "token",
        "model",
        "embedding",
        "inference",
        "latency",
        "throughput",
        "failure",
        "retry",
        "backoff",
        "heartbeat",
        "cluster",
        "edge",
        "device",
        "network",
        "policy",
        "mount",
        "filesystem",
        "manifest",
        "digest",
        "cache",
        "compile",
        "engine",
        "instance",
        "module",
        "function",
        "export",
        "import",
        "interface",
        "protocol",
        "server",
        "client",
        "request",
        "response",
        "error",
        "metric",
        "histogram",
        "counter",
        "gauge",
        "label",
        "trace",
    ];
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 12 + (next() % 28) as usize;
            let text: Vec<&str> = (0..len).map(|_| WORDS[(next() % WORDS.len() as u64) as usize]).collect();
            json!({"id": format!("doc-{i:06}"), "text": text.join(" "), "metadata": {"shard": i % 8}})
        })
        .collect()
}

/// Where a query's documents come from.
#[derive(Clone, Copy)]
enum Docs<'a> {
    /// Inline, as `documents_json`.
    Inline(&'a str),
    /// An uploaded blob (`documents_blob`).
    Blob(&'a BlobStore, &'a BlobId),
}

fn spec(docs: Docs) -> TaskSpec {
    let mut payload = json!({"query": QUERY, "top_k": 10});
    if let Docs::Inline(docs) = docs {
        payload["documents_json"] = json!(docs);
    }
    let mut spec = TaskSpec::new("bench", "retrieval", payload);
    spec.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin(
        "retrieval".into(),
    )));
    spec.limits = LimitRequest {
        memory_mb: Some(2048),
        max_runtime_seconds: Some(600.0),
        ..LimitRequest::default()
    };
    spec
}

/// One retrieval as the router runs it: through `cache` when given (a
/// blob's file found and marked used as the router does). Returns the time
/// taken and the output.
async fn run(
    executor: &WasmExecutor,
    cache: Option<&IndexCache>,
    docs: Docs<'_>,
) -> (Duration, Value) {
    let mut spec = spec(docs);
    let started = Instant::now();
    let stored = match docs {
        Docs::Blob(blobs, id) => Some(StoredCorpus::of_blob(blobs, id).expect("uploaded")),
        Docs::Inline(_) => None,
    };
    let lease = match cache {
        Some(cache) => {
            let guest = executor
                .load(&ComponentSource::Builtin("retrieval".into()))
                .expect("built-in")
                .hash;
            cache.prepare(&mut spec, &guest, stored.as_ref())
        }
        None => None,
    };
    let limits = spec.limits.clone();
    let outcome = executor
        .run(spec, context(&limits))
        .await
        .expect("retrieval runs");
    if let Some(lease) = lease {
        lease.finish(true);
    }
    (started.elapsed(), outcome.output)
}

/// Parse, index and rank natively, as the guest does.
fn native(docs: &str) -> Duration {
    let started = Instant::now();
    let parsed: Vec<Value> = serde_json::from_str(docs).expect("corpus");
    let mut index = bm25::Index::default();
    for d in &parsed {
        index.add(
            d["id"].as_str().unwrap_or_default(),
            d["text"].as_str().unwrap_or_default(),
        );
    }
    let hits = index.search(QUERY, 10, |_| true);
    assert_eq!(hits.len(), 10);
    started.elapsed()
}

/// Section 5 at each corpus size: the whole retrieval in the guest and
/// natively; then the first query through a fresh index cache (index built
/// and written) and repeated queries answered from it.
pub fn rows(sizes: &[usize], repeats: usize) -> anyhow::Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let executor = executor(AllocatorChoice::Auto, None)?;
    let mut rows = Vec::new();
    for &size in sizes {
        let docs = Value::Array(corpus(size)).to_string();
        let inline = Docs::Inline(&docs);
        let (_, uncached) = rt.block_on(run(&executor, None, inline));
        let guest = Samples(
            (0..repeats)
                .map(|_| rt.block_on(run(&executor, None, inline)).0)
                .collect(),
        );
        let blob_dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(blob_dir.path(), Default::default())?;
        let body =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(docs.clone()))]);
        let uploaded = BlobId::parse(&rt.block_on(blobs.put(body))?.blob)?;
        let blob = Docs::Blob(&blobs, &uploaded);
        let native = Samples((0..repeats).map(|_| native(&docs)).collect());
        rows.push(Row::info(
            S5,
            format!("{size} docs, top 10: guest / native (p50)"),
            format!(
                "{} / {} ({:.2}× the native time)",
                human(guest.p50()),
                human(native.p50()),
                guest.p50().as_secs_f64() / native.p50().as_secs_f64()
            ),
        ));
        let mut first = Vec::new();
        let mut again = Vec::new();
        let mut by_blob = Vec::new();
        for _ in 0..repeats {
            let dir = tempfile::tempdir()?;
            let cache = IndexCache::open(IndexCacheSettings {
                dir: dir.path().to_path_buf(),
                max_bytes: 4 << 30,
                min_corpus_bytes: 0,
            })?;
            let (took, output) = rt.block_on(run(&executor, Some(&cache), inline));
            check(&output, &uncached, "miss")?;
            first.push(took);
            for _ in 0..4 {
                let (took, output) = rt.block_on(run(&executor, Some(&cache), inline));
                check(&output, &uncached, "hit")?;
                again.push(took);
                let (took, output) = rt.block_on(run(&executor, Some(&cache), blob));
                check(&output, &uncached, "hit")?;
                by_blob.push(took);
            }
        }
        let (first, again, by_blob) = (Samples(first), Samples(again), Samples(by_blob));
        let ratio = first.p50().as_secs_f64() / native.p50().as_secs_f64();
        let share = again.p50().as_secs_f64() / first.p50().as_secs_f64();
        let first_metric =
            format!("{size} docs, first query, index built and cached: p50 / native");
        let first_value = format!(
            "{} / {} ({ratio:.2}× the native time)",
            human(first.p50()),
            human(native.p50())
        );
        let again_metric = format!("{size} docs, repeated query, index from the cache: p50");
        let again_value = format!(
            "{} ({:.1}% of the first)",
            human(again.p50()),
            share * 100.0
        );
        let blob_metric =
            format!("{size} docs, repeated query, corpus uploaded once (documents_blob): p50");
        let blob_share = by_blob.p50().as_secs_f64() / first.p50().as_secs_f64();
        let blob_value = format!(
            "{} ({:.1}% of the first)",
            human(by_blob.p50()),
            blob_share * 100.0
        );
        if size == TARGET_SIZE {
            rows.push(Row::target(
                S5,
                first_metric,
                first_value,
                "≤ 1.5× native",
                ratio <= 1.5,
            ));
            rows.push(Row::target(
                S5,
                again_metric,
                again_value,
                "≤ 20 ms p50 and ≤ 2% of the first",
                again.p50() <= Duration::from_millis(20) && share <= 0.02,
            ));
            rows.push(Row::target(
                S5,
                blob_metric,
                blob_value,
                "≤ 20 ms p50 and ≤ 2% of the first",
                by_blob.p50() <= Duration::from_millis(20) && blob_share <= 0.02,
            ));
        } else {
            rows.push(Row::info(S5, first_metric, first_value));
            rows.push(Row::info(S5, again_metric, again_value));
            rows.push(Row::info(S5, blob_metric, blob_value));
        }
    }
    Ok(rows)
}

/// Checks that a cached run answered as the uncached one did, and that the
/// cache did what the row says.
fn check(output: &Value, uncached: &Value, outcome: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        output["index_cache"] == outcome,
        "expected an index cache {outcome}, the guest said {}",
        output["index_cache"]
    );
    let mut output = output.clone();
    output.as_object_mut().map(|o| o.remove("index_cache"));
    anyhow::ensure!(
        &output == uncached,
        "the cached retrieval answered differently from the uncached one"
    );
    Ok(())
}
