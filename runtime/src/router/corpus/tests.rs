use super::super::tests::router;
use super::*;
use crate::blobs::BlobStore;
use crate::failure::FailureKind;
use crate::index_cache::{IndexCache, IndexCacheSettings};
use crate::policy::Policy;
use crate::router::RunOptions;
use serde_json::{Value, json};

fn docs() -> String {
    json!([
        {"id": "kb-1", "text": "Reset your password from the login page"},
        {"id": "kb-2", "text": "Billing cycles, invoices and refunds"},
        {"id": "kb-3", "text": "Password rules: resetting a password emails a link"}
    ])
    .to_string()
}

async fn upload(blobs: &BlobStore, bytes: &str) -> String {
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
        bytes.to_string(),
    ))]);
    blobs.put(body).await.unwrap().blob
}

fn query(corpus: (&str, &str)) -> TaskSpec {
    TaskSpec::new(
        "j",
        "retrieval",
        json!({"query": "reset password", "top_k": 2, corpus.0: corpus.1}),
    )
}

async fn rank(r: &Router, task: TaskSpec) -> Value {
    r.run(task, RunOptions::default()).await.unwrap().output
}

#[tokio::test]
async fn a_blob_corpus_is_checked_when_the_task_is_planned() {
    let (dir, r) = router(Policy::default());
    let unknown = format!("blob:{}", "a".repeat(64));
    let no_store = r.plan(query((INPUT, &unknown))).err().unwrap();
    assert_eq!(no_store.kind, FailureKind::BackendUnavailable);

    let r = r.with_blobs(BlobStore::open(dir.path().join("blobs"), Default::default()).unwrap());
    let blob = upload(r.blobs().unwrap(), &docs()).await;
    assert!(r.plan(query((INPUT, &blob))).is_ok());
    let refused = |task: TaskSpec, says: &str| {
        let err = r.plan(task).err().unwrap();
        assert_eq!(err.kind, FailureKind::InvalidInput, "{err}");
        assert!(err.message.contains(says), "{err} should say {says}");
    };
    refused(query((INPUT, &unknown)), "PUT /blobs");
    refused(query((INPUT, "blob:nonsense")), "not a blob reference");
    let mut numbered = query((INPUT, &blob));
    numbered.payload[INPUT] = json!(7);
    refused(numbered, "must be a string");
    for other in ["documents_json", "documents", "directory"] {
        let mut both = query((INPUT, &blob));
        both.payload[other] = json!(docs());
        refused(both, &format!("only one of `documents_blob` and `{other}`"));
    }
    let mut on_a_server = query((INPUT, &blob));
    on_a_server.payload["retrieval_backend"] = json!("ollama");
    refused(on_a_server, "built-in retrieval guest");
    let elsewhere = TaskSpec::new("j", "aggregation", json!({INPUT: 1}));
    assert!(
        r.plan(elsewhere).is_ok(),
        "other task types' payloads are their own"
    );
    let mut own = query((INPUT, "my own reference"));
    own.runtime = Runtime::Wasm(crate::task::WasmRuntime::new(ComponentSource::Builtin(
        "grep".into(),
    )));
    assert!(r.plan(own).is_ok(), "so are other components'");
}

#[tokio::test]
async fn a_blob_corpus_ranks_as_the_same_documents_inline_with_and_without_the_index_cache() {
    let (dir, r) = router(Policy::default());
    let r = r.with_blobs(BlobStore::open(dir.path().join("blobs"), Default::default()).unwrap());
    let blob = upload(r.blobs().unwrap(), &docs()).await;
    let inline = rank(&r, query(("documents_json", &docs()))).await;
    assert_eq!(inline["documents"][0]["id"], "kb-3", "{inline}");
    assert_eq!(rank(&r, query((INPUT, &blob))).await, inline, "no cache");
    let scratch = dir.path().join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the handed-over corpus goes with its task"
    );

    let cache = IndexCache::open(IndexCacheSettings {
        dir: dir.path().join("index-cache"),
        max_bytes: 1 << 20,
        min_corpus_bytes: 0,
    })
    .unwrap();
    let r = r.with_index_cache(cache.clone());
    let mut deterministic = query((INPUT, &blob));
    deterministic.deterministic = Some(7);
    assert_eq!(rank(&r, deterministic).await, inline);
    assert_eq!(
        cache.stats().misses,
        0,
        "a deterministic task keeps to itself"
    );
    let mut answers = Vec::new();
    for task in [
        query((INPUT, &blob)),
        query((INPUT, &blob)),
        query(("documents_json", &docs())),
    ] {
        let mut output = rank(&r, task).await;
        answers.push(output["index_cache"].take());
        output.as_object_mut().unwrap().remove("index_cache");
        assert_eq!(output, inline);
    }
    assert_eq!(
        answers,
        ["miss", "hit", "hit"],
        "one index for the same bytes"
    );
}
