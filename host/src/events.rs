//! `EventHub`: live events of running jobs (state changes, stdout/stderr
//! chunks, LLM tokens, progress) for `GET /jobs/{id}/events`.
//!
//! A job has a broadcast channel only while someone listens; events of jobs
//! nobody follows cost a map lookup.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use wasmnode_runtime::{EventSink, TaskEvent};

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
        }
    }
}

/// Channels of the jobs someone is following.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<JobEvent>>>>,
}

impl EventHub {
    /// Starts following `job_id`.
    pub fn subscribe(&self, job_id: &str) -> broadcast::Receiver<JobEvent> {
        let mut channels = self.channels.lock().expect("event hub lock");
        channels
            .entry(job_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Sends `event` to the followers of `job_id`, if any.
    pub fn publish(&self, job_id: &str, event: JobEvent) {
        let channels = self.channels.lock().expect("event hub lock");
        if let Some(tx) = channels.get(job_id) {
            let _ = tx.send(event);
        }
    }

    /// Drops the channel of `job_id` once nobody follows it.
    pub fn release(&self, job_id: &str) {
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
            };
            hub.publish(&id, event);
        })
    }

    /// Number of jobs with listeners (for tests and metrics).
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
        let mut rx = hub.subscribe("j");
        (hub.sink("j"))(TaskEvent::Stdout(b"out".to_vec()));
        hub.publish(
            "j",
            JobEvent::State {
                state: "finished".into(),
                error: None,
            },
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            JobEvent::Stdout { data: "out".into() }
        );
        assert_eq!(rx.recv().await.unwrap().name(), "state");
        hub.release("j");
        assert_eq!(hub.channels(), 1, "still followed");
        drop(rx);
        hub.release("j");
        assert_eq!(hub.channels(), 0);
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
}
