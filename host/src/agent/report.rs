//! What the node owes a control plane: where an agent job came from
//! (`Origin`) and the reports waiting in the durable outbox (`OutboxItem`).

use crate::store::{JobRecord, JobState, now_ms, rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use wasmnode_runtime::{ArtifactStore, TaskFailure};

/// The control-plane task behind an agent job: enough to report on it.
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
    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

/// A report waiting to be accepted by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Which task it is about.
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
    /// The report that the task started.
    pub fn running(&self) -> OutboxItem {
        OutboxItem {
            origin: self.clone(),
            status: ReportStatus::Running,
            output_uri: None,
            error: None,
            duration_ms: 0,
        }
    }

    /// The final report for a job that reached a terminal state; for a
    /// completed task the output artifact is written first (SPLAI layout:
    /// `{job}/{task}/output.json`, the task's fields under the envelope).
    pub fn final_report(&self, record: &JobRecord, artifacts: &ArtifactStore) -> OutboxItem {
        let duration_ms = match (record.started_at_ms, record.finished_at_ms) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        };
        let result = record.result.clone().unwrap_or_default();
        let failed = |error: String| OutboxItem {
            origin: self.clone(),
            status: ReportStatus::Failed,
            output_uri: None,
            error: Some(error),
            duration_ms,
        };
        if record.state != JobState::Finished {
            let error = result
                .error
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_else(|| "failed".into());
            return failed(error);
        }
        match self.write_output(&result.output, artifacts) {
            Ok(uri) => OutboxItem {
                origin: self.clone(),
                status: ReportStatus::Completed,
                output_uri: Some(uri),
                error: None,
                duration_ms,
            },
            Err(e) => failed(format!(
                "INTERNAL: cannot write the output artifact: {}",
                e.message
            )),
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
        } = self;
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
