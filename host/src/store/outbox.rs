//! The durable outbox's vocabulary: who asked for a job (`Origin`, opaque
//! data owned by the front door that made it), which delivery loop its
//! reports travel on (`Channel`), and the reports themselves (`OutboxItem`).
//! The store and the scheduler queue reports without knowing any protocol;
//! each front door reads its own origin data back when it delivers.

use super::records::{JobRecord, JobState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasmnode_runtime::TaskFailure;

/// Where a report goes; each channel is delivered on its own, so a control
/// plane that is down does not hold back callbacks, and the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The control plane the node is attached to.
    ControlPlane = 0,
    /// Per-task callback URLs.
    Callback = 1,
}

/// Who wants to hear about a job: the front door's protocol name and its own
/// data (a SPLAI task and lease, a dashboard assignment, a callback URL),
/// stored as one flat JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct Origin {
    protocol: String,
    channel: Channel,
    data: Map<String, Value>,
}

/// The stored form. Records written before the channel was stored carry
/// none: their callbacks were the only origins on [`Channel::Callback`].
#[derive(Serialize, Deserialize)]
struct Stored {
    protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<Channel>,
    #[serde(flatten)]
    data: Map<String, Value>,
}

impl From<Stored> for Origin {
    fn from(stored: Stored) -> Self {
        let channel = stored.channel.unwrap_or(if stored.protocol == "callback" {
            Channel::Callback
        } else {
            Channel::ControlPlane
        });
        Self {
            protocol: stored.protocol,
            channel,
            data: stored.data,
        }
    }
}

impl From<Origin> for Stored {
    fn from(origin: Origin) -> Self {
        Self {
            protocol: origin.protocol,
            channel: Some(origin.channel),
            data: origin.data,
        }
    }
}

impl Origin {
    /// An origin of `protocol` whose reports travel on `channel`; `data`
    /// must serialize to a JSON object.
    pub fn new(protocol: &str, channel: Channel, data: &impl Serialize) -> Self {
        let data = match serde_json::to_value(data) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Self {
            protocol: protocol.into(),
            channel,
            data,
        }
    }

    /// This origin's data, when it came from `protocol` and reads as `T`.
    pub fn data<T: DeserializeOwned>(&self, protocol: &str) -> Option<T> {
        (self.protocol == protocol)
            .then(|| serde_json::from_value(Value::Object(self.data.clone())).ok())
            .flatten()
    }

    /// The protocol that asked for the job (`splai`, `goliat`, `callback`).
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The channel its reports travel on.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Whether a control plane leased the job (it counts against the agent's slots).
    pub fn is_control_plane(&self) -> bool {
        self.channel == Channel::ControlPlane
    }

    fn report(&self, job_id: &str, status: ReportStatus, error: Option<String>) -> OutboxItem {
        OutboxItem {
            job_id: job_id.into(),
            origin: self.clone(),
            status,
            error,
            duration_ms: 0,
        }
    }

    /// The report that the task started; callbacks have none.
    pub fn running(&self, job_id: &str) -> Option<OutboxItem> {
        self.is_control_plane()
            .then(|| self.report(job_id, ReportStatus::Running, None))
    }

    /// The final report of a job that reached a terminal state.
    pub fn final_report(&self, record: &JobRecord) -> OutboxItem {
        let mut report = if record.state == JobState::Finished {
            self.report(&record.job_id, ReportStatus::Completed, None)
        } else {
            let error = record
                .result
                .as_ref()
                .and_then(|r| r.error.as_ref())
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_else(|| "failed".into());
            self.report(&record.job_id, ReportStatus::Failed, Some(error))
        };
        report.duration_ms = match (record.started_at_ms, record.finished_at_ms) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        };
        report
    }

    /// The report for a task refused before it became a job.
    pub fn rejected(&self, job_id: &str, failure: &TaskFailure) -> OutboxItem {
        let error = format!("{}: {}", failure.kind.code(), failure.message);
        self.report(job_id, ReportStatus::Failed, Some(error))
    }
}

/// Status of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// The task started.
    Running,
    /// The task finished; its output is the job's output.
    Completed,
    /// The task failed.
    Failed,
}

impl ReportStatus {
    /// Whether this is a task's last word (completed or failed).
    pub fn is_final(self) -> bool {
        self != Self::Running
    }

    /// The name SPLAI and GOLIAT use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

/// A report waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The local job it is about.
    pub job_id: String,
    /// Which task it is about, and where it goes.
    pub origin: Origin,
    /// What it says.
    pub status: ReportStatus,
    /// Why it failed, for failed tasks.
    pub error: Option<String>,
    /// How long the task ran.
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Lease {
        task: String,
        attempt: u32,
    }

    #[test]
    fn a_front_door_reads_back_only_its_own_data() {
        let lease = Lease {
            task: "t".into(),
            attempt: 2,
        };
        let origin = Origin::new("splai", Channel::ControlPlane, &lease);
        assert_eq!(origin.data::<Lease>("splai"), Some(lease));
        assert_eq!(origin.data::<Lease>("goliat"), None);
    }

    #[test]
    fn origins_stored_before_the_channel_was_keep_their_channel() {
        let callback: Origin =
            serde_json::from_value(json!({"protocol": "callback", "url": "http://hook"})).unwrap();
        assert_eq!(callback.channel(), Channel::Callback);
        let splai: Origin =
            serde_json::from_value(json!({"protocol": "splai", "task_id": "t"})).unwrap();
        assert!(splai.is_control_plane());
        let stored = serde_json::to_value(&splai).unwrap();
        assert_eq!(
            stored,
            json!({"protocol": "splai", "channel": "control_plane", "task_id": "t"})
        );
    }

    #[test]
    fn callbacks_get_no_running_report() {
        let origin = Origin::new("callback", Channel::Callback, &json!({"url": "u"}));
        assert!(origin.running("j").is_none());
        let leased = Origin::new("splai", Channel::ControlPlane, &json!({}));
        assert_eq!(
            leased.running("j").map(|r| r.status),
            Some(ReportStatus::Running)
        );
    }
}
