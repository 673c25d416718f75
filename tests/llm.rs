//! Model tasks through the real node: Ollama's API (against a stand-in that
//! replays Ollama's documented shapes; Ollama itself cannot be installed
//! here), backends that are down or missing, GPU-only models, local and
//! remote embeddings, remote retrieval, and `model_download` against a local
//! server in the Hugging Face URL layout (resume, digests, one download for
//! concurrent requests).

use serde_json::{Value, json};
use sha2::Digest;
use std::time::Duration;
use wasmnode_e2e::files::FileServer;
use wasmnode_e2e::ollama::{FakeOllama, WORDS};
use wasmnode_e2e::{Gate, NodeProcess, test_guest_dir, wait_terminal};

const WAIT: Duration = Duration::from_secs(60);

fn config(ollama: &FakeOllama, files: &FileServer, extra: &str) -> String {
    let policy = format!(
        "[policy]\ncomponent_roots = [{:?}]\n",
        test_guest_dir().display().to_string()
    );
    with_policy(&policy, ollama, files, extra)
}

/// The vLLM backend is down: port 9 (discard), where nothing listens. A
/// port merely free when the test started could be taken by another test's
/// server by the time the node calls it.
fn with_policy(policy: &str, ollama: &FakeOllama, files: &FileServer, extra: &str) -> String {
    format!(
        "{policy}[llm]\nhf_endpoint = {files:?}\nhf_token = \"hf_test\"\nretrieval_base_url = {files:?}\ngpu_models = [\"big-gpu-*\"]\n\
         [llm.backends.ollama]\nurl = {ollama:?}\n[llm.backends.vllm]\nurl = \"http://127.0.0.1:9\"\n{extra}",
        files = files.url,
        ollama = ollama.url,
    )
}

fn job(id: &str, task_type: &str, payload: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": task_type, "payload": payload}, "runtime": {"mode": "auto"}})
}

