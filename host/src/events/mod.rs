//! `EventHub`: live events of jobs (state changes, stdout/stderr lines, LLM
//! tokens, progress, tool log records) for `GET /jobs/{id}/events` and MCP
//! progress, with a journal per running job so a follower that connects
//! late, or reconnects, gets what it missed first (`journal.rs`).
//!
//! A job has an entry while it has output or followers: a `Subscription`
//! releases it when dropped (a client that disconnects mid-stream
//! included), a job's entry goes once it has ended and nobody follows it,
//! and the hub holds at most a set number of subscriptions at once. State
//! changes of jobs with neither cost a map lookup.

mod journal;

pub use journal::{Backlog, ENDED, Position, Sequenced, rank};

use journal::Journal;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use wasmnode_runtime::mask::Mask;
use wasmnode_runtime::{EventSink, LogLevel};

/// Events a slow listener may fall behind by before it is told it lagged.
const CHANNEL_CAPACITY: usize = 1024;

/// One event of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum JobEvent {
    /// The job changed state.
    State {
        /// New state.
        state: String,
        /// Error code, for failed/cancelled jobs.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A chunk of stdout.
    Stdout {
        /// The text.
        data: String,
    },
    /// A chunk of stderr.
    Stderr {
        /// The text.
        data: String,
    },
    /// Generated text.
    Token {
        /// The text.
        data: String,
    },
    /// Progress of a long step.
    Progress {
        /// What progresses.
        what: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: Option<u64>,
    },
    /// A tool's log record.
    Log {
        /// The tool's name.
        tool: String,
        /// Its level.
        level: LogLevel,
        /// What it said.
        message: String,
    },
}

impl JobEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::State { .. } => "state",
            Self::Stdout { .. } => "stdout",
            Self::Stderr { .. } => "stderr",
            Self::Token { .. } => "token",
            Self::Progress { .. } => "progress",
            Self::Log { .. } => "log",
        }
    }
}

/// A job's journal and the channel to its followers.
struct Entry {
    journal: Journal,
    sender: broadcast::Sender<Sequenced>,
}

impl Entry {
    fn new() -> Self {
        Self {
            journal: Journal::default(),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }

    fn send(&self, events: Vec<Sequenced>) {
        for event in events {
            let _ = self.sender.send(event);
        }
    }
}

/// The entries of jobs with output or followers.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<String, Entry>>>,
    subscriptions: Arc<AtomicUsize>,
}

/// Following one job; stops following when dropped.
pub struct Subscription {
    hub: EventHub,
    job_id: String,
    receiver: Option<broadcast::Receiver<Sequenced>>,
}

impl Subscription {
    /// The next event of the job.
    pub async fn recv(&mut self) -> Result<JobEvent, broadcast::error::RecvError> {
        self.next().await.map(|s| s.event)
    }

    /// The next event of the job, with the position after it.
    pub async fn next(&mut self) -> Result<Sequenced, broadcast::error::RecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.hub.subscriptions.fetch_sub(1, Ordering::Relaxed);
        self.hub.release(&self.job_id);
    }
}

impl EventHub {
    /// Starts following `job_id`, unless `max` subscriptions are live already.
    pub fn subscribe(&self, job_id: &str, max: usize) -> Option<Subscription> {
        self.subscribe_from(job_id, max, Position::default())
            .map(|(subscription, _)| subscription)
    }

    /// Starts following `job_id` (unless `max` subscriptions are live
    /// already), with what the job said since `from`: every later event
    /// comes through the subscription, none twice.
    pub fn subscribe_from(
        &self,
        job_id: &str,
        max: usize,
        from: Position,
    ) -> Option<(Subscription, Backlog)> {
        if self
            .subscriptions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        let mut channels = self.channels.lock().expect("event hub lock");
        let entry = channels
            .entry(job_id.to_string())
            .or_insert_with(Entry::new);
        let receiver = entry.sender.subscribe();
        let backlog = entry.journal.backlog(from);
        Some((
            Subscription {
                hub: self.clone(),
                job_id: job_id.to_string(),
                receiver: Some(receiver),
            },
            backlog,
        ))
    }

    /// Announces the new state of `job_id` to its followers; a job that
    /// has ended and has none is forgotten.
    pub fn publish_state(&self, job_id: &str, state: &str, error: Option<String>) {
        let mut channels = self.channels.lock().expect("event hub lock");
        let Some(entry) = channels.get_mut(job_id) else {
            return;
        };
        let events = entry.journal.state(state.to_string(), error);
        entry.send(events);
        if entry.journal.ended() && entry.sender.receiver_count() == 0 {
            channels.remove(job_id);
        }
    }

