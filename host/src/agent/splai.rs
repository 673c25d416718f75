//! The SPLAI worker protocol (wire-compatible with SPLAI's gateway):
//! register, heartbeat, poll assignments, report, with `X-SPLAI-Token`.
//! A completed task's output is written as SPLAI's artifact
//! (`{job}/{task}/output.json`, the task's fields under an envelope) when
//! its report is sent, and the report carries the artifact's URI; the
//! node's signed receipt of the run goes beside it (`receipt.json`,
//! `receipt_artifact_uri`).

use super::AgentSettings;
use super::protocol::{Assignment, ControlPlane, CpError, Heartbeat, Registration, Reporting};
use super::transport::Transport;
use crate::config::Config;
use crate::job::{JobRequest, JobRuntime, JobTask, PROTOCOL_VERSION, validate_job_id};
use crate::store::{Channel, Origin, OutboxItem, ReportStatus, now_ms, rfc3339};
use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wasmnode_runtime::peer;

/// Earlier attempts of a task looked for when it is handed out again.
const MAX_EARLIER_ATTEMPTS: usize = 16;

/// The protocol name on the origins of SPLAI tasks.
const PROTOCOL: &str = "splai";

/// The SPLAI task behind a job: what its reports need, stored with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SplaiTask {
    job_id: String,
    task_id: String,
    task_type: String,
    lease_id: String,
    attempt: u32,
}

impl SplaiTask {
    fn origin(&self) -> Origin {
        Origin::new(PROTOCOL, Channel::ControlPlane, self)
    }

    fn of(origin: &Origin) -> Result<Self, CpError> {
        origin
            .data(PROTOCOL)
            .ok_or_else(|| CpError::Rejected(format!("not a SPLAI task: {origin:?}")))
    }

    /// Writes `output` as this task's artifact; returns its URI.
    fn write_output(
        &self,
        output: Value,
        artifacts: &wasmnode_runtime::ArtifactStore,
    ) -> Result<String, wasmnode_runtime::TaskFailure> {
        let mut document = Map::new();
        document.insert("job_id".into(), json!(self.job_id));
        document.insert("task_id".into(), json!(self.task_id));
        document.insert("type".into(), json!(self.task_type));
        document.insert("created_at".into(), json!(rfc3339(now_ms())));
        match output {
            Value::Object(fields) => {
                for (key, value) in fields {
                    document.entry(key).or_insert(value);
                }
            }
            other => {
                document.insert("output".into(), other);
            }
        }
        artifacts.write_output(&self.job_id, &self.task_id, &Value::Object(document))
    }
}

/// Default heartbeat interval when the control plane names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// The SPLAI adapter for the gateway at `url`, and the agent's settings
/// from `[control_plane]`.
pub fn attach(
    config: &mut Config,
    transport: Transport,
    url: &str,
    backoff_max: Duration,
) -> anyhow::Result<(Arc<dyn ControlPlane>, AgentSettings)> {
    let cp = &config.control_plane;
    let client = SplaiClient::new(
        transport,
        url,
        &config.node.worker_id,
        cp.token(),
        cp.max_answer_bytes,
    )?;
    let settings = AgentSettings {
        max_parallel_tasks: cp
            .max_parallel_tasks
            .unwrap_or(config.scheduler.max_concurrent_jobs),
        poll_interval: Duration::from_millis(cp.poll_millis),
        backoff_max,
        locality: cp.locality.clone(),
        refresh: Some(Duration::from_secs(cp.refresh_seconds.max(1))),
        lease: cp.lease_seconds.map(Duration::from_secs_f64),
    };
    Ok((Arc::new(client), settings))
}

/// A SPLAI gateway client for one worker.
pub struct SplaiClient {
    base: String,
    worker_id: String,
    token: Option<String>,
    max_answer_bytes: u64,
    http: reqwest::Client,
    transport: Transport,
}

