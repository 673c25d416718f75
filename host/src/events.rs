//! `EventHub`: live events of running jobs (state changes, stdout/stderr
//! chunks, LLM tokens, progress) for `GET /jobs/{id}/events`.
//!
//! A job has a broadcast channel only while someone listens: a
//! `Subscription` releases it when dropped (a client that disconnects
//! mid-stream included), and the hub holds at most a set number of
//! subscriptions at once. Events of jobs nobody follows cost a map lookup.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use wasmnode_runtime::{EventSink, LogLevel, TaskEvent};

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

/// Channels of the jobs someone is following.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<JobEvent>>>>,
    subscriptions: Arc<AtomicUsize>,
}

/// Following one job; stops following when dropped.
pub struct Subscription {
    hub: EventHub,
    job_id: String,
    receiver: Option<broadcast::Receiver<JobEvent>>,
}

impl Subscription {
    /// The next event of the job.
    pub async fn recv(&mut self) -> Result<JobEvent, broadcast::error::RecvError> {
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
        let receiver = channels
            .entry(job_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Some(Subscription {
            hub: self.clone(),
            job_id: job_id.to_string(),
            receiver: Some(receiver),
        })
    }

    /// Sends `event` to the followers of `job_id`, if any.
    pub fn publish(&self, job_id: &str, event: JobEvent) {
        let channels = self.channels.lock().expect("event hub lock");
        if let Some(tx) = channels.get(job_id) {
            let _ = tx.send(event);
        }
    }

    /// Drops the channel of `job_id` once nobody follows it.
    fn release(&self, job_id: &str) {
        let mut channels = self.channels.lock().expect("event hub lock");
        if channels
            .get(job_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(job_id);
        }
    }

    /// An executor event sink that forwards to the followers of `job_id`.
    pub fn sink(&self, job_id: &str) -> EventSink {
        let hub = self.clone();
        let id = job_id.to_string();
        Arc::new(move |event| {
            let event = match event {
                TaskEvent::Stdout(b) => JobEvent::Stdout {
                    data: String::from_utf8_lossy(&b).into_owned(),
                },
                TaskEvent::Stderr(b) => JobEvent::Stderr {
                    data: String::from_utf8_lossy(&b).into_owned(),
                },
                TaskEvent::Token(t) => JobEvent::Token { data: t },
                TaskEvent::Progress { what, done, total } => {
                    JobEvent::Progress { what, done, total }
                }
                TaskEvent::Log {
                    tool,
                    level,
                    message,
                } => JobEvent::Log {
                    tool,
                    level,
                    message,
                },
            };
            hub.publish(&id, event);
        })
    }

    /// Number of jobs with listeners.
    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.channels.lock().expect("event hub lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_receive_events_in_order_and_channels_are_released() {
        let hub = EventHub::default();
        hub.publish(
            "j",
            JobEvent::Token {
                data: "nobody listens".into(),
            },
        );
        let mut first = hub.subscribe("j", 10).unwrap();
        let second = hub.subscribe("j", 10).unwrap();
        (hub.sink("j"))(TaskEvent::Stdout(b"out".to_vec()));
        hub.publish(
            "j",
            JobEvent::State {
                state: "finished".into(),
                error: None,
            },
        );
        assert_eq!(
            first.recv().await.unwrap(),
            JobEvent::Stdout { data: "out".into() }
        );
        assert_eq!(first.recv().await.unwrap().name(), "state");
        drop(second);
        assert_eq!(hub.channels(), 1, "still followed");
        drop(first);
        assert_eq!(hub.channels(), 0);
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
