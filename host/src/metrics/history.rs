//! The last hour of the node's own metrics, for the web console's charts
//! (`GET /metrics/history`): a sample every `api.chart_sample_seconds` of
//! jobs ended per second, queue depth, running jobs, task duration
//! percentiles and memory, kept in memory and bounded to an hour.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How far back the history goes.
pub const SPAN: Duration = Duration::from_secs(3600);
/// Buckets of task durations: the first holds up to 100 µs, each next one
/// 25% more, the last everything longer (about 2.8 h).
const BUCKETS: usize = 80;
const FIRST_BUCKET_SECONDS: f64 = 0.000_1;
const GROWTH: f64 = 1.25;

/// One point of the charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// When it was taken, ms since the epoch.
    pub at_ms: u64,
    /// Jobs that ended per second since the sample before.
    pub jobs_per_second: f64,
    /// Jobs waiting.
    pub queued: i64,
    /// Jobs running.
    pub running: i64,
    /// Task durations since the sample before: median, 95th and 99th
    /// percentiles in ms (upper bounds of 25%-wide buckets); none when no
    /// task ran.
    pub duration_ms: Option<[f64; 3]>,
    /// The node process's resident memory, MiB.
    pub rss_mb: f64,
    /// Memory available on the host, MiB.
    pub memory_available_mb: Option<u64>,
}

/// What one sample reads from the node.
pub struct Reading {
    /// Jobs ended since start.
    pub ended: u64,
    /// Jobs waiting.
    pub queued: i64,
    /// Jobs running.
    pub running: i64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Memory available on the host, MiB.
    pub memory_available_mb: Option<u64>,
}

/// The samples, and the durations of tasks since the last one (counted
/// without a lock: every task that ends adds one).
pub struct History {
    durations: [AtomicU64; BUCKETS],
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    samples: VecDeque<Sample>,
    last: Option<(u64, u64)>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            durations: std::array::from_fn(|_| AtomicU64::new(0)),
            state: Mutex::default(),
        }
    }
}

impl History {
    /// Counts a task that ran for `took`.
    pub fn ran(&self, took: Duration) {
        self.durations[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a sample of `reading` at `at_ms`, keeping `SPAN` of them at
    /// `every`.
    pub fn sample(&self, reading: Reading, at_ms: u64, every: Duration) {
        let mut state = self.state.lock().expect("history lock");
        let jobs_per_second = match state.last {
            Some((at, ended)) if at_ms > at => {
                reading.ended.saturating_sub(ended) as f64 * 1000.0 / (at_ms - at) as f64
            }
            _ => 0.0,
        };
        state.last = Some((at_ms, reading.ended));
        let counts: Vec<u64> = self
            .durations
            .iter()
            .map(|count| count.swap(0, Ordering::Relaxed))
            .collect();
        let duration_ms = percentiles(&counts);
        state.samples.push_back(Sample {
            at_ms,
            jobs_per_second,
            queued: reading.queued,
            running: reading.running,
            duration_ms,
            rss_mb: reading.rss_bytes as f64 / f64::from(1 << 20),
            memory_available_mb: reading.memory_available_mb,
        });
        let keep = (SPAN.as_secs() / every.as_secs().max(1)).max(1) as usize;
        while state.samples.len() > keep {
            state.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let state = self.state.lock().expect("history lock");
        state.samples.iter().cloned().collect()
    }
}

fn bucket(took: Duration) -> usize {
    let seconds = took.as_secs_f64();
    if seconds <= FIRST_BUCKET_SECONDS {
        return 0;
    }
    let index = (seconds / FIRST_BUCKET_SECONDS).ln() / GROWTH.ln();
    (index.ceil() as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `index`, ms.
fn bound_ms(index: usize) -> f64 {
    FIRST_BUCKET_SECONDS * GROWTH.powi(index as i32) * 1000.0
}

fn percentiles(counts: &[u64]) -> Option<[f64; 3]> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |fraction: f64| {
        let rank = (fraction * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bound_ms(index);
            }
        }
        bound_ms(BUCKETS - 1)
    };
    Some([at(0.5), at(0.95), at(0.99)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ended: u64) -> Reading {
        Reading {
            ended,
            queued: 3,
            running: 2,
            rss_bytes: 64 << 20,
            memory_available_mb: Some(1000),
        }
    }

    #[test]
    fn jobs_per_second_come_from_the_jobs_ended_between_samples() {
        let history = History::default();
        let every = Duration::from_secs(10);
        history.sample(reading(5), 0, every);
        history.sample(reading(25), 10_000, every);
        let samples = history.samples();
        assert_eq!(samples[0].jobs_per_second, 0.0);
        assert_eq!(samples[1].jobs_per_second, 2.0);
        assert_eq!((samples[1].queued, samples[1].running), (3, 2));
        assert_eq!(samples[1].rss_mb, 64.0);
    }

    #[test]
    fn percentiles_are_of_the_tasks_since_the_sample_before_within_a_quarter() {
        let history = History::default();
        for ms in 1..=100 {
            history.ran(Duration::from_millis(ms));
        }
        history.sample(reading(0), 0, Duration::from_secs(10));
        history.sample(reading(0), 10_000, Duration::from_secs(10));
        let samples = history.samples();
        let [p50, p95, p99] = samples[0].duration_ms.expect("tasks ran");
        assert!((50.0..=62.5).contains(&p50), "{p50}");
        assert!((95.0..=118.75).contains(&p95), "{p95}");
        assert!((99.0..=123.75).contains(&p99), "{p99}");
        assert_eq!(samples[1].duration_ms, None, "no task since");
    }

    #[test]
    fn an_hour_of_samples_is_kept_and_no_more() {
        let history = History::default();
        let every = Duration::from_secs(10);
        for n in 0..400 {
            history.sample(reading(n), n * 10_000, every);
        }
        let samples = history.samples();
        assert_eq!(samples.len(), 360);
        assert_eq!(samples[0].at_ms, 40 * 10_000, "the oldest went first");
    }

    #[test]
    fn very_short_and_very_long_tasks_land_in_the_end_buckets() {
        assert_eq!(bucket(Duration::from_micros(5)), 0);
        assert_eq!(bucket(Duration::from_secs(1_000_000)), BUCKETS - 1);
    }
}
