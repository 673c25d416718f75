//! Prometheus metrics of the node (`GET /metrics`, text format).
//!
//! Label values that come from submitters (task types) are bounded: the
//! known task types always get their own label, other short plain names get
//! one while there are fewer than `MAX_TYPE_LABELS`, and everything else is
//! counted as `other`, so no client can make `/metrics` grow without end.
//! The last hour of a few of them is kept for the console's charts
//! (`history`).

mod history;

use crate::usage::{UsageCounters, UsageLabel, Used};
use history::{History, Reading};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmnode_runtime::index_cache::IndexCacheStats;
use wasmnode_runtime::wasm::CacheStats;

/// Labels: task type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Task type.
    pub task_type: String,
}

/// Labels: task type, and the front door a job came through (`api`,
/// `vera`, `splai`, `goliat`, `mcp`: named by the node, never by a client).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmittedLabel {
    /// Task type.
    pub task_type: String,
    /// Front door.
    pub via: String,
}

/// Distinct task-type labels at most, besides the known types and `other`.
pub const MAX_TYPE_LABELS: usize = 64;
/// Longest task type given a label of its own.
pub const MAX_LABEL_LEN: usize = 64;
/// The label of task types beyond the bounds.
pub const OTHER: &str = "other";

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
    /// Jobs accepted, by type and front door.
    submitted: Family<SubmittedLabel, Counter>,
    /// Jobs that reached a final state, by state and type.
    completed: Family<StateLabel, Counter>,
    /// Submissions refused, by error code.
    rejected: Family<CodeLabel, Counter>,
    /// Task failures, by `TaskFailure` kind.
    executor_errors: Family<CodeLabel, Counter>,
    /// Jobs waiting.
    queued: Gauge,
    /// Jobs running.
    running: Gauge,
    /// Task run time, by type.
    duration: Family<TypeLabel, Histogram>,
    code_cache: Family<CodeLabel, Gauge>,
    index_cache: Family<CodeLabel, Gauge>,
    index_cache_bytes: Gauge,
    encode_lock: Mutex<()>,
    /// Task types given a label of their own so far (beyond the known ones).
    type_labels: Mutex<HashSet<String>>,
    /// What ended jobs used.
    usage: UsageCounters,
    /// Time to make a job's receipt (hash its output and files, sign).
    receipt: Histogram,
    /// The last hour, for the console's charts.
    pub history: History,
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
        let submitted = Family::<SubmittedLabel, Counter>::default();
        let completed = Family::<StateLabel, Counter>::default();
        let rejected = Family::<CodeLabel, Counter>::default();
        let executor_errors = Family::<CodeLabel, Counter>::default();
        let queued = Gauge::default();
        let running = Gauge::default();
        let duration = Family::<TypeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.5, 16))
        });
        let code_cache = Family::<CodeLabel, Gauge>::default();
        let index_cache = Family::<CodeLabel, Gauge>::default();
        let index_cache_bytes = Gauge::default();
        registry.register(
            "jobs_submitted",
            "Jobs accepted, by task type and front door",
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
            "Compiled-code cache events since start, by kind (file_read: a component file read from disk and hashed)",
            code_cache.clone(),
        );
        registry.register(
            "index_cache_events",
            "Retrieval index cache events since start, by kind",
            index_cache.clone(),
        );
        registry.register(
            "index_cache_bytes",
            "Bytes of the retrieval indexes cached now",
            index_cache_bytes.clone(),
        );
        let usage = UsageCounters::register(&mut registry);
        let receipt = Histogram::new(exponential_buckets(0.000_005, 2.0, 16));
        registry.register(
            "receipt_seconds",
            "Time to make a job's signed receipt (hash its output and files, sign)",
            receipt.clone(),
        );
        Self {
            usage,
            receipt,
            history: History::default(),
            registry,
            submitted,
            completed,
            rejected,
            executor_errors,
            queued,
            running,
            duration,
            code_cache,
            index_cache,
            index_cache_bytes,
            encode_lock: Mutex::new(()),
            type_labels: Mutex::new(HashSet::new()),
            totals: Totals::default(),
        }
    }
}

impl Metrics {
    /// A job of `task_type` was accepted through front door `via`.
    pub fn submitted(&self, task_type: &str, via: &str) {
        let label = SubmittedLabel {
            task_type: self.type_label(task_type).task_type,
            via: via.to_string(),
        };
        self.submitted.get_or_create(&label).inc();
    }

    /// A submission was refused with `code`.
    pub fn rejected(&self, code: &str) {
        self.rejected
            .get_or_create(&CodeLabel { code: code.into() })
            .inc();
    }

    /// A task of `task_type` returned after running for `took`.
    pub fn ran(&self, task_type: &str, took: std::time::Duration) {
        self.duration
            .get_or_create(&self.type_label(task_type))
            .observe(took.as_secs_f64());
        self.history.ran(took);
        self.totals
            .run_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.totals.runs.fetch_add(1, Ordering::Relaxed);
    }

    /// A receipt was made in `took`.
    pub fn receipt_made(&self, took: std::time::Duration) {
        self.receipt.observe(took.as_secs_f64());
    }

    /// Counts what the ended job `record` used.
    pub fn used(&self, record: &crate::store::JobRecord) {
        if let Some(metrics) = record.result.as_ref().and_then(|r| r.metrics.as_ref()) {
            let label = UsageLabel {
                task_type: self.type_label(&record.task_type).task_type,
                via: record.via.clone().unwrap_or_else(|| "api".into()),
            };
            self.usage.count(&label, &Used::of(metrics));
        }
    }

