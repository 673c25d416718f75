//! `StartGate`: lets the caller of a run hold a task back until it has
//! recorded that the task started. A task confined to its sandbox
//! ([`super::Plan::confined`]) passes at once, so recording its start costs
//! it no wait: were the record lost in a crash, running it again would be
//! indistinguishable from running it once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// The caller's side: says whether the start was recorded.
pub struct StartRecord(watch::Sender<Option<bool>>);

impl StartRecord {
    /// The start is recorded (`true`) or could not be (`false`: a task
    /// waiting at the gate does not run). Dropping it without a word is
    /// `false`.
    pub fn recorded(self, recorded: bool) {
        self.0.send_replace(Some(recorded));
    }
}

/// The run's side (see the module comment).
#[derive(Clone)]
pub struct StartGate {
    record: watch::Receiver<Option<bool>>,
    held_back: Arc<AtomicBool>,
}

impl StartGate {
    /// A closed gate and the record that opens it.
    pub fn new() -> (StartRecord, StartGate) {
        let (tx, rx) = watch::channel(None);
        let gate = StartGate {
            record: rx,
            held_back: Arc::default(),
        };
        (StartRecord(tx), gate)
    }

    /// Waits for the record; `false` (and [`StartGate::held_back`] from
    /// then on) when the start could not be recorded.
    pub async fn pass(&self) -> bool {
        let mut record = self.record.clone();
        let recorded = matches!(
            record.wait_for(Option::is_some).await.as_deref(),
            Ok(Some(true))
        );
        if !recorded {
            self.held_back.store(true, Ordering::Relaxed);
        }
        recorded
    }

    /// Whether a run waited at this gate and was refused: the task did not run.
    pub fn held_back(&self) -> bool {
        self.held_back.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_start_lets_the_task_pass() {
        let (record, gate) = StartGate::new();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        record.recorded(true);
        assert!(waiting.await.unwrap());
        assert!(!gate.held_back());
    }

    #[tokio::test]
    async fn a_start_that_could_not_be_recorded_holds_the_task_back() {
        let (record, gate) = StartGate::new();
        record.recorded(false);
        assert!(!gate.pass().await);
        assert!(gate.held_back());
    }

    #[tokio::test]
    async fn a_record_dropped_unsaid_holds_the_task_back() {
        let (record, gate) = StartGate::new();
        drop(record);
        assert!(!gate.pass().await);
        assert!(gate.held_back());
    }

    #[test]
    fn a_gate_nobody_waited_at_held_nothing_back() {
        let (record, gate) = StartGate::new();
        record.recorded(false);
        assert!(!gate.held_back());
    }
}
