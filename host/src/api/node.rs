//! Node endpoints: `GET /info`, `GET /health`, `GET /metrics`.

use super::AppState;
use crate::facts;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use wasmnode_runtime::router::KNOWN_TASK_TYPES;

/// `GET /info`: static facts.
pub async fn info(State(app): State<AppState>) -> Json<Value> {
    let node = &app.node;
    let backends = node.router.backends();
    let mut modes = vec!["wasm"];
    let docker = match &node.docker {
        Some(docker) => docker.available().await,
        None => false,
    };
    if docker {
        modes.push("image");
    }
    let (probes, cached) = node.model_inventory().await;
    Json(json!({
        "worker_id": node.config.node.worker_id,
        "hostname": node.facts.hostname,
        "protocol_version": crate::job::PROTOCOL_VERSION,
        "cpu_cores": node.facts.cpu_cores,
        "cpu_threads": node.facts.cpu_threads,
        "memory_mb": node.facts.memory_mb,
        "arch": node.facts.arch,
        "labels": node.config.node.labels,
        "version": env!("CARGO_PKG_VERSION"),
        "runtime_modes": modes.iter().filter(|m| node.router.policy().allowed_modes.iter().any(|a| a == *m)).collect::<Vec<_>>(),
        "task_types": KNOWN_TASK_TYPES,
        "tools": node.router.tools().names(),
        "max_concurrent_jobs": node.scheduler.max_concurrent(),
        "executors": executors(docker),
        "llm_backends": probes,
        "cached_models": cached,
        "wasm": {
            "allocator": backends.wasm.allocator().as_str(),
            "fuel_metering": backends.wasm.fuel_metering(),
        },
    }))
}

/// `GET /health`: dynamic facts.
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let node = &app.node;
    let status = if node.scheduler.is_draining() {
        "draining"
    } else {
        "ok"
    };
    Json(json!({
        "status": status,
        "uptime_seconds": node.started.elapsed().as_secs(),
        "load_average": facts::load_average(),
        "running_jobs": node.scheduler.running(),
        "max_concurrent_jobs": node.scheduler.max_concurrent(),
        "queue_depth": node.scheduler.queue_depth(),
        "temperature_c": facts::temperature_c(),
        "control_plane": node.control_plane.snapshot(node.store.outbox_len()),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let body = app
        .node
        .metrics
        .render(app.node.router.backends().wasm.cache_stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

fn executors(docker: bool) -> Vec<&'static str> {
    let mut names = vec!["wasm", "llm"];
    if docker {
        names.push("docker");
    }
    names
}