impl SplaiClient {
    /// A client for `base` (the gateway's URL) acting as `worker_id`,
    /// reached through `transport`; an answer larger than
    /// `max_answer_bytes` is refused while it arrives.
    pub fn new(
        transport: Transport,
        base: &str,
        worker_id: &str,
        token: Option<String>,
        max_answer_bytes: u64,
    ) -> Result<Self, CpError> {
        let http = transport
            .builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        Ok(Self {
            transport,
            base: base.trim_end_matches('/').to_string(),
            worker_id: worker_id.to_string(),
            token,
            max_answer_bytes,
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-SPLAI-Token", token);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CpError> {
        let response = request.send().await?;
        let status = response.status();
        let body = peer::read_capped(response, self.max_answer_bytes)
            .await
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        let body = String::from_utf8_lossy(&body);
        match status {
            s if s.is_success() => Ok(serde_json::from_str(&body).unwrap_or(Value::Null)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(CpError::Unauthorized(format!("{status}: {}", short(&body))))
            }
            StatusCode::NOT_FOUND => Err(CpError::UnknownWorker),
            StatusCode::CONFLICT => Ok(json!({"accepted": true, "duplicate": true})),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                Err(CpError::Unavailable(status.to_string()))
            }
            s if s.is_server_error() => {
                Err(CpError::Unavailable(format!("{status}: {}", short(&body))))
            }
            _ => Err(CpError::Rejected(format!("{status}: {}", short(&body)))),
        }
    }
}

fn short(body: &str) -> String {
    body.chars().take(200).collect()
}

/// An assignment as SPLAI sends it.
#[derive(Debug, Deserialize)]
struct WireAssignment {
    job_id: String,
    task_id: String,
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default = "first_attempt")]
    attempt: u32,
    #[serde(default)]
    lease_id: String,
}

fn first_attempt() -> u32 {
    1
}

/// Our job id for a SPLAI task attempt: readable when SPLAI's ids allow it,
/// else a hash of them.
fn local_job_id(job: &str, task: &str, attempt: u32) -> String {
    let readable = format!("splai-{job}-{task}-a{attempt}");
    if validate_job_id(&readable).is_ok() {
        return readable;
    }
    let hash = blake3::hash(format!("{job}\u{0}{task}\u{0}{attempt}").as_bytes());
    format!("splai-{}", &hash.to_hex()[..32])
}

impl WireAssignment {
    fn into_assignment(self) -> Assignment {
        let payload: Map<String, Value> = self
            .inputs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let request = JobRequest {
            protocol_version: PROTOCOL_VERSION,
            job_id: local_job_id(&self.job_id, &self.task_id, self.attempt),
            task: JobTask {
                task_type: self.task_type.clone(),
                payload: Value::Object(payload),
            },
            runtime: JobRuntime {
                mode: "auto".into(),
                ..JobRuntime::default()
            },
            idempotent: true,
            priority: None,
        };
        let account = Some(format!("{PROTOCOL}:{}", self.job_id));
        let origin = SplaiTask {
            job_id: self.job_id,
            task_id: self.task_id,
            task_type: self.task_type,
            lease_id: self.lease_id,
            attempt: self.attempt,
        }
        .origin();
        Assignment {
            request,
            origin,
            account,
        }
    }
}

#[async_trait]
impl ControlPlane for SplaiClient {
    fn url(&self) -> &str {
        &self.base
    }

    fn duplicate(&self) -> Result<Box<dyn ControlPlane>, CpError> {
        Ok(Box::new(Self::new(
            self.transport.clone(),
            &self.base,
            &self.worker_id,
            self.token.clone(),
            self.max_answer_bytes,
        )?))
    }