    /// Drops the entry of `job_id` once nobody follows it, if the job has
    /// ended or said nothing yet.
    fn release(&self, job_id: &str) {
        let mut channels = self.channels.lock().expect("event hub lock");
        if channels.get(job_id).is_some_and(|entry| {
            entry.sender.receiver_count() == 0
                && (entry.journal.ended() || entry.journal.position() == Position::default())
        }) {
            channels.remove(job_id);
        }
    }

    /// An executor event sink that journals the task's events and forwards
    /// them to the followers of `job_id`.
    #[cfg(test)]
    pub fn sink(&self, job_id: &str) -> EventSink {
        self.sink_masked(job_id, None)
    }

    /// As [`sink`](Self::sink), masking the job's secrets (`mask`) in
    /// everything it forwards and keeps.
    pub fn sink_masked(&self, job_id: &str, mask: Option<Arc<Mask>>) -> EventSink {
        let hub = self.clone();
        let id = job_id.to_string();
        Arc::new(move |event| {
            let mut channels = hub.channels.lock().expect("event hub lock");
            let entry = channels.entry(id.clone()).or_insert_with(|| {
                // Output comes only from a running job.
                let mut entry = Entry::new();
                entry.journal.state("running".into(), None);
                entry
            });
            if entry.journal.mask.is_none() {
                entry.journal.mask = mask.clone();
            }
            let events = entry.journal.task_event(event);
            entry.send(events);
        })
    }

    /// Number of jobs with entries.
    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.channels.lock().expect("event hub lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmnode_runtime::TaskEvent;

    #[tokio::test]
    async fn followers_receive_events_in_order_and_entries_are_released() {
        let hub = EventHub::default();
        hub.publish_state("j", "running", None);
        assert_eq!(
            hub.channels(),
            0,
            "a job nobody follows and that said nothing costs nothing"
        );
        let mut first = hub.subscribe("j", 10).unwrap();
        let second = hub.subscribe("j", 10).unwrap();
        (hub.sink("j"))(TaskEvent::Stdout(b"out\n".to_vec()));
        hub.publish_state("j", "finished", None);
        assert_eq!(
            first.recv().await.unwrap(),
            JobEvent::Stdout {
                data: "out\n".into()
            }
        );
        assert_eq!(first.recv().await.unwrap().name(), "state");
        drop(second);
        assert_eq!(hub.channels(), 1, "still followed");
        drop(first);
        assert_eq!(hub.channels(), 0);
    }

    #[tokio::test]
    async fn a_late_follower_gets_the_backlog_then_live_events_without_repeats() {
        let hub = EventHub::default();
        let sink = hub.sink("j");
        sink(TaskEvent::Stdout(b"one\ntw".to_vec()));
        assert_eq!(
            hub.channels(),
            1,
            "a running job with output keeps a journal"
        );
        let (mut late, backlog) = hub.subscribe_from("j", 10, Position::default()).unwrap();
        assert_eq!(backlog.stdout, "one\n");
        assert_eq!(backlog.state, Some(("running".into(), None)));
        sink(TaskEvent::Stdout(b"o\n".to_vec()));
        let next = late.next().await.unwrap();
        assert_eq!(
            next.event,
            JobEvent::Stdout {
                data: "two\n".into()
            }
        );
        assert_eq!(next.at.id(), "8.0.2");
        hub.publish_state("j", "finished", None);
        assert_eq!(late.next().await.unwrap().at.id(), "8.0.3");
        drop(late);
        assert_eq!(
            hub.channels(),
            0,
            "an ended job is forgotten once nobody follows it"
        );
    }

    #[test]
    fn subscriptions_are_capped_and_released_when_dropped() {
        let hub = EventHub::default();
        let held: Vec<_> = (0..3)
            .map(|i| hub.subscribe(&format!("j{i}"), 3).unwrap())
            .collect();
        assert!(hub.subscribe("j9", 3).is_none(), "the cap holds");
        drop(held);
        assert_eq!(hub.channels(), 0, "nothing is left behind");
        assert!(hub.subscribe("j9", 3).is_some());
    }

    #[test]
    fn events_serialize_with_their_name() {
        let json = serde_json::to_value(JobEvent::State {
            state: "running".into(),
            error: None,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "state", "state": "running"})
        );
    }

    #[tokio::test]
    async fn a_tools_log_record_reaches_followers_as_a_log_event() {
        let hub = EventHub::default();
        let mut follower = hub.subscribe("j", 10).unwrap();
        (hub.sink("j"))(TaskEvent::Log {
            tool: "word_count".into(),
            level: LogLevel::Warn,
            message: "slow disk".into(),
        });
        let event = follower.recv().await.unwrap();
        assert_eq!(event.name(), "log");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"event": "log", "tool": "word_count", "level": "warn", "message": "slow disk"})
        );
    }
}
