//! The usage ledger: what jobs used (wall and CPU time, memory over time,
//! fuel, model tokens), as `/metrics` counters by task type and front
//! door, and as sums per account for `GET /usage` (quota and billing).
//! An account is whom the front door charged the job to (`splai:JOB`,
//! `vera:TASK`), else the front door itself (`api`, `mcp`, `goliat`).

use crate::store::JobRecord;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use wasmnode_runtime::TaskMetrics;

type FloatCounter = Counter<f64, AtomicU64>;

/// What one job, or many, used.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Used {
    /// Jobs counted.
    pub jobs: u64,
    /// Wall-clock run time, seconds.
    pub wall_seconds: f64,
    /// CPU time, seconds, where the executor measures it.
    pub cpu_seconds: f64,
    /// Peak memory times run time, byte-seconds.
    pub memory_byte_seconds: f64,
    /// WebAssembly fuel consumed.
    pub fuel: u64,
    /// Model tokens (prompt and completion).
    pub tokens: u64,
}

impl Used {
    /// What the run measured by `metrics` used.
    pub fn of(metrics: &TaskMetrics) -> Self {
        let wall_seconds = metrics.wall_time_ms / 1000.0;
        Self {
            jobs: 1,
            wall_seconds,
            cpu_seconds: metrics.cpu_time_ms.unwrap_or(0.0) / 1000.0,
            memory_byte_seconds: metrics.peak_memory_bytes.unwrap_or(0) as f64 * wall_seconds,
            fuel: metrics.fuel_consumed.unwrap_or(0),
            tokens: metrics.tokens.unwrap_or(0),
        }
    }

    fn add(&mut self, other: &Used) {
        self.jobs += other.jobs;
        self.wall_seconds += other.wall_seconds;
        self.cpu_seconds += other.cpu_seconds;
        self.memory_byte_seconds += other.memory_byte_seconds;
        self.fuel += other.fuel;
        self.tokens += other.tokens;
    }
}

/// Whom `record` is accounted to.
pub fn account(record: &JobRecord) -> &str {
    record
        .account
        .as_deref()
        .or(record.via.as_deref())
        .unwrap_or("api")
}

/// Sums of what ended jobs used, per account.
#[derive(Debug, Default, Serialize)]
pub struct Ledger {
    /// Per account, in name order.
    pub accounts: BTreeMap<String, Used>,
    /// Everything.
    pub total: Used,
}

impl Ledger {
    /// Counts `record`, if it ran (a job that never started used nothing).
    pub fn add(&mut self, record: &JobRecord) {
        let Some(metrics) = record.result.as_ref().and_then(|r| r.metrics.as_ref()) else {
            return;
        };
        let used = Used::of(metrics);
        self.total.add(&used);
        match self.accounts.get_mut(account(record)) {
            Some(sums) => sums.add(&used),
            None => {
                self.accounts.insert(account(record).to_string(), used);
            }
        }
    }
}

/// Labels of the usage counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct UsageLabel {
    /// Task type (bounded as the other metrics bound it).
    pub task_type: String,
    /// Front door.
    pub via: String,
}

/// The `/metrics` counters of the ledger.
pub struct UsageCounters {
    wall: Family<UsageLabel, FloatCounter>,
    cpu: Family<UsageLabel, FloatCounter>,
    memory: Family<UsageLabel, FloatCounter>,
    fuel: Family<UsageLabel, Counter>,
    tokens: Family<UsageLabel, Counter>,
}

impl UsageCounters {
    /// The counters, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let counters = Self {
            wall: Family::default(),
            cpu: Family::default(),
            memory: Family::default(),
            fuel: Family::default(),
            tokens: Family::default(),
        };
        registry.register(
            "usage_wall_seconds",
            "Run time of ended jobs, by task type and front door",
            counters.wall.clone(),
        );
        registry.register(
            "usage_cpu_seconds",
            "CPU time of ended jobs where measured, by task type and front door",
            counters.cpu.clone(),
        );
        registry.register(
            "usage_memory_byte_seconds",
            "Peak memory times run time of ended jobs, by task type and front door",
            counters.memory.clone(),
        );
        registry.register(
            "usage_fuel",
            "WebAssembly fuel consumed by ended jobs, by task type and front door",
            counters.fuel.clone(),
        );
        registry.register(
            "usage_tokens",
            "Model tokens of ended jobs, by task type and front door",
            counters.tokens.clone(),
        );
        counters
    }

    /// Counts what a job under `label` used.
    pub fn count(&self, label: &UsageLabel, used: &Used) {
        self.wall.get_or_create(label).inc_by(used.wall_seconds);
        self.cpu.get_or_create(label).inc_by(used.cpu_seconds);
        self.memory
            .get_or_create(label)
            .inc_by(used.memory_byte_seconds);
        self.fuel.get_or_create(label).inc_by(used.fuel);
        self.tokens.get_or_create(label).inc_by(used.tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobResult;

    fn ran(via: &str, account: Option<&str>, fuel: u64) -> JobRecord {
        let request = serde_json::from_value(serde_json::json!({
            "protocol_version": 1, "job_id": "j",
            "task": {"type": "aggregation"}, "runtime": {"mode": "auto"}}))
        .unwrap();
        let (canonical, _) = JobRecord::canonical(&request);
        let mut record = JobRecord::queued(&request, &canonical, 1, 0);
        record.via = Some(via.into());
        record.account = account.map(String::from);
        record.result = Some(JobResult {
            metrics: Some(TaskMetrics {
                wall_time_ms: 500.0,
                fuel_consumed: Some(fuel),
                peak_memory_bytes: Some(1 << 20),
                tokens: Some(3),
                ..TaskMetrics::default()
            }),
            ..JobResult::default()
        });
        record
    }

    #[test]
    fn sums_go_to_the_account_the_front_door_named_else_to_the_front_door() {
        let mut ledger = Ledger::default();
        ledger.add(&ran("splai", Some("splai:job-1"), 10));
        ledger.add(&ran("splai", Some("splai:job-1"), 5));
        ledger.add(&ran("api", None, 1));
        let job = &ledger.accounts["splai:job-1"];
        assert_eq!((job.jobs, job.fuel, job.tokens), (2, 15, 6));
        assert_eq!(job.wall_seconds, 1.0);
        assert_eq!(job.memory_byte_seconds, (1 << 20) as f64);
        assert_eq!(ledger.accounts["api"].jobs, 1);
        assert_eq!((ledger.total.jobs, ledger.total.fuel), (3, 16));
    }

    #[test]
    fn a_job_that_never_ran_counts_nothing() {
        let mut ledger = Ledger::default();
        let mut queued = ran("api", None, 1);
        queued.result = None;
        ledger.add(&queued);
        assert!(ledger.accounts.is_empty());
        assert_eq!(ledger.total, Used::default());
    }
}