    async fn register(&self, registration: &Registration) -> Result<Duration, CpError> {
        let reply = self
            .send(
                self.request(reqwest::Method::POST, "/v1/workers/register")
                    .json(registration),
            )
            .await?;
        if reply["accepted"] == Value::Bool(false) {
            return Err(CpError::Rejected(format!(
                "registration not accepted: {reply}"
            )));
        }
        Ok(reply["heartbeat_interval_seconds"]
            .as_f64()
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_HEARTBEAT))
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), CpError> {
        let path = format!("/v1/workers/{}/heartbeat", self.worker_id);
        self.send(self.request(reqwest::Method::POST, &path).json(heartbeat))
            .await
            .map(|_| ())
    }

    async fn poll(&self, max: usize) -> Result<Vec<Assignment>, CpError> {
        let path = format!("/v1/workers/{}/assignments?max_tasks={max}", self.worker_id);
        let reply = self.send(self.request(reqwest::Method::GET, &path)).await?;
        let wire: Vec<WireAssignment> = serde_json::from_value(reply["assignments"].clone())
            .map_err(|e| CpError::Rejected(format!("malformed assignments: {e}")))?;
        Ok(wire
            .into_iter()
            .map(WireAssignment::into_assignment)
            .collect())
    }

    fn earlier_attempts(&self, assignment: &Assignment) -> Vec<String> {
        let Ok(task) = SplaiTask::of(&assignment.origin) else {
            return Vec::new();
        };
        (1..task.attempt)
            .rev()
            .take(MAX_EARLIER_ATTEMPTS)
            .map(|a| local_job_id(&task.job_id, &task.task_id, a))
            .collect()
    }

    async fn report(&self, item: &OutboxItem, reporting: &Reporting<'_>) -> Result<(), CpError> {
        let task = SplaiTask::of(&item.origin)?;
        let mut key = format!(
            "{}:{}:{}:{}",
            self.worker_id, task.job_id, task.task_id, task.attempt
        );
        let (mut status, mut error, mut uri) = (item.status, item.error.clone(), None);
        match item.status {
            ReportStatus::Running => key.push_str(":running"),
            ReportStatus::Completed => {
                let output = reporting.output(&item.job_id)?;
                match task.write_output(output, reporting.artifacts()) {
                    Ok(written) => uri = Some(written),
                    Err(e) => {
                        status = ReportStatus::Failed;
                        error = Some(format!(
                            "INTERNAL: cannot write the output artifact: {}",
                            e.message
                        ));
                    }
                }
            }
            ReportStatus::Failed => {}
        }
        // The receipt goes beside the output: a control plane that checks
        // it fetches it like any artifact. A report is sent without one
        // rather than not at all.
        let receipt = match (item.status.is_final(), reporting.receipt(&item.job_id)?) {
            (true, Some(bytes)) => reporting
                .artifacts()
                .write_file(&task.job_id, &task.task_id, "receipt.json", &bytes)
                .inspect_err(|e| tracing::warn!(job_id = %item.job_id, error = %e.message, "cannot write the receipt artifact"))
                .ok(),
            _ => None,
        };
        let body = json!({
            "worker_id": self.worker_id,
            "job_id": task.job_id,
            "task_id": task.task_id,
            "lease_id": task.lease_id,
            "idempotency_key": key,
            "status": status.as_str(),
            "output_artifact_uri": uri.unwrap_or_default(),
            "receipt_artifact_uri": receipt.unwrap_or_default(),
            "error": error.unwrap_or_default(),
            "duration_millis": item.duration_ms,
        });
        let reply = self
            .send(
                self.request(reqwest::Method::POST, "/v1/tasks/report")
                    .json(&body),
            )
            .await?;
        let duplicate = reply.to_string().to_lowercase();
        if reply["accepted"] == Value::Bool(false)
            && !(duplicate.contains("duplicate") || duplicate.contains("already"))
        {
            return Err(CpError::Rejected(format!("report not accepted: {reply}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_become_idempotent_auto_jobs_with_string_inputs() {
        let wire: WireAssignment = serde_json::from_value(
            json!({"job_id": "j1", "task_id": "t1", "type": "aggregation",
            "inputs": {"items_json": "[]"}, "attempt": 2, "lease_id": "l-9"}),
        )
        .unwrap();
        let a = wire.into_assignment();
        assert_eq!(a.request.job_id, "splai-j1-t1-a2");
        assert!(a.request.idempotent);
        assert_eq!(a.request.task.payload, json!({"items_json": "[]"}));
        assert_eq!(
            SplaiTask::of(&a.origin).unwrap(),
            SplaiTask {
                job_id: "j1".into(),
                task_id: "t1".into(),
                task_type: "aggregation".into(),
                lease_id: "l-9".into(),
                attempt: 2
            }
        );
    }

    #[test]
    fn unusual_ids_are_hashed_into_valid_job_ids() {
        let id = local_job_id("job/with spaces", "t", 1);
        assert!(
            id.starts_with("splai-") && validate_job_id(&id).is_ok(),
            "{id}"
        );
        assert_ne!(id, local_job_id("job/with spaces", "t", 2));
    }
}
