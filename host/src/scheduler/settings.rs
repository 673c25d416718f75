//! The operator's settings of queueing and concurrency (`[scheduler]`).

use crate::config::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Queueing and concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSection {
    /// Jobs running at once (default: number of CPU cores).
    pub max_concurrent_jobs: usize,
    /// Jobs waiting at most; more are refused with 429.
    pub queue_capacity: usize,
    /// Bytes of waiting jobs' requests at most; more are refused with 429.
    pub max_queued_bytes: u64,
    /// On the first SIGTERM/SIGINT, how long running jobs may finish.
    pub drain_timeout_seconds: u64,
    /// Finished jobs kept at most (oldest removed first).
    pub retention_max_jobs: usize,
    /// Finished jobs older than this are removed.
    pub retention_max_age_hours: u64,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            queue_capacity: 10_000,
            max_queued_bytes: 1 << 30,
            drain_timeout_seconds: 30,
            retention_max_jobs: 100_000,
            retention_max_age_hours: 24 * 7,
        }
    }
}

impl SchedulerSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_jobs == 0 || self.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "scheduler.max_concurrent_jobs and scheduler.queue_capacity must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}
