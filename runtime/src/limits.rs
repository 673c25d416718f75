//! Resource limits: what a submitter asks for (`LimitRequest`), the operator's
//! defaults and maxima (`LimitPolicy`), and the effective `Limits` of a run.

use crate::failure::TaskFailure;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Limits a submitter asked for; unset fields take the operator's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    /// Memory limit in MiB.
    pub memory_mb: Option<u64>,
    /// Wall-clock limit in seconds.
    pub max_runtime_seconds: Option<f64>,
    /// Deterministic instruction budget (WASI only).
    pub fuel: Option<u64>,
    /// Cap on stdout, on stderr and on the output document, each, in bytes.
    pub max_output_bytes: Option<u64>,
    /// CPU quota in cores (containers).
    pub cpus: Option<f64>,
    /// Process limit (containers).
    pub pids: Option<u32>,
    /// Bytes the task may write into its scratch workspace, in MiB.
    pub workspace_mb: Option<u64>,
}

/// The limits one run is held to.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Fuel budget, if metered.
    pub fuel: Option<u64>,
    /// Cap on stdout, on stderr and on the output document, each, in bytes.
    pub max_output_bytes: u64,
    /// CPU quota in cores (containers).
    pub cpus: f64,
    /// Process limit (containers).
    pub pids: u32,
    /// Bytes the task may write into its scratch workspace.
    pub workspace_bytes: u64,
}

impl Limits {
    /// The limits as JSON, in bytes and seconds (receipts, `/info`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "memory_bytes": self.memory_bytes,
            "timeout_seconds": self.timeout.as_secs_f64(),
            "fuel": self.fuel,
            "max_output_bytes": self.max_output_bytes,
            "cpus": self.cpus,
            "pids": self.pids,
            "workspace_bytes": self.workspace_bytes,
        })
    }
}

impl Default for Limits {
    /// The node's built-in defaults.
    fn default() -> Self {
        Self {
            memory_bytes: 256 * MIB,
            timeout: Duration::from_secs(60),
            fuel: None,
            max_output_bytes: 4 * MIB,
            cpus: 1.0,
            pids: 128,
            workspace_bytes: 1024 * MIB,
        }
    }
}

impl Limits {
    /// The node's built-in maxima.
    pub fn default_maxima() -> Self {
        Self {
            memory_bytes: 2048 * MIB,
            timeout: Duration::from_secs(3600),
            fuel: Some(u64::MAX),
            max_output_bytes: 64 * MIB,
            cpus: 4.0,
            pids: 1024,
            workspace_bytes: 16 * 1024 * MIB,
        }
    }
}

/// The operator's defaults and maxima.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitPolicy {
    /// Used where a task asks for nothing.
    pub defaults: Limits,
    /// No task may ask for more.
    pub maxima: Limits,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            defaults: Limits::default(),
            maxima: Limits::default_maxima(),
        }
    }
}

impl LimitPolicy {
    /// The effective limits for `request`; asking for more than a maximum,
    /// or for zero, is rejected with a message naming the limit.
    pub fn resolve(&self, request: &LimitRequest) -> Result<Limits, TaskFailure> {
        let (d, m) = (&self.defaults, &self.maxima);
        let memory_bytes = match request.memory_mb {
            None => d.memory_bytes,
            Some(mb) => check("memory_mb", mb as f64, (m.memory_bytes / MIB) as f64)? as u64 * MIB,
        };
        let timeout = match request.max_runtime_seconds {
            None => d.timeout,
            Some(s) => {
                Duration::from_secs_f64(check("max_runtime_seconds", s, m.timeout.as_secs_f64())?)
            }
        };
        let fuel = match request.fuel {
            None => d.fuel,
            Some(f) => Some(check("fuel", f as f64, m.fuel.unwrap_or(0) as f64)? as u64),
        };
        let max_output_bytes = match request.max_output_bytes {
            None => d.max_output_bytes,
            Some(b) => check("max_output_bytes", b as f64, m.max_output_bytes as f64)? as u64,
        };
        let cpus = match request.cpus {
            None => d.cpus,
            Some(c) => check("cpus", c, m.cpus)?,
        };
        let pids = match request.pids {
            None => d.pids,
            Some(p) => check("pids", f64::from(p), f64::from(m.pids))? as u32,
        };
        let workspace_bytes = match request.workspace_mb {
            None => d.workspace_bytes,
            Some(mb) => {
                check("workspace_mb", mb as f64, (m.workspace_bytes / MIB) as f64)? as u64 * MIB
            }
        };
        Ok(Limits {
            memory_bytes,
            timeout,
            fuel,
            max_output_bytes,
            cpus,
            pids,
            workspace_bytes,
        })
    }
}

fn check(name: &str, asked: f64, max: f64) -> Result<f64, TaskFailure> {
    if !asked.is_finite() || asked <= 0.0 {
        return Err(TaskFailure::invalid_input(format!(
            "limit {name} must be a positive number"
        )));
    }
    if asked > max {
        return Err(TaskFailure::policy_denied(format!(
            "limit {name}={asked} exceeds this node's maximum of {max}"
        )));
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[test]
    fn defaults_fill_gaps_and_requests_within_maxima_apply() {
        let policy = LimitPolicy::default();
        let limits = policy.resolve(&LimitRequest::default()).unwrap();
        assert_eq!(limits, Limits::default());
        let limits = policy
            .resolve(&LimitRequest {
                memory_mb: Some(512),
                max_runtime_seconds: Some(2.5),
                fuel: Some(10),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limits.memory_bytes, 512 * MIB);
        assert_eq!(limits.timeout, Duration::from_millis(2500));
        assert_eq!(limits.fuel, Some(10));
    }

    #[test]
    fn above_maximum_is_denied_and_zero_is_invalid() {
        let policy = LimitPolicy::default();
        let err = policy
            .resolve(&LimitRequest {
                memory_mb: Some(1 << 20),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::PolicyDenied);
        assert!(err.message.contains("memory_mb"), "{}", err.message);
        let err = policy
            .resolve(&LimitRequest {
                max_runtime_seconds: Some(0.0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::InvalidInput);
        let err = policy
            .resolve(&LimitRequest {
                max_runtime_seconds: Some(f64::NAN),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::InvalidInput);
    }
}
