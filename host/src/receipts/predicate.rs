//! The receipt's predicate: what ran, on which input, under which limits
//! and policy, how it ended, when, and what it used.

use crate::job::JobRequest;
use crate::store::JobRecord;
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
/// whose output document is `output_bytes` long.
pub fn predicate(terms: &Terms, record: &JobRecord, node: Value, output_bytes: usize) -> Value {
    let result = record.result.clone().unwrap_or_default();
    let metrics = result.metrics.unwrap_or_default();
    json!({
        "node": node,
        "job": {
            "id": record.job_id,
            "task_type": record.task_type,
            "mode": record.mode,
            "attempt": record.attempts,
        },
        "ran": {
            "executor": result.executor,
            "digest": metrics.ran,
        },
        "input": input(terms, record),
        "limits": terms.limits,
        "policy": terms.policy,
        "outcome": {
            "state": record.state.as_str(),
            "error_code": result.error.map(|e| e.code),
            "exit_code": result.exit_code,
        },
        "timings": {
            "submitted_at_ms": record.submitted_at_ms,
            "started_at_ms": record.started_at_ms,
            "finished_at_ms": record.finished_at_ms,
            "wall_time_ms": metrics.wall_time_ms,
        },
        "usage": {
            "fuel_consumed": metrics.fuel_consumed,
            "cpu_time_ms": metrics.cpu_time_ms,
            "peak_memory_bytes": metrics.peak_memory_bytes,
            "tokens": metrics.tokens,
            "output_bytes": output_bytes,
        },
    })
}

/// The input part of the predicate: the request's digest, then what the
/// terms name of it in clear (names, mounts, deterministic mode).
fn input(terms: &Terms, record: &JobRecord) -> Value {
    let mut input = terms.input.clone();
    input["digest"] = json!(input_digest(&record.spec_hash));
    input["bytes"] = json!(record.request_bytes);
    input
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
