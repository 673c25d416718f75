//! A GOLIAT-style dashboard control plane: machines heartbeat
//! (`POST /api/heartbeat {"machineId"}`), ask for an assignment while idle
//! (`GET /api/assignment?machineId=…`, carrying `config_url` and
//! `split_index`), run the job the node's configuration names for it with
//! the downloaded config mounted read-only at `/config`, and report
//! (`POST /api/report`). Network failures are retried by the shared agent
//! loop, never fatal.

use super::AgentSettings;
use super::protocol::{Assignment, ControlPlane, CpError, Heartbeat, Registration, Reporting};
use super::settings::GoliatSection;
use super::transport::Transport;
use crate::config::Config;
use crate::job::{JobMount, JobRequest, JobRuntime, JobTask, PROTOCOL_VERSION};
use crate::store::{Channel, Origin, OutboxItem, ReportStatus};
use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmnode_runtime::peer;

/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Where the config directory appears in the task.
pub const CONFIG_MOUNT: &str = "/config";

/// The protocol name on the origins of dashboard assignments.
const PROTOCOL: &str = "goliat";

/// The dashboard assignment behind a job, stored with it for its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GoliatAssignment {
    /// The dashboard's id of the assignment, if it sent one.
    assignment_id: Option<String>,
    /// Which split of the work.
    split_index: u64,
    /// Where the config came from.
    config_url: String,
}

/// The dashboard adapter for `url`, after checking `[goliat.job]` and
/// trusting the operator's own component or image; the agent's settings
/// from `[goliat]`.
pub fn attach(
    config: &mut Config,
    transport: Transport,
    url: &str,
    backoff_max: Duration,
) -> anyhow::Result<(Arc<dyn ControlPlane>, AgentSettings)> {
    if config.goliat.machine_id.is_empty() {
        config.goliat.machine_id = detect_machine_id();
    }
    let job = &config.goliat.job;
    match job.mode.as_str() {
        "wasm" if job.component.is_some() => {}
        "image" if job.image.is_some() => {}
        _ => anyhow::bail!(
            "goliat.job must name a `component` (mode wasm) or an `image` (mode image)"
        ),
    }
    // Each assignment's downloaded config is mounted into its own job only
    // (a node mount, outside the mount policy); the operator's own
    // component and image are trusted.
    let work_dir = config.node.data_dir.join("goliat");
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", work_dir.display()))?;
    if let Some(dir) = job
        .component
        .as_deref()
        .and_then(|c| std::path::Path::new(c).parent())
    {
        config.policy.component_roots.push(dir.to_path_buf());
    }
    if let Some(image) = job.image.clone() {
        config.docker.allowed_images.push(image);
    }
    tracing::info!(machine_id = %config.goliat.machine_id, "attaching to a GOLIAT-style dashboard");
    let client = GoliatClient::new(
        transport,
        url,
        &config.goliat.machine_id,
        config.goliat.clone(),
        work_dir,
        config.control_plane.max_answer_bytes,
    )?;
    let settings = AgentSettings {
        max_parallel_tasks: config.control_plane.max_parallel_tasks.unwrap_or(1),
        poll_interval: Duration::from_secs(config.goliat.poll_seconds.max(1)),
        backoff_max,
        locality: None,
        refresh: None,
        lease: None,
    };
    Ok((Arc::new(client), settings))
}

/// The dashboard client of one machine.
pub struct GoliatClient {
    base: String,
    machine_id: String,
    settings: GoliatSection,
    work_dir: PathBuf,
    max_answer_bytes: u64,
    http: reqwest::Client,
    transport: Transport,
}

impl GoliatClient {
    /// A client for `base` as `machine_id`, reached through
    /// `transport`; downloaded configs go under `work_dir`; an
    /// assignment larger than `max_answer_bytes` is refused while it arrives.
    pub fn new(
        transport: Transport,
        base: &str,
        machine_id: &str,
        settings: GoliatSection,
        work_dir: PathBuf,
        max_answer_bytes: u64,
    ) -> Result<Self, CpError> {
        let http = transport
            .builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        Ok(Self {
            transport,
            base: base.trim_end_matches('/').into(),
            machine_id: machine_id.into(),
            settings,
            work_dir,
            max_answer_bytes,
            http,
        })
    }

