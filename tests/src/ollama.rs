//! A stand-in for an Ollama server. Ollama cannot be installed here, so this
//! replays the JSON and NDJSON shapes of Ollama's documented API
//! (docs/api.md: `/api/generate`, `/api/chat` streamed and not,
//! `/api/embed`, the older `/api/embeddings`, `/api/tags`, `/api/pull`)
//! field for field, with canned text. It records the calls it gets.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The words every generation streams, one per NDJSON line.
pub const WORDS: [&str; 4] = ["The", " sky", " is", " blue."];

#[derive(Default)]
struct Inner {
    models: Vec<String>,
    legacy_embeddings: bool,
    calls: Vec<(String, Value)>,
}

/// The fake Ollama server.
pub struct FakeOllama {
    inner: Arc<Mutex<Inner>>,
    /// Base URL.
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeOllama {
    /// Starts on a free port with `models` installed; `legacy_embeddings`
    /// makes `/api/embed` answer 404 like servers older than 0.1.44.
    pub async fn start(models: &[&str], legacy_embeddings: bool) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            models: models.iter().map(|m| m.to_string()).collect(),
            legacy_embeddings,
            calls: Vec::new(),
        }));
        let app = Router::new()
            .route("/api/tags", get(tags))
            .route("/api/generate", post(generate))
            .route("/api/chat", post(chat))
            .route("/api/embed", post(embed))
            .route("/api/embeddings", post(embeddings))
            .route("/api/pull", post(pull))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            url,
            _server: server,
        }
    }

    /// The calls received: (path, body).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().calls.clone()
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

fn record(state: &Shared, path: &str, body: &Value) {
    state
        .lock()
        .unwrap()
        .calls
        .push((path.into(), body.clone()));
}

fn model_missing(state: &Shared, body: &Value) -> Option<Response> {
    let model = body["model"].as_str().unwrap_or_default();
    let inner = state.lock().unwrap();
    if inner
        .models
        .iter()
        .any(|m| m == model || *m == format!("{model}:latest"))
    {
        return None;
    }
    Some(
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("model '{model}' not found")})),
        )
            .into_response(),
    )
}

fn ndjson(lines: Vec<Value>) -> Response {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from(body),
    )
        .into_response()
}

const CREATED: &str = "2023-08-04T08:52:19.385406455-07:00";

fn final_counts(model: &str) -> Value {
    json!({"model": model, "created_at": CREATED, "done": true, "done_reason": "stop", "total_duration": 10706818083u64,
        "load_duration": 6338219291u64, "prompt_eval_count": 26, "prompt_eval_duration": 130079000,
        "eval_count": WORDS.len(), "eval_duration": 4232710000u64})
}

async fn tags(state: Shared) -> axum::Json<Value> {
    let models: Vec<Value> = state.lock().unwrap().models.iter().map(|name| json!({
        "name": name, "model": name, "modified_at": "2025-05-10T08:06:48.639712648-07:00", "size": 4683075271u64,
        "digest": "0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",
        "details": {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"], "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}
    })).collect();
    axum::Json(json!({"models": models}))
}

async fn generate(state: Shared, axum::Json(body): axum::Json<Value>) -> Response {
    record(&state, "/api/generate", &body);
    if let Some(missing) = model_missing(&state, &body) {
        return missing;
    }
    let model = body["model"].as_str().unwrap_or_default();
    if body["stream"] == Value::Bool(false) {
        let mut done = final_counts(model);
        done["response"] = json!(WORDS.concat());
        done["context"] = json!([1, 2, 3]);
        return axum::Json(done).into_response();
    }
    let mut lines: Vec<Value> = WORDS
        .iter()
        .map(|w| json!({"model": model, "created_at": CREATED, "response": w, "done": false}))
        .collect();
    let mut done = final_counts(model);
    done["response"] = json!("");
    done["context"] = json!([1, 2, 3]);
    lines.push(done);
    ndjson(lines)
}

async fn chat(state: Shared, axum::Json(body): axum::Json<Value>) -> Response {
    record(&state, "/api/chat", &body);
    if let Some(missing) = model_missing(&state, &body) {
        return missing;
    }
    let model = body["model"].as_str().unwrap_or_default();
    if body["stream"] == Value::Bool(false) {
        let mut done = final_counts(model);
        done["message"] = json!({"role": "assistant", "content": WORDS.concat(), "images": null});
        return axum::Json(done).into_response();
    }
    let mut lines: Vec<Value> = WORDS
        .iter()
        .map(|w| json!({"model": model, "created_at": CREATED, "message": {"role": "assistant", "content": w, "images": null}, "done": false}))
        .collect();
    lines.push(final_counts(model));
    ndjson(lines)
}

/// A deterministic 4-component embedding of `text`.
pub fn vector(text: &str) -> Vec<f64> {
    let n = text.len() as f64;
    vec![0.010071029, -0.0017594862, n / 100.0, 0.5]
}

async fn embed(state: Shared, axum::Json(body): axum::Json<Value>) -> Response {
    record(&state, "/api/embed", &body);
    if state.lock().unwrap().legacy_embeddings {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "404 page not found",
        )
            .into_response();
    }
    if let Some(missing) = model_missing(&state, &body) {
        return missing;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let embeddings: Vec<Vec<f64>> = inputs.iter().map(|t| vector(t)).collect();
    axum::Json(json!({"model": body["model"], "embeddings": embeddings, "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8})).into_response()
}

async fn embeddings(state: Shared, axum::Json(body): axum::Json<Value>) -> Response {
    record(&state, "/api/embeddings", &body);
    if let Some(missing) = model_missing(&state, &body) {
        return missing;
    }
    axum::Json(json!({"embedding": vector(body["prompt"].as_str().unwrap_or_default())}))
        .into_response()
}

async fn pull(state: Shared, axum::Json(body): axum::Json<Value>) -> Response {
    record(&state, "/api/pull", &body);
    let model = body["model"]
        .as_str()
        .or(body["name"].as_str())
        .unwrap_or_default()
        .to_string();
    state.lock().unwrap().models.push(model);
    let digest = "sha256:2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8";
    ndjson(vec![
        json!({"status": "pulling manifest"}),
        json!({"status": format!("downloading {digest}"), "digest": digest, "total": 2142590208u64, "completed": 241970}),
        json!({"status": format!("downloading {digest}"), "digest": digest, "total": 2142590208u64, "completed": 2142590208u64}),
        json!({"status": "verifying sha256 digest"}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ])
}
