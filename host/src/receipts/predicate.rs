//! The receipt's predicate: what ran, on which input, under which limits
//! and policy, how it ended, when, and what it used.

use crate::job::JobRequest;
use crate::store::JobRecord;
use serde::Serialize;
use serde_json::{Value, json};
use wasmnode_runtime::policy::Policy;

/// What a receipt says of a job's request and the rules it runs under,
/// taken when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    input: Value,
    limits: Value,
    policy: Value,
}

impl Terms {
    /// The terms of `request` under `policy`.
    pub fn of(request: &JobRequest, policy: &Policy) -> Self {
        let runtime = &request.runtime;
        let input = json!({
            "env": runtime.env.keys().collect::<Vec<_>>(),
            "secrets": runtime.secrets.keys().collect::<Vec<_>>(),
            "mounts": runtime.mounts,
            "deterministic": runtime
                .deterministic
                .then(|| json!({"seed": runtime.seed.unwrap_or(0)})),
        });
        let limits = match policy.limits.resolve(&runtime.limits) {
            Ok(limits) => limits.to_json(),
            Err(refused) => json!({"refused": refused.message}),
        };
        let policy = json!({
            "allowed_modes": policy.allowed_modes,
            "allow_uploaded_components": policy.allow_uploaded_components,
            "network": "none",
        });
        Self {
            input,
            limits,
            policy,
        }
    }
}

/// The input digest of a job whose canonical request (the job document as
/// the store keeps it, secret values withheld) hashes to `spec_hash`.
pub fn input_digest(spec_hash: &str) -> String {
    format!("blake3:{spec_hash}")
}

/// The predicate of the ended job `record` under `terms`, signed by `node`,
/// whose output document is `output_bytes` long, borrowing what it names.
pub fn predicate<'a>(
    terms: &'a Terms,
    record: &'a JobRecord,
    node: Node<'a>,
    output_bytes: usize,
) -> Predicate<'a> {
    let result = record.result.as_ref();
    let metrics = result.and_then(|r| r.metrics.as_ref());
    Predicate {
        input: Input {
            bytes: record.request_bytes,
            digest: input_digest(&record.spec_hash),
            terms: &terms.input,
        },
        job: Job {
            attempt: record.attempts,
            id: &record.job_id,
            mode: &record.mode,
            task_type: &record.task_type,
        },
        limits: &terms.limits,
        node,
        outcome: Outcome {
            error_code: result
                .and_then(|r| r.error.as_ref())
                .map(|e| e.code.as_str()),
            exit_code: result.and_then(|r| r.exit_code),
            state: record.state.as_str(),
        },
        policy: &terms.policy,
        ran: Ran {
            digest: metrics.and_then(|m| m.ran.as_deref()),
            executor: result.and_then(|r| r.executor.as_deref()),
        },
        timings: Timings {
            finished_at_ms: record.finished_at_ms,
            started_at_ms: record.started_at_ms,
            submitted_at_ms: record.submitted_at_ms,
            wall_time_ms: metrics.map_or(0.0, |m| m.wall_time_ms),
        },
        usage: Usage {
            cpu_time_ms: metrics.and_then(|m| m.cpu_time_ms),
            fuel_consumed: metrics.and_then(|m| m.fuel_consumed),
            output_bytes,
            peak_memory_bytes: metrics.and_then(|m| m.peak_memory_bytes),
            tokens: metrics.and_then(|m| m.tokens),
        },
    }
}

/// The signing node, as a receipt names it.
#[derive(Serialize)]
pub struct Node<'a> {
    /// Its key's fingerprint.
    pub fingerprint: &'a str,
    /// The node's version.
    pub version: &'static str,
    /// Its worker id.
    pub worker_id: &'a str,
}

/// A receipt's predicate (fields in sorted order, as the keys are written).
#[derive(Serialize)]
pub struct Predicate<'a> {
    input: Input<'a>,
    job: Job<'a>,
    limits: &'a Value,
    node: Node<'a>,
    outcome: Outcome<'a>,
    policy: &'a Value,
    ran: Ran<'a>,
    timings: Timings,
    usage: Usage,
}

/// The request's digest and size, then what the terms name of it in clear
/// (names, mounts, deterministic mode).
#[derive(Serialize)]
struct Input<'a> {
    bytes: u64,
    digest: String,
    #[serde(flatten)]
    terms: &'a Value,
}

#[derive(Serialize)]
struct Job<'a> {
    attempt: u32,
    id: &'a str,
    mode: &'a str,
    task_type: &'a str,
}

#[derive(Serialize)]
struct Outcome<'a> {
    error_code: Option<&'static str>,
    exit_code: Option<i32>,
    state: &'a str,
}

#[derive(Serialize)]
struct Ran<'a> {
    digest: Option<&'a str>,
    executor: Option<&'a str>,
}

#[derive(Serialize)]
struct Timings {
    finished_at_ms: Option<u64>,
    started_at_ms: Option<u64>,
    submitted_at_ms: u64,
    wall_time_ms: f64,
}

#[derive(Serialize)]
struct Usage {
    cpu_time_ms: Option<f64>,
    fuel_consumed: Option<u64>,
    output_bytes: usize,
    peak_memory_bytes: Option<u64>,
    tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(env_value: &str) -> JobRequest {
        serde_json::from_value(json!({
            "protocol_version": 1,
            "job_id": "j",
            "task": {"type": "aggregation", "payload": {"values": [1, 2]}},
            "runtime": {"mode": "auto", "env": {"TOKEN": env_value},
                        "mounts": [{"source": "/srv/data", "target": "/data", "mode": "ro"}]},
        }))
        .unwrap()
    }

    #[test]
    fn an_environment_value_never_enters_the_terms() {
        let terms = Terms::of(&request("hunter2-secret"), &Policy::default());
        let text = format!("{terms:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(terms.input["env"], json!(["TOKEN"]));
        assert_eq!(terms.input["mounts"][0]["mode"], "ro");
    }

    #[test]
    fn the_limits_are_the_effective_ones() {
        let mut asked = request("x");
        asked.runtime.limits.memory_mb = Some(64);
        let terms = Terms::of(&asked, &Policy::default());
        assert_eq!(terms.limits["memory_bytes"], 64 << 20);
        assert_eq!(terms.limits["timeout_seconds"], 60.0);
    }
}
