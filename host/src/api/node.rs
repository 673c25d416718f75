//! Node endpoints: `GET /info`, `GET /health`, `GET /metrics`, `POST /drain`.

use super::AppState;
use crate::facts;
use crate::store::Channel;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wasmnode_runtime::{disk, task_types};

/// `GET /info`: static facts.
#[utoipa::path(get, path = "/info", tag = "node", responses((status = 200, description = "Static facts: worker id, host, identity, CPU, memory, modes, task types, tools, limits and policy", body = Object), (status = 401, description = "No API key, or the wrong one")))]
pub async fn info(State(app): State<AppState>) -> Json<Value> {
    let node = &app.node;
    let wasm = node.wasm();
    let load = node.load();
    let mut modes = vec!["wasm"];
    let docker = node.containers_available().await;
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
        "os": node.facts.os,
        "os_architecture": node.facts.os_architecture,
        "cpu_model": node.facts.cpu_model,
        "labels": node.config.node.labels,
        "version": env!("CARGO_PKG_VERSION"),
        "identity": node.identity(),
        "receipts": node.config.receipts.enabled,
        "runtime_modes": modes.iter().filter(|m| node.policy().allowed_modes.iter().any(|a| a.as_str() == **m)).collect::<Vec<_>>(),
        "task_types": task_types::names().collect::<Vec<_>>(),
        "tools": node.tools().names(),
        "max_concurrent_jobs": load.max_concurrent,
        "executors": executors(docker),
        "llm_backends": probes,
        "cached_models": cached,
        "wasm": {
            "allocator": wasm.allocator().as_str(),
            "engines": wasm.engines(),
            "dirty_page_reset": wasm.allocator().resets_dirty_pages(),
            "fuel_metering": wasm.fuel_metering(),
        },
        "uploads": {
            "max_mb": node.config.blobs.max_mb,
            "components": node.policy().allow_uploaded_components,
        },
        "image_pull": node.config.docker.pull,
        "limits": {
            "defaults": node.policy().limits.defaults.to_json(),
            "maxima": node.policy().limits.maxima.to_json(),
        },
        "languages": node.languages(),
    }))
}

/// `POST /drain`: drain and stop, as the first SIGTERM does (for a
/// Kubernetes `preStop` hook: `wasmnode drain`). Answers at once; the node
/// exits once its running jobs have finished or the drain deadline passed.
#[utoipa::path(post, path = "/drain", tag = "node", responses((status = 202, description = "Draining: the node stops once its running jobs end", body = Object), (status = 401, description = "No API key, or the wrong one")))]
pub async fn drain(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    app.node.request_stop();
    let seconds = app.node.config.scheduler.drain_timeout_seconds;
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "draining", "drain_timeout_seconds": seconds})),
    )
}

/// `GET /health`: dynamic facts (the fields of ProcessingCluster's `/health`
/// v2 among them: memory, the jobs' and the container engine's disks).
#[utoipa::path(get, path = "/health", tag = "node", responses((status = 200, description = "Status, store, disks, memory, load, running and queued jobs; never needs the key", body = Object)))]
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let node = &app.node;
    let load = node.load();
    let store_error = load.store_error;
    let floor = node.config.node.min_free_disk_mb << 20;
    let data_dir = &node.config.node.data_dir;
    let jobs_disk = disk::space(data_dir);
    let free = jobs_disk.map(|s| s.available);
    let low_disk = free.is_some_and(|free| free < floor);
    let status = if load.draining {
        "draining"
    } else if store_error.is_some() || low_disk {
        "degraded"
    } else {
        "ok"
    };
    let memory = facts::memory_mb();
    let docker_root = node.containers_root_dir();
    // Only where the engine's directory is on this machine's filesystem.
    let docker_disk = docker_root.and_then(|d| disk::space(std::path::Path::new(d)));
    let mut health = json!({
        "status": status,
        "store": {"writable": store_error.is_none(), "error": store_error},
        "disk": {"free_mb": free.map(|b| b >> 20), "floor_mb": floor >> 20},
        "queued_bytes": load.queued_bytes,
        "uptime_seconds": node.started.elapsed().as_secs(),
        "load_average": facts::load_average(),
        "running_jobs": load.running,
        "max_concurrent_jobs": load.max_concurrent,
        "queue_depth": load.queued,
        "temperature_c": facts::temperature_c(&node.config.node.sysfs_root),
        "cpu_threads": node.facts.cpu_threads,
        "memory_total_mb": memory.map(|(total, _)| total),
        "memory_available_mb": memory.map(|(_, available)| available),
        "jobs_path": data_dir,
        "jobs_disk_total_mb": jobs_disk.map(|s| s.total >> 20),
        "jobs_disk_available_mb": free.map(|b| b >> 20),
        "docker_root_dir": docker_root,
        "docker_disk_total_mb": docker_disk.map(|s| s.total >> 20),
        "docker_disk_available_mb": docker_disk.map(|s| s.available >> 20),
        "control_plane": node.control_plane().snapshot(node.reports_pending(Channel::ControlPlane)),
    });
    for door in app.doors.iter() {
        if let Value::Object(fields) = &mut health {
            fields.extend(door.health(node));
        }
    }
    Json(health)
}

/// `GET /metrics`: Prometheus text format, or with `Accept:
/// application/json` the Vera-style summary.
#[utoipa::path(get, path = "/metrics", tag = "node", responses((status = 200, description = "Prometheus text; with `Accept: application/json` the Vera-style summary", content((String = "text/plain"), (Object = "application/json"))), (status = 401, description = "No API key, or the wrong one")))]
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Json(summary(&app)).into_response();
    }
    let body = app
        .node
        .metrics()
        .render(app.node.wasm().cache_stats(), app.node.index_cache_stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn summary(app: &AppState) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let node = &app.node;
    let totals = &node.metrics().totals;
    let (completed, failed) = (totals.finished.load(Relaxed), totals.failed.load(Relaxed));
    let success_rate = if completed + failed == 0 {
        1.0
    } else {
        completed as f64 / (completed + failed) as f64
    };
    let (cpu, _) = node.utilisation();
    let load = node.load();
    json!({
        "tasks_completed": completed,
        "tasks_failed": failed,
        "tasks_cancelled": totals.cancelled.load(Relaxed),
        "success_rate": success_rate,
        "avg_execution_time_seconds": totals.mean_run_seconds(),
        "cpu_usage_percent": cpu * 100.0,
        "memory_usage_gb": facts::process_rss_bytes() as f64 / 1_073_741_824.0,
        "uptime_hours": node.started.elapsed().as_secs_f64() / 3600.0,
        "active_tasks": load.running,
        "queue_depth": load.queued,
    })
}

fn executors(docker: bool) -> Vec<&'static str> {
    let mut names = vec!["wasm", "llm"];
    if docker {
        names.push("docker");
    }
    names
}

/// `GET /metrics/history`: the last hour of the console's chart samples.
#[utoipa::path(get, path = "/metrics/history", tag = "node", responses((status = 200, description = "The last hour of the console's chart samples, oldest first", body = Object), (status = 401, description = "No API key, or the wrong one")))]
pub async fn history(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "interval_seconds": app.node.config.api.chart_sample_seconds,
        "samples": app.node.metrics().history.samples(),
    }))
}