    /// A task failed with `kind`.
    pub fn executor_error(&self, kind: wasmnode_runtime::FailureKind) {
        self.executor_errors
            .get_or_create(&CodeLabel {
                code: kind.code().into(),
            })
            .inc();
    }

    /// A job of `task_type` reached the terminal `state`.
    pub fn ended(&self, state: crate::store::JobState, task_type: &str) {
        use crate::store::JobState;
        let total = match state {
            JobState::Finished => &self.totals.finished,
            JobState::Failed => &self.totals.failed,
            JobState::Cancelled => &self.totals.cancelled,
            JobState::Queued | JobState::Running => return,
        };
        total.fetch_add(1, Ordering::Relaxed);
        self.completed
            .get_or_create(&StateLabel {
                state: state.as_str().into(),
                task_type: self.type_label(task_type).task_type,
            })
            .inc();
    }

    /// Takes a sample for the history (`every`: how often samples are taken).
    pub fn sample(&self, every: std::time::Duration) {
        let t = &self.totals;
        let ended = [&t.finished, &t.failed, &t.cancelled]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum();
        let reading = Reading {
            ended,
            queued: self.queued.get(),
            running: self.running.get(),
            rss_bytes: crate::facts::process_rss_bytes(),
            memory_available_mb: crate::facts::memory_mb().map(|(_, available)| available),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.history.sample(reading, now_ms, every);
    }

    /// Jobs waiting and running now.
    pub fn depth(&self, queued: usize, running: usize) {
        self.queued.set(queued as i64);
        self.running.set(running as i64);
    }

    /// Jobs waiting now.
    pub fn queued(&self, queued: usize) {
        self.queued.set(queued as i64);
    }

    /// Jobs running now.
    pub fn running(&self, running: usize) {
        self.running.set(running as i64);
    }

    /// The label `task_type` is counted under: itself when it is a known
    /// type, or a short plain name while labels remain; else `other`.
    pub fn type_label(&self, task_type: &str) -> TypeLabel {
        let known = wasmnode_runtime::task_types::task_type(task_type).is_some();
        let plain = task_type.len() <= MAX_LABEL_LEN
            && task_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        let admitted = known || {
            let mut labels = self.type_labels.lock().expect("labels lock");
            plain
                && (labels.contains(task_type)
                    || (labels.len() < MAX_TYPE_LABELS && labels.insert(task_type.to_string())))
        };
        TypeLabel {
            task_type: if admitted { task_type } else { OTHER }.to_string(),
        }
    }

    /// The Prometheus text exposition, with the code and index cache
    /// counters refreshed.
    pub fn render(&self, cache: CacheStats, index: IndexCacheStats) -> String {
        let _guard = self.encode_lock.lock().expect("metrics lock");
        set_all(
            &self.code_cache,
            [
                ("memory_hit", cache.memory_hits),
                ("disk_hit", cache.disk_hits),
                ("embedded_hit", cache.embedded_hits),
                ("compiled", cache.compiled),
                ("rejected", cache.rejected),
                ("file_read", cache.files_read),
            ],
        );
        set_all(
            &self.index_cache,
            [
                ("hit", index.hits),
                ("miss", index.misses),
                ("stored", index.stored),
                ("evicted", index.evicted),
            ],
        );
        self.index_cache_bytes.set(index.bytes as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}

/// Sets each gauge of `family` labelled `code = kind` to its value.
fn set_all<const N: usize>(family: &Family<CodeLabel, Gauge>, values: [(&str, u64); N]) {
    for (kind, value) in values {
        family
            .get_or_create(&CodeLabel { code: kind.into() })
            .set(value as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_labels() {
        let m = Metrics::default();
        m.submitted("retrieval", "mcp");
        m.duration
            .get_or_create(&TypeLabel {
                task_type: "retrieval".into(),
            })
            .observe(0.01);
        let text = m.render(
            CacheStats {
                compiled: 2,
                ..Default::default()
            },
            IndexCacheStats {
                hits: 3,
                ..Default::default()
            },
        );
        assert!(
            text.contains("wasmnode_jobs_submitted_total{task_type=\"retrieval\",via=\"mcp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmnode_task_duration_seconds_count{task_type=\"retrieval\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmnode_code_cache_events{code=\"compiled\"} 2")
                && text.contains("wasmnode_index_cache_events{code=\"hit\"} 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn task_type_labels_are_bounded_in_length_and_number() {
        let m = Metrics::default();
        assert_eq!(m.type_label("retrieval").task_type, "retrieval");
        assert_eq!(
            m.type_label(&"x".repeat(MAX_LABEL_LEN + 1)).task_type,
            OTHER
        );
        assert_eq!(m.type_label("with space").task_type, OTHER);
        for i in 0..MAX_TYPE_LABELS * 2 {
            m.submitted(&format!("type-{i}"), "api");
        }
        assert_eq!(
            m.type_label("type-0").task_type,
            "type-0",
            "admitted types keep their label"
        );
        assert_eq!(
            m.type_label(&format!("type-{}", MAX_TYPE_LABELS + 1))
                .task_type,
            OTHER
        );
        assert_eq!(
            m.type_label("aggregation").task_type,
            "aggregation",
            "known types always have one"
        );
        let text = m.render(CacheStats::default(), IndexCacheStats::default());
        let series = text
            .lines()
            .filter(|l| l.starts_with("wasmnode_jobs_submitted_total{"))
            .count();
        assert_eq!(series, MAX_TYPE_LABELS + 1, "{text}");
    }
}
