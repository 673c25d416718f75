//! What one run used (`TaskMetrics`), for its outcome or its failure.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Resource usage of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskMetrics {
    /// Wall-clock time from start to end, in milliseconds.
    pub wall_time_ms: f64,
    /// Fuel consumed (WASI tasks with fuel metering).
    pub fuel_consumed: Option<u64>,
    /// CPU time used, in milliseconds, where the backend reports it.
    pub cpu_time_ms: Option<f64>,
    /// Highest memory use in bytes (linear memory for WASI, cgroup for Docker).
    pub peak_memory_bytes: Option<u64>,
    /// Whether compiled code came from the cache (WASI only).
    pub code_cache: Option<String>,
    /// What ran: `blake3:HEX` of a component's bytes, a container image's
    /// id (`sha256:HEX`), or `MODEL@BACKEND` for a model server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran: Option<String>,
    /// Model tokens, prompt and completion (model tasks, where the server
    /// says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// Duration to fractional milliseconds.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
