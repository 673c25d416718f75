//! Prometheus metrics of the node (`GET /metrics`, text format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmnode_runtime::wasm::CacheStats;

/// Labels: task type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Task type.
    pub task_type: String,
}

/// Labels: final state and task type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Final state.
    pub state: String,
    /// Task type.
    pub task_type: String,
}

/// Labels: an error code or kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code.
    pub code: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Jobs accepted, by type.
    pub submitted: Family<TypeLabel, Counter>,
    /// Jobs that reached a final state, by state and type.
    pub completed: Family<StateLabel, Counter>,
    /// Submissions refused, by error code.
    pub rejected: Family<CodeLabel, Counter>,
    /// Task failures, by `TaskFailure` kind.
    pub executor_errors: Family<CodeLabel, Counter>,
    /// Jobs waiting.
    pub queued: Gauge,
    /// Jobs running.
    pub running: Gauge,
    /// Task run time, by type.
    pub duration: Family<TypeLabel, Histogram>,
    code_cache: Family<CodeLabel, Gauge>,
    encode_lock: Mutex<()>,
    /// Running totals for the JSON view.
    pub totals: Totals,
}

/// Running totals since start (the JSON metrics view).
#[derive(Debug, Default)]
pub struct Totals {
    /// Jobs that finished successfully.
    pub finished: AtomicU64,
    /// Jobs that failed.
    pub failed: AtomicU64,
    /// Jobs cancelled.
    pub cancelled: AtomicU64,
    /// Run time of every job that ran, microseconds.
    pub run_micros: AtomicU64,
    /// Jobs that ran.
    pub runs: AtomicU64,
}

impl Totals {
    /// Mean run time, seconds (0 before any job ran).
    pub fn mean_run_seconds(&self) -> f64 {
        let runs = self.runs.load(Ordering::Relaxed);
        if runs == 0 {
            return 0.0;
        }
        self.run_micros.load(Ordering::Relaxed) as f64 / runs as f64 / 1e6
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wasmnode");
        let submitted = Family::<TypeLabel, Counter>::default();
        let completed = Family::<StateLabel, Counter>::default();
        let rejected = Family::<CodeLabel, Counter>::default();
        let executor_errors = Family::<CodeLabel, Counter>::default();
        let queued = Gauge::default();
        let running = Gauge::default();
        let duration = Family::<TypeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.5, 16))
        });
        let code_cache = Family::<CodeLabel, Gauge>::default();
        registry.register(
            "jobs_submitted",
            "Jobs accepted, by task type",
            submitted.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs that reached a final state, by state and task type",
            completed.clone(),
        );
        registry.register(
            "jobs_rejected",
            "Submissions refused, by error code",
            rejected.clone(),
        );
        registry.register(
            "executor_errors",
            "Failed tasks, by failure kind",
            executor_errors.clone(),
        );
        registry.register("queue_depth", "Jobs waiting to run", queued.clone());
        registry.register("jobs_running", "Jobs running now", running.clone());
        registry.register(
            "task_duration_seconds",
            "Task run time, by task type",
            duration.clone(),
        );
        registry.register(
            "code_cache_events",
            "Compiled-code cache events since start, by kind",
            code_cache.clone(),
        );
        Self {
            registry,
            submitted,
            completed,
            rejected,
            executor_errors,
            queued,
            running,
            duration,
            code_cache,
            encode_lock: Mutex::new(()),
            totals: Totals::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition, with the code cache counters refreshed.
    pub fn render(&self, cache: CacheStats) -> String {
        let _guard = self.encode_lock.lock().expect("metrics lock");
        for (kind, value) in [
            ("memory_hit", cache.memory_hits),
            ("disk_hit", cache.disk_hits),
            ("compiled", cache.compiled),
            ("rejected", cache.rejected),
        ] {
            self.code_cache
                .get_or_create(&CodeLabel { code: kind.into() })
                .set(value as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_labels() {
        let m = Metrics::default();
        m.submitted
            .get_or_create(&TypeLabel {
                task_type: "retrieval".into(),
            })
            .inc();
        m.duration
            .get_or_create(&TypeLabel {
                task_type: "retrieval".into(),
            })
            .observe(0.01);
        let text = m.render(CacheStats {
            compiled: 2,
            ..Default::default()
        });
        assert!(
            text.contains("wasmnode_jobs_submitted_total{task_type=\"retrieval\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmnode_task_duration_seconds_count{task_type=\"retrieval\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmnode_code_cache_events{code=\"compiled\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
