//! What the node owes a control plane: where an agent job came from
//! (`Origin`) and the reports waiting in the durable outbox (`OutboxItem`).

use crate::store::{JobRecord, JobState, now_ms, rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use wasmnode_runtime::{ArtifactStore, TaskFailure};

/// Where a report goes; each channel is delivered on its own, so a control
/// plane that is down does not hold back callbacks, and the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The control plane the node is attached to.
    ControlPlane = 0,
    /// Per-task callback URLs (Vera-style API).
    Callback = 1,
}

/// Who wants to hear about a job: enough to report on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Origin {
    /// A SPLAI assignment.
    Splai {
        /// SPLAI job id.
        job_id: String,
        /// SPLAI task id.
        task_id: String,
        /// Task type.
        task_type: String,
        /// The lease the assignment came with.
        lease_id: String,
        /// Attempt number.
        attempt: u32,
    },
    /// A GOLIAT-style dashboard assignment.
    Goliat {
        /// The dashboard's id of the assignment, if it sent one.
        assignment_id: Option<String>,
        /// Which split of the work.
        split_index: u64,
        /// Where the config came from.
        config_url: String,
    },
    /// A Vera-style task submitted with a callback URL.
    Callback {
        /// Where to POST the result.
        url: String,
    },
}

/// Status of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// The task started.
    Running,
    /// The task finished; its output is in the artifact.
    Completed,
    /// The task failed.
    Failed,
}

impl ReportStatus {
    /// Whether this is a task's last word (completed or failed).
    pub fn is_final(self) -> bool {
        self != Self::Running
    }

    /// The protocol name.
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
    /// `artifact://…` of the output, for completed tasks.
    pub output_uri: Option<String>,
    /// Why it failed, for failed tasks.
    pub error: Option<String>,
    /// How long the task ran.
    pub duration_ms: u64,
}

impl Origin {
    /// The channel its reports travel on.
    pub fn channel(&self) -> Channel {
        match self {
            Origin::Splai { .. } | Origin::Goliat { .. } => Channel::ControlPlane,
            Origin::Callback { .. } => Channel::Callback,
        }
    }

    /// Whether a control plane leased the job (it counts against the agent's slots).
    pub fn is_control_plane(&self) -> bool {
        self.channel() == Channel::ControlPlane
    }

    /// The report that the task started, where the protocol has one.
    pub fn running(&self, job_id: &str) -> Option<OutboxItem> {
        self.is_control_plane().then(|| OutboxItem {
            job_id: job_id.into(),
            origin: self.clone(),
            status: ReportStatus::Running,
            output_uri: None,
            error: None,
            duration_ms: 0,
        })
    }

    /// The final report for a job that reached a terminal state; for a
    /// completed SPLAI task the output artifact is written first (SPLAI
    /// layout: `{job}/{task}/output.json`, the task's fields under the envelope).
    pub fn final_report(
        &self,
        record: &JobRecord,
        output: &Value,
        artifacts: &ArtifactStore,
    ) -> OutboxItem {
        let duration_ms = match (record.started_at_ms, record.finished_at_ms) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        };
        let report = |status, output_uri, error| OutboxItem {
            job_id: record.job_id.clone(),
            origin: self.clone(),
            status,
            output_uri,
            error,
            duration_ms,
        };
        if record.state != JobState::Finished {
            let error = record
                .result
                .as_ref()
                .and_then(|r| r.error.as_ref())
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_else(|| "failed".into());
            return report(ReportStatus::Failed, None, Some(error));
        }
        match self {
            Origin::Splai { .. } => match self.write_output(output, artifacts) {
                Ok(uri) => report(ReportStatus::Completed, Some(uri), None),
                Err(e) => report(
                    ReportStatus::Failed,
                    None,
                    Some(format!(
                        "INTERNAL: cannot write the output artifact: {}",
                        e.message
                    )),
                ),
            },
            Origin::Goliat { .. } | Origin::Callback { .. } => {
                report(ReportStatus::Completed, None, None)
            }
        }
    }

    fn write_output(
        &self,
        output: &Value,
        artifacts: &ArtifactStore,
    ) -> Result<String, TaskFailure> {
        let Origin::Splai {
            job_id,
            task_id,
            task_type,
            ..
        } = self
        else {
            return Err(TaskFailure::internal(
                "only SPLAI tasks write output artifacts",
            ));
        };
        let mut document = Map::new();
        document.insert("job_id".into(), json!(job_id));
        document.insert("task_id".into(), json!(task_id));
        document.insert("type".into(), json!(task_type));
        document.insert("created_at".into(), json!(rfc3339(now_ms())));
        match output {
            Value::Object(fields) => {
                for (key, value) in fields {
                    document.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            other => {
                document.insert("output".into(), other.clone());
            }
        }
        artifacts.write_output(job_id, task_id, &Value::Object(document))
    }
}