async fn result(client: &reqwest::Client, node: &NodeProcess, id: &str) -> Value {
    let done = wait_terminal(client, node, id, WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    node.get_json(&format!("/jobs/{id}/result")).await
}

#[tokio::test]
async fn ollama_generation_streams_tokens_and_reports_usage() {
    let ollama = FakeOllama::start(&["llama3.2:latest"], false).await;
    let files = FileServer::start().await;
    let gate = Gate::new();
    let node = NodeProcess::start(&with_policy(
        &gate.policy(""),
        &ollama,
        &files,
        "[scheduler]\nmax_concurrent_jobs = 1\n",
    ))
    .await;
    let client = reqwest::Client::new();
    node.post_json("/jobs", &gate.job("blocker")).await;
    let (status, body) = node.post_json("/jobs", &job("gen", "llm_inference", json!({"prompt": "Why is the sky blue?", "model": "llama3.2", "max_tokens": "64", "seed": "7"}))).await;
    assert_eq!(status, 200, "{body}");
    let seen = node.job_events("gen", Some(&gate)).await;
    let tokens: Vec<&str> = seen
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, v)| v["data"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, WORDS, "tokens arrive as events, in order");
    let out = result(&client, &node, "gen").await;
    assert_eq!(out["text"], WORDS.concat());
    assert_eq!(
        (
            out["backend"].as_str(),
            out["model"].as_str(),
            out["mode"].as_str()
        ),
        (Some("ollama"), Some("llama3.2"), Some("completion"))
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 26, "completion_tokens": 4, "total_tokens": 30})
    );
    assert!(out["timings"]["first_token_ms"].is_number());
    let (_, sent) = ollama
        .calls()
        .into_iter()
        .find(|(p, _)| p == "/api/generate")
        .unwrap();
    assert_eq!(sent["options"], json!({"num_predict": 64, "seed": 7}));
    assert_eq!(sent["stream"], true);

    let chat = job(
        "chat",
        "llm_inference",
        json!({"messages_json": "[{\"role\":\"user\",\"content\":\"hi\"}]", "model": "llama3.2", "stream": "false"}),
    );
    node.post_json("/jobs", &chat).await;
    let out = result(&client, &node, "chat").await;
    assert_eq!(
        (
            out["text"].as_str(),
            out["mode"].as_str(),
            out["streamed"].as_bool()
        ),
        (Some("The sky is blue."), Some("chat"), Some(false))
    );
    assert_eq!(out["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn missing_models_are_installed_first_when_asked() {
    let ollama = FakeOllama::start(&[], false).await;
    let files = FileServer::start().await;
    let node = NodeProcess::start(&config(&ollama, &files, "")).await;
    let client = reqwest::Client::new();
    node.post_json(
        "/jobs",
        &job(
            "nomodel",
            "llm_inference",
            json!({"prompt": "x", "model": "qwen2"}),
        ),
    )
    .await;
    let done = wait_terminal(&client, &node, "nomodel", WAIT).await;
    assert_eq!(
        (done["state"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("INVALID_INPUT")),
        "{done}"
    );
    node.post_json(
        "/jobs",
        &job(
            "install",
            "llm_inference",
            json!({"prompt": "x", "model": "qwen2", "_install_model_if_missing": "true"}),
        ),
    )
    .await;
    let out = result(&client, &node, "install").await;
    assert_eq!(out["text"], WORDS.concat());
    let paths: Vec<String> = ollama.calls().into_iter().map(|(p, _)| p).collect();
    let pull = paths.iter().position(|p| p == "/api/pull").expect("pulled");
    assert!(
        paths[pull..].contains(&"/api/generate".to_string()),
        "{paths:?}"
    );
}

#[tokio::test]
async fn embeddings_local_ollama_and_the_older_ollama_endpoint() {
    let ollama = FakeOllama::start(&["all-minilm:latest"], false).await;
    let legacy = FakeOllama::start(&["all-minilm:latest"], true).await;
    let files = FileServer::start().await;
    let node = NodeProcess::start(&config(
        &ollama,
        &files,
        &format!(
            "[llm.backends.old]\nurl = {:?}\nprotocol = \"ollama\"\n",
            legacy.url
        ),
    ))
    .await;
    let client = reqwest::Client::new();
    let batch = json!({"texts_json": "[\"first text\", \"second\"]", "embedding_backend": "ollama", "embedding_model": "all-minilm"});
    node.post_json("/jobs", &job("emb", "embedding", batch.clone()))
        .await;
    let out = result(&client, &node, "emb").await;
    assert_eq!(
        (out["count"].as_u64(), out["dimension"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(
        (out["embeddings"][1][2].as_f64().unwrap() - 0.06).abs() < 1e-6,
        "{out}"
    );
    let mut old = batch.clone();
    old["embedding_backend"] = json!("old");
    node.post_json("/jobs", &job("emb-old", "embedding", old))
        .await;
    let out = result(&client, &node, "emb-old").await;
    assert_eq!(out["count"], 2);
    assert_eq!(
        legacy
            .calls()
            .iter()
            .filter(|(p, _)| p == "/api/embeddings")
            .count(),
        2,
        "one call per text on the older endpoint"
    );

    node.post_json(
        "/jobs",
        &job(
            "emb-local",
            "embedding",
            json!({"text": "hello", "dimension": "16"}),
        ),
    )
    .await;
    let out = result(&client, &node, "emb-local").await;
    assert_eq!(
        (out["backend"].as_str(), out["dimension"].as_u64()),
        (Some("local"), Some(16))
    );
    let norm: f64 = out["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap().powi(2))
        .sum();
    assert!((norm - 1.0).abs() < 1e-4);
    let mut wrong = batch;
    wrong["embedding_dimension"] = json!("384");
    node.post_json("/jobs", &job("emb-dim", "embedding", wrong))
        .await;
    let done = wait_terminal(&client, &node, "emb-dim", WAIT).await;
    assert_eq!(
        done["error"]["code"], "INVALID_INPUT",
        "dimension mismatch is checked: {done}"
    );
}

#[tokio::test]
async fn down_missing_and_gpu_only_backends_fail_fast_and_clearly() {
    let ollama = FakeOllama::start(&["big-gpu-70b"], false).await;
    let files = FileServer::start().await;
    let node = NodeProcess::start(&config(&ollama, &files, "")).await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    node.post_json(
        "/jobs",
        &job(
            "down",
            "llm_inference",
            json!({"prompt": "x", "model": "m", "backend": "vllm"}),
        ),
    )
    .await;
    let done = wait_terminal(&client, &node, "down", WAIT).await;
    assert_eq!(done["error"]["code"], "BACKEND_UNAVAILABLE", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not answering"),
        "{done}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no hang: {:?}",
        started.elapsed()
    );
    let (status, body) = node
        .post_json(
            "/jobs",
            &job(
                "none",
                "llm_inference",
                json!({"prompt": "x", "model": "m", "backend": "remote_api"}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("BACKEND_UNAVAILABLE")),
        "{body}"
    );
    node.post_json(
        "/jobs",
        &job(
            "gpu",
            "llm_inference",
            json!({"prompt": "x", "model": "big-gpu-70b"}),
        ),
    )
    .await;
    let done = wait_terminal(&client, &node, "gpu", WAIT).await;
    assert_eq!(done["error"]["code"], "POLICY_DENIED", "{done}");
    assert!(
        ollama.calls().iter().all(|(p, _)| p != "/api/generate"),
        "nothing was sent for the GPU-only model"
    );
}

#[tokio::test]
async fn remote_retrieval_and_info_advertise_backends() {
    let ollama = FakeOllama::start(&["llama3.2:latest"], false).await;
    let files = FileServer::start().await;
    let node = NodeProcess::start(&config(&ollama, &files, "")).await;
    let client = reqwest::Client::new();
    node.post_json(
        "/jobs",
        &job(
            "remote",
            "retrieval",
            json!({"query": "q1", "retrieval_backend": "remote_api", "top_k": "3"}),
        ),
    )
    .await;
    let out = result(&client, &node, "remote").await;
    assert_eq!(out["documents"][0]["id"], "remote-1");
    let info: Value = node.get_json("/info").await;
    let backends = info["llm_backends"].as_array().unwrap();
    let by_name = |n: &str| backends.iter().find(|b| b["name"] == n).unwrap().clone();
    assert_eq!(
        (
            by_name("ollama")["available"].as_bool(),
            by_name("ollama")["models"].clone()
        ),
        (Some(true), json!(["llama3.2:latest"]))
    );
    assert_eq!(by_name("vllm")["available"], false);
}

#[tokio::test]
async fn model_downloads_resume_verify_and_download_once() {
    let ollama = FakeOllama::start(&[], false).await;
    let files = FileServer::start().await;
    let model: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let sha = hex(&sha2::Sha256::digest(&model));
    files.add("acme/tiny-gguf", "tiny.Q4.gguf", model.clone());
    files.drop_once_after(300_000);
    let node = NodeProcess::start(&config(
        &ollama,
        &files,
        "[scheduler]\nmax_concurrent_jobs = 2\n",
    ))
    .await;
    let client = reqwest::Client::new();
    let download = |id: &str, sha: &str| {
        job(
            id,
            "model_download",
            json!({"model": "acme/tiny-gguf", "file": "tiny.Q4.gguf", "sha256": sha}),
        )
    };

    node.post_json("/jobs", &download("dl1", &sha)).await;
    let out = result(&client, &node, "dl1").await;
    assert_eq!(
        (
            out["bytes"].as_u64(),
            out["cached"].as_bool(),
            out["resumes"].as_u64()
        ),
        (Some(1_500_000), Some(false), Some(1))
    );
    assert_eq!(
        std::fs::read(out["path"].as_str().unwrap()).unwrap(),
        model,
        "resumed file is intact"
    );
    assert_eq!(
        files.requests()[1].1.as_deref(),
        Some("bytes=300000-"),
        "the second request resumed: {:?}",
        files.requests()
    );
    assert!(
        files
            .bearers()
            .iter()
            .all(|b| b.as_deref() == Some("Bearer hf_test")),
        "HF_TOKEN is sent"
    );

    node.post_json("/jobs", &download("dl2", &sha)).await;
    assert_eq!(
        result(&client, &node, "dl2").await["cached"],
        true,
        "only_if_missing skips the transfer"
    );
    assert_eq!(files.requests().len(), 2);

    files.add("acme/other", "b.gguf", vec![7u8; 200_000]);
    node.post_json(
        "/jobs",
        &job(
            "bad",
            "model_download",
            json!({"model": "acme/other/b.gguf", "sha256": "00".repeat(32)}),
        ),
    )
    .await;
    let done = wait_terminal(&client, &node, "bad", WAIT).await;
    assert_eq!(done["error"]["code"], "INVALID_INPUT", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{done}"
    );
    let cache = node
        .data_dir
        .path()
        .join("models/huggingface/acme/other/main");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "the partial file is removed: {left:?}");

    let big: Vec<u8> = vec![3u8; 3_000_000];
    let big_sha = hex(&sha2::Sha256::digest(&big));
    files.add("acme/big", "big.gguf", big);
    let before = files.requests().len();
    for id in ["same1", "same2"] {
        node.post_json(
            "/jobs",
            &job(
                id,
                "model_download",
                json!({"model": "acme/big/big.gguf", "sha256": big_sha}),
            ),
        )
        .await;
    }
    let a = result(&client, &node, "same1").await;
    let b = result(&client, &node, "same2").await;
    assert_eq!(
        files.requests().len() - before,
        1,
        "two concurrent requests, one download"
    );
    assert_ne!(
        a["cached"], b["cached"],
        "one downloaded, the other found it: {a} {b}"
    );

    let info: Value = node.get_json("/info").await;
    assert!(
        info["cached_models"]
            .as_array()
            .unwrap()
            .contains(&json!("huggingface/acme/big/main/big.gguf")),
        "{info}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