    /// Downloads the assignment's config and builds the configured job around it.
    async fn assignment(&self, body: &Value) -> Result<Assignment, CpError> {
        let config_url = body["config_url"]
            .as_str()
            .ok_or_else(|| CpError::Rejected(format!("assignment without config_url: {body}")))?;
        let split_index = match &body["split_index"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            CpError::Rejected(format!("assignment without a numeric split_index: {body}"))
        })?;
        let assignment_id =
            ["id", "assignmentId", "assignment_id"]
                .iter()
                .find_map(|k| match &body[*k] {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
        let url = if config_url.starts_with("http://") || config_url.starts_with("https://") {
            config_url.to_string()
        } else {
            format!("{}/{}", self.base, config_url.trim_start_matches('/'))
        };
        let response = self.http.get(&url).send().await?;
        if !response.status().is_success() {
            return Err(CpError::Unavailable(format!(
                "config {url} answered {}",
                response.status()
            )));
        }
        let bytes = peer::read_capped(response, MAX_CONFIG_BYTES)
            .await
            .map_err(|e| CpError::Unavailable(format!("config {url}: {e}")))?;
        let key = blake3::hash(format!("{assignment_id:?}\u{0}{split_index}\u{0}{url}").as_bytes())
            .to_hex()[..16]
            .to_string();
        let dir = self.work_dir.join(&key);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("config.json"), &bytes))
            .map_err(|e| {
                CpError::Unavailable(format!(
                    "cannot store the config under {}: {e}",
                    dir.display()
                ))
            })?;
        let job = &self.settings.job;
        let mut env = job.env.clone();
        env.insert("SPLIT_INDEX".into(), split_index.to_string());
        env.insert("CONFIG_PATH".into(), format!("{CONFIG_MOUNT}/config.json"));
        env.insert("MACHINE_ID".into(), self.machine_id.clone());
        let runtime = JobRuntime {
            mode: job.mode.clone(),
            image: job.image.clone(),
            cmd: job.cmd.clone(),
            component: job.component.clone(),
            language: None,
            function: None,
            args: job.args.clone(),
            env,
            secrets: Default::default(),
            stdin: None,
            gpus: None,
            mounts: Vec::new(),
            node_mounts: vec![JobMount {
                source: dir.display().to_string(),
                target: CONFIG_MOUNT.into(),
                mode: "ro".into(),
            }],
            limits: job.limits.clone(),
            deterministic: false,
            seed: None,
        };
        let request = JobRequest {
            protocol_version: PROTOCOL_VERSION,
            job_id: format!("goliat-{split_index}-{key}"),
            task: JobTask {
                task_type: job.task_type.clone(),
                payload: json!({"split_index": split_index, "config_url": url}),
            },
            runtime,
            idempotent: true,
            priority: None,
        };
        Ok(Assignment {
            request,
            origin: Origin::new(
                PROTOCOL,
                Channel::ControlPlane,
                &GoliatAssignment {
                    assignment_id,
                    split_index,
                    config_url: url,
                },
            ),
            account: None,
        })
    }
}

#[async_trait]
impl ControlPlane for GoliatClient {
    fn url(&self) -> &str {
        &self.base
    }

    fn duplicate(&self) -> Result<Box<dyn ControlPlane>, CpError> {
        Ok(Box::new(Self::new(
            self.transport.clone(),
            &self.base,
            &self.machine_id,
            self.settings.clone(),
            self.work_dir.clone(),
            self.max_answer_bytes,
        )?))
    }

    async fn register(&self, _registration: &Registration) -> Result<Duration, CpError> {
        self.heartbeat_now().await?;
        Ok(Duration::from_secs(self.settings.heartbeat_seconds.max(1)))
    }

    async fn heartbeat(&self, _heartbeat: &Heartbeat) -> Result<(), CpError> {
        self.heartbeat_now().await
    }

    async fn poll(&self, max: usize) -> Result<Vec<Assignment>, CpError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let response = self
            .http
            .get(format!("{}/api/assignment", self.base))
            .query(&[("machineId", &self.machine_id)])
            .send()
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => return Ok(Vec::new()),
            s if s.is_server_error() => return Err(CpError::Unavailable(s.to_string())),
            s if !s.is_success() => return Err(CpError::Rejected(s.to_string())),
            _ => {}
        }
        let text = peer::read_capped(response, self.max_answer_bytes)
            .await
            .map_err(|e| CpError::Unavailable(format!("assignment: {e}")))?;
        let text = String::from_utf8_lossy(&text);
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| CpError::Rejected(format!("malformed assignment: {e}")))?
        };
        let assignment = match &body {
            Value::Object(map) if map.contains_key("assignment") => body["assignment"].clone(),
            other => other.clone(),
        };
        if assignment.is_null() || assignment.as_object().is_some_and(|m| m.is_empty()) {
            return Ok(Vec::new());
        }
        Ok(vec![self.assignment(&assignment).await?])
    }

    async fn report(&self, item: &OutboxItem, _: &Reporting<'_>) -> Result<(), CpError> {
        let Some(GoliatAssignment {
            assignment_id,
            split_index,
            config_url,
        }) = item.origin.data(PROTOCOL)
        else {
            return Err(CpError::Rejected(format!(
                "not a GOLIAT report: {:?}",
                item.origin
            )));
        };
        let status = match item.status {
            ReportStatus::Running => return Ok(()),
            ReportStatus::Completed => "completed",
            ReportStatus::Failed => "failed",
        };
        let body = json!({
            "machineId": self.machine_id,
            "assignmentId": assignment_id,
            "split_index": split_index,
            "config_url": config_url,
            "status": status,
            "error": item.error,
            "duration_ms": item.duration_ms,
            "job_id": item.job_id,
        });
        let response = self
            .http
            .post(format!("{}/api/report", self.base))
            .json(&body)
            .send()
            .await?;
        match response.status() {
            s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Err(CpError::Unavailable(s.to_string()))
            }
            s => Err(CpError::Rejected(s.to_string())),
        }
    }
}

impl GoliatClient {
    async fn heartbeat_now(&self) -> Result<(), CpError> {
        let response = self
            .http
            .post(format!("{}/api/heartbeat", self.base))
            .json(&json!({"machineId": self.machine_id}))
            .send()
            .await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s if s.is_server_error() => Err(CpError::Unavailable(s.to_string())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(CpError::Unauthorized(response.status().to_string()))
            }
            s => Err(CpError::Rejected(s.to_string())),
        }
    }
}

/// This machine's id when none is configured: its primary IP address (the
/// source address of the default route; a UDP "connect" sends nothing), else
/// its host name.
pub fn detect_machine_id() -> String {
    let primary = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    match primary {
        Some(ip) => ip.to_string(),
        None => crate::facts::HostFacts::read().hostname,
    }
}
