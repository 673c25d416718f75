//! The retrieval index cache against the real binary: the second query of a
//! corpus reads the index the first one built, answers the same, survives a
//! restart, and a changed corpus never reuses the old index; a corpus
//! uploaded once as a blob is queried by name.

use serde_json::{Value, json};
use wasmnode_e2e::NodeProcess;

const CONFIG: &str = "[retrieval]\nindex_cache_mb = 1\nindex_cache_min_corpus_kb = 1\n";

fn corpus(changed: bool) -> String {
    let mut docs: Vec<Value> = (0..60)
        .map(|i| {
            json!({"id": format!("doc-{i:02}"), "text": format!("worker {i} renews its lease before the timeout; shard {}", i % 7),
                "metadata": {"shard": i % 7}})
        })
        .collect();
    // Escapes in a text: the index keeps such a text itself instead of
    // referring to it in the corpus file.
    docs[5]["text"] = json!("worker 5 says \"lease\"\nthen times out\tshard 5");
    if changed {
        docs[42]["text"] = json!("a quorum of gossip messages settles the membership view");
    }
    Value::Array(docs).to_string()
}

async fn query(node: &NodeProcess, job: &str, query: &str, docs: &str) -> Value {
    ask(
        node,
        job,
        json!({"query": query, "documents_json": docs, "top_k": 3}),
    )
    .await
}

fn job(job: &str, payload: Value) -> Value {
    json!({"protocol_version": 1, "job_id": job,
        "task": {"type": "retrieval", "payload": payload}, "runtime": {"mode": "auto"}})
}

async fn ask(node: &NodeProcess, id: &str, payload: Value) -> Value {
    let body = job(id, payload);
    let (status, answer) = node.post_json("/jobs?wait=60", &body).await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("finished")),
        "{answer}"
    );
    answer["result"].clone()
}

/// Checks the node's index cache counters in `/metrics`.
async fn assert_cache_events<const N: usize>(node: &NodeProcess, counts: [(&str, u64); N]) {
    let metrics = reqwest::get(node.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (code, count) in counts {
        let line = format!("wasmnode_index_cache_events{{code=\"{code}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

fn without_cache_field(mut output: Value) -> Value {
    output.as_object_mut().unwrap().remove("index_cache");
    output
}

#[tokio::test]
async fn a_repeated_corpus_is_answered_from_its_cached_index_and_a_changed_one_is_not() {
    let mut node = NodeProcess::start(CONFIG).await;
    let docs = corpus(false);
    let first = query(&node, "q1", "lease timeout shard 3", &docs).await;
    assert_eq!(first["index_cache"], "miss", "{first}");
    let again = query(&node, "q2", "lease timeout shard 3", &docs).await;
    assert_eq!(again["index_cache"], "hit", "{again}");
    assert_eq!(
        without_cache_field(again),
        without_cache_field(first.clone())
    );
    let quoted = query(&node, "q2b", "says then times", &docs).await;
    assert_eq!(quoted["index_cache"], "hit");
    assert_eq!(
        quoted["documents"][0]["text"], "worker 5 says \"lease\"\nthen times out\tshard 5",
        "{quoted}"
    );

    let changed = corpus(true);
    let other = query(&node, "q3", "gossip membership", &changed).await;
    assert_eq!(
        other["index_cache"], "miss",
        "a changed document is a new corpus: {other}"
    );
    assert_eq!(other["documents"][0]["id"], "doc-42");
    let old = query(&node, "q4", "gossip membership", &docs).await;
    assert_eq!(old["index_cache"], "hit");
    assert_eq!(
        old["documents"],
        json!([]),
        "the old corpus has no such words: {old}"
    );

    assert_cache_events(&node, [("hit", 3), ("miss", 2), ("stored", 2)]).await;

    node.crash_and_restart().await;
    let after = query(&node, "q5", "lease timeout shard 3", &docs).await;
    assert_eq!(
        after["index_cache"], "hit",
        "the cache outlives the process: {after}"
    );
    assert_eq!(without_cache_field(after), without_cache_field(first));
}

#[tokio::test]
async fn a_task_may_not_name_an_index_for_the_guest_to_read() {
    let node = NodeProcess::start(CONFIG).await;
    let body = json!({"protocol_version": 1, "job_id": "forged",
        "task": {"type": "retrieval", "payload": {"query": "x", "documents_json": corpus(false),
            "index_cache": {"read": "/data/planted.bm25"}}},
        "runtime": {"mode": "auto"}});
    let (status, answer) = node.post_json("/jobs", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("index_cache"), "{answer}");
}

#[tokio::test]
async fn a_corpus_that_is_not_json_fails_its_task_and_is_not_kept() {
    let node = NodeProcess::start(CONFIG).await;
    let broken = format!("[{}", corpus(false).trim_start_matches('['));
    let broken = broken.replace("\"text\"", "text");
    for job in ["bad-1", "bad-2"] {
        let body = json!({"protocol_version": 1, "job_id": job,
            "task": {"type": "retrieval", "payload": {"query": "lease", "documents_json": broken}},
            "runtime": {"mode": "auto"}});
        let (status, answer) = node.post_json("/jobs?wait=60", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["state"].as_str(), answer["error"]["code"].as_str()),
            (Some("failed"), Some("INVALID_INPUT")),
            "{answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("documents_json"),
            "the input is named as the task gave it: {answer}"
        );
    }
    assert_cache_events(&node, [("miss", 2), ("stored", 0)]).await;
}

#[tokio::test]
async fn a_corpus_uploaded_once_is_queried_by_name_and_shares_the_index_of_the_same_bytes_inline() {
    let node = NodeProcess::start(CONFIG).await;
    let docs = corpus(false);
    let (status, uploaded) = node.upload(docs.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    let blob = uploaded["blob"].as_str().unwrap();
    let by_name = json!({"query": "lease timeout shard 3", "documents_blob": blob, "top_k": 3});
    let first = ask(&node, "b1", by_name.clone()).await;
    assert_eq!(first["index_cache"], "miss", "{first}");
    let again = ask(&node, "b2", by_name).await;
    assert_eq!(again["index_cache"], "hit", "{again}");
    let inline = query(&node, "b3", "lease timeout shard 3", &docs).await;
    assert_eq!(inline["index_cache"], "hit", "the same bytes: {inline}");
    assert_eq!(
        without_cache_field(first),
        without_cache_field(inline.clone())
    );
    assert_eq!(without_cache_field(again), without_cache_field(inline));
    assert_cache_events(&node, [("hit", 2), ("miss", 1), ("stored", 1)]).await;

    let refused = |id: &str, payload: Value, says: &'static str| {
        let node = &node;
        let body = job(id, payload);
        async move {
            let (status, answer) = node.post_json("/jobs", &body).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (400, Some("INVALID_INPUT")),
                "{answer}"
            );
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{message} should say {says}");
        }
    };
    let unknown = format!("blob:{}", "1".repeat(64));
    refused(
        "b4",
        json!({"query": "x", "documents_blob": unknown}),
        "PUT /blobs",
    )
    .await;
    refused(
        "b5",
        json!({"query": "x", "documents_blob": blob, "documents_json": docs}),
        "only one of",
    )
    .await;
}
