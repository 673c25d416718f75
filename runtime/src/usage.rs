//! What one run used (`TaskMetrics`), for its outcome or its failure, and
//! the CPU time a future spends on the threads that poll it.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

/// Resource usage of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskMetrics {
    /// Wall-clock time from start to end, in milliseconds.
    pub wall_time_ms: f64,
    /// Fuel consumed (WASI tasks with fuel metering).
    pub fuel_consumed: Option<u64>,
    /// CPU time used, in milliseconds, where the backend measures it (WASI
    /// tasks: the time the guest's code ran on the node's threads;
    /// containers: their cgroup's, where the node can read it).
    pub cpu_time_ms: Option<f64>,
    /// Highest memory use in bytes, where the backend measures it (WASI
    /// tasks: their linear memory; containers: their cgroup's peak).
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

/// Awaits `work`, adding to `spent` the CPU time each of its polls took on
/// the thread that polled it. Counting per poll stays exact when the task
/// moves between a runtime's threads; time spent waiting is not counted.
/// `spent` is also kept up to date when `work` is dropped unfinished.
pub async fn cpu_timed<F: Future>(work: F, spent: &mut Duration) -> F::Output {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        let before = thread_cpu();
        let poll = work.as_mut().poll(cx);
        if let (Some(before), Some(after)) = (before, thread_cpu()) {
            *spent += after.saturating_sub(before);
        }
        poll
    })
    .await
}

/// CPU time the calling thread has used so far, where the system says.
fn thread_cpu() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (read == 0).then(|| {
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    })
}

/// Duration to fractional milliseconds.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps this thread busy until it has used `cpu` of CPU time.
    fn burn(cpu: Duration) {
        let start = thread_cpu().expect("thread CPU clock");
        while thread_cpu().expect("thread CPU clock") - start < cpu {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn work_inside_its_polls_is_counted_and_work_between_them_is_not() {
        let mut busy = Duration::ZERO;
        cpu_timed(async { burn(Duration::from_millis(20)) }, &mut busy).await;
        assert!(busy >= Duration::from_millis(20), "{busy:?}");

        let mut idle = Duration::ZERO;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sender = async {
            tokio::task::yield_now().await;
            burn(Duration::from_millis(20));
            tx.send(()).expect("waiting");
        };
        let (received, ()) = tokio::join!(cpu_timed(rx, &mut idle), sender);
        received.expect("sent");
        assert!(idle < Duration::from_millis(20), "{idle:?}");
    }

    #[tokio::test]
    async fn a_future_dropped_unfinished_keeps_what_it_spent() {
        let mut spent = Duration::ZERO;
        let burn_then_wait = async {
            burn(Duration::from_millis(5));
            std::future::pending::<()>().await
        };
        tokio::select! {
            biased;
            _ = cpu_timed(burn_then_wait, &mut spent) => unreachable!("pending forever"),
            _ = tokio::task::yield_now() => {}
        }
        assert!(spent >= Duration::from_millis(5), "{spent:?}");
    }
}
