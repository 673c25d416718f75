//! The Vera-style worker convention, served beside Job Protocol v1 on the
//! same job store: `POST /execute` requests and their mapping onto the
//! node's own jobs, the callback allowlist and callback origins. Its HTTP
//! routes are in `http`, callback delivery in `callbacks`, the operator's
//! `[vera]` settings in `settings`.

pub mod callbacks;
pub mod http;
pub mod settings;

use crate::job::{
    JobError, JobMount, JobRequest, JobRuntime, JobTask, PROTOCOL_VERSION, validate_job_id,
};
use crate::store::{Channel, Origin};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use settings::{LanguageRuntime, VeraSection};
use std::collections::BTreeMap;
use wasmnode_runtime::urls::{self, UrlAllowlist, UrlRefused};
use wasmnode_runtime::{LimitRequest, task_types};

/// A `POST /execute` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The submitter's id for the task (becomes the job id).
    pub task_id: String,
    /// `toolchain_execution`, `custom`, `model_inference`, `data_processing`
    /// or `sandboxed_execution`.
    pub task_type: String,
    /// Inputs; `timeout` (seconds) is the wall-clock limit.
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// `low`, `normal` (default) or `high`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Where to POST the result when the task ends.
    #[serde(default)]
    pub callback_url: Option<String>,
}

fn invalid(message: impl Into<String>) -> JobError {
    JobError::new("INVALID_TASK", message)
}

impl ExecuteRequest {
    /// Parses a body.
    pub fn parse(body: &[u8]) -> Result<Self, JobError> {
        serde_json::from_slice(body)
            .map_err(|e| JobError::new("INVALID_JSON", format!("invalid /execute body: {e}")))
    }

    /// The job this request runs, per the task type mapping.
    pub fn to_job(&self, config: &VeraSection) -> Result<JobRequest, JobError> {
        validate_job_id(&self.task_id).map_err(|e| {
            JobError::new("INVALID_TASK_ID", e.message.replace("job_id", "task_id"))
        })?;
        let mut payload = self.payload.clone();
        let timeout = match payload.remove("timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => Some(
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| invalid("payload.timeout must be a number of seconds"))?,
            ),
            Some(_) => return Err(invalid("payload.timeout must be a number of seconds")),
        };
        let text = |map: &Map<String, Value>, key: &str| {
            map.get(key).and_then(Value::as_str).map(String::from)
        };
        let (task_type, runtime) = match self.task_type.as_str() {
            "model_inference" => ("llm_inference".to_string(), auto()),
            "data_processing" => match text(&payload, "component") {
                Some(component) => ("data_processing".into(), wasm(&mut payload, component)?),
                None => {
                    let op = text(&payload, "operation").or_else(|| text(&payload, "type")).ok_or_else(|| {
                        invalid("data_processing needs `component` (a WASI component) or `operation` (aggregation, retrieval, embedding)")
                    })?;
                    if !task_types::task_type(&op).is_some_and(|t| t.vera_operation) {
                        let ops: Vec<_> = task_types::TASK_TYPES
                            .iter()
                            .filter(|t| t.vera_operation)
                            .map(|t| t.name)
                            .collect();
                        return Err(invalid(format!(
                            "data_processing operation `{op}` is not one of {}",
                            ops.join(", ")
                        )));
                    }
                    (op, auto())
                }
            },
            "toolchain_execution" | "custom" => {
                if payload.contains_key("tool") {
                    ("tool_execution".into(), auto())
                } else if let Some(component) = text(&payload, "component") {
                    (self.task_type.clone(), wasm(&mut payload, component)?)
                } else if let Some(image) = text(&payload, "image") {
                    let cmd = strings(payload.remove("cmd"))?;
                    (
                        self.task_type.clone(),
                        JobRuntime {
                            mode: "image".into(),
                            image: Some(image),
                            cmd,
                            ..JobRuntime::default()
                        },
                    )
                } else {
                    return Err(invalid(format!(
                        "{} needs `tool`, `component` or `image` in the payload",
                        self.task_type
                    )));
                }
            }
            "sandboxed_execution" => {
                let code = text(&payload, "code")
                    .ok_or_else(|| invalid("sandboxed_execution needs `code`"))?;
                let language = text(&payload, "language")
                    .ok_or_else(|| invalid("sandboxed_execution needs `language`"))?;
                let runtime = match config.languages.get(&language) {
                    Some(runtime) => {
                        payload.remove("code");
                        language_runtime(runtime, code)?
                    }
                    // The node's own Python runtime ([languages.python]).
                    None if language == "python" => JobRuntime {
                        mode: "auto".into(),
                        language: Some(language),
                        ..JobRuntime::default()
                    },
                    None => {
                        return Err(JobError::new(
                            "BACKEND_UNAVAILABLE",
                            format!(
                                "no runtime for `{language}` is configured on this node (see [vera.languages.{language}])"
                            ),
                        ));
                    }
                };
                (self.task_type.clone(), runtime)
            }
            other => {
                return Err(JobError::new(
                    "UNKNOWN_TASK_TYPE",
                    format!(
                        "task_type `{other}` is not one of toolchain_execution, custom, model_inference, data_processing, sandboxed_execution"
                    ),
                ));
            }
        };
        let mut runtime = runtime;
        runtime.limits = LimitRequest {
            max_runtime_seconds: timeout,
            ..LimitRequest::default()
        };
        Ok(JobRequest {
            protocol_version: PROTOCOL_VERSION,
            job_id: self.task_id.clone(),
            task: JobTask {
                task_type,
                payload: Value::Object(payload),
            },
            runtime,
            idempotent: false,
            priority: self.priority.clone(),
        })
    }
}

fn auto() -> JobRuntime {
    JobRuntime {
        mode: "auto".into(),
        ..JobRuntime::default()
    }
}

fn strings(value: Option<Value>) -> Result<Vec<String>, JobError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v).map_err(|_| invalid("expected a list of strings")),
    }
}

/// A WASI runtime from the payload's `component`, `args`, `env`, `stdin`, `mounts`.
fn wasm(payload: &mut Map<String, Value>, component: String) -> Result<JobRuntime, JobError> {
    payload.remove("component");
    let args = strings(payload.remove("args"))?;
    let env: BTreeMap<String, String> = match payload.remove("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => {
            serde_json::from_value(v).map_err(|_| invalid("`env` must map names to strings"))?
        }
    };
    let mounts: Vec<JobMount> = match payload.remove("mounts") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            serde_json::from_value(v).map_err(|e| invalid(format!("invalid `mounts`: {e}")))?
        }
    };
    let stdin = payload
        .remove("stdin")
        .and_then(|v| v.as_str().map(String::from));
    Ok(JobRuntime {
        mode: "wasm".into(),
        component: Some(component),
        args,
        env,
        stdin,
        mounts,
        ..JobRuntime::default()
    })
}

fn language_runtime(runtime: &LanguageRuntime, code: String) -> Result<JobRuntime, JobError> {
    if let Some(image) = &runtime.image {
        let mut cmd = runtime.command.clone();
        cmd.push(code);
        return Ok(JobRuntime {
            mode: "image".into(),
            image: Some(image.clone()),
            cmd,
            stdin: Some(String::new()),
            ..JobRuntime::default()
        });
    }
    if let Some(component) = &runtime.component {
        let mut args = runtime.args.clone();
        args.push(code);
        return Ok(JobRuntime {
            mode: "wasm".into(),
            component: Some(component.clone()),
            args,
            stdin: Some(String::new()),
            ..JobRuntime::default()
        });
    }
    Err(JobError::new(
        "BACKEND_UNAVAILABLE",
        "the configured language runtime names neither an image nor a component",
    ))
}

/// The protocol name on the origins of tasks with a callback.
const CALLBACK: &str = "callback";

/// Where a task's result is POSTed, stored with its job.
#[derive(Serialize, Deserialize)]
struct Callback {
    url: String,
}

/// The origin of a task whose result goes to `url`.
pub fn callback_origin(url: &str) -> Origin {
    Origin::new(CALLBACK, Channel::Callback, &Callback { url: url.into() })
}

/// The callback URL of a task, when it has one.
pub fn callback_url(origin: &Origin) -> Option<String> {
    origin.data::<Callback>(CALLBACK).map(|c| c.url)
}

/// Whether `url` is an http(s) URL that the operator's allowlist admits,
/// compared by scheme, host, port and path prefix (`*` admits any), and
/// not plain http beyond this machine unless `vera.allow_plain_http`.
pub fn callback_allowed(url: &str, settings: &VeraSection) -> Result<(), JobError> {
    let allowlist = UrlAllowlist::new(&settings.callback_allowlist, "vera.callback_allowlist")
        .map_err(|e| JobError::new("POLICY_DENIED", e))?;
    match allowlist.check(url) {
        Ok((parsed, _)) if urls::in_clear(&parsed) && !settings.allow_plain_http => {
            Err(JobError::new(
                "POLICY_DENIED",
                format!(
                    "the callback `{}` would carry the result in clear over plain http; use https, or set vera.allow_plain_http = true",
                    urls::redact(url)
                ),
            ))
        }
        Ok(_) => Ok(()),
        Err(e @ UrlRefused::NotAllowed { .. }) => {
            Err(JobError::new("POLICY_DENIED", e.to_string()))
        }
        Err(e) => Err(JobError::new("INVALID_CALLBACK", e.to_string())),
    }
}

/// Vera's name of a job state.
pub fn status_name(state: crate::store::JobState) -> &'static str {
    use crate::store::JobState::*;
    match state {
        Queued => "queued",
        Running => "running",
        Finished => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

/// The result document of a task (`/task/{id}/result` and callbacks) as
/// JSON; the task's output is embedded exactly as the task produced it.
pub fn result_document(
    node: &crate::node::Node,
    record: &crate::store::JobRecord,
) -> Result<Vec<u8>, crate::store::StoreError> {
    let worker_id = node.config.node.worker_id.as_str();
    use serde_json::value::RawValue;
    let output = match record.state.is_terminal() {
        true => node.output(&record.job_id)?,
        false => None,
    };
    let result: Option<Box<RawValue>> = output
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| RawValue::from_string(text).ok());
    let receipt: Option<Box<RawValue>> = match record.state.is_terminal() {
        true => node.receipt(&record.job_id)?,
        false => None,
    }
    .and_then(|bytes| String::from_utf8(bytes).ok())
    .and_then(|text| RawValue::from_string(text).ok());
    let logs = node.logs(&record.job_id)?;
    let ending = record.result.clone().unwrap_or_default();
    let seconds = match (record.started_at_ms, record.finished_at_ms) {
        (Some(s), Some(f)) => Some(f.saturating_sub(s) as f64 / 1000.0),
        _ => None,
    };
    #[derive(Serialize)]
    struct Document<'a> {
        task_id: &'a str,
        status: &'static str,
        result: Option<Box<RawValue>>,
        error: Option<crate::store::ErrorInfo>,
        stdout: String,
        stderr: String,
        exit_code: Option<i32>,
        execution_time_seconds: Option<f64>,
        completed_at: Option<String>,
        worker_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        receipt: Option<Box<RawValue>>,
    }
    let document = Document {
        task_id: &record.job_id,
        status: status_name(record.state),
        result,
        error: ending.error,
        stdout: logs.stdout,
        stderr: logs.stderr,
        exit_code: ending.exit_code,
        execution_time_seconds: seconds,
        completed_at: record.finished_at_ms.map(crate::store::rfc3339),
        worker_id,
        receipt,
    };
    Ok(serde_json::to_vec(&document).expect("result documents serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(task_type: &str, payload: Value) -> ExecuteRequest {
        ExecuteRequest {
            task_id: "t1".into(),
            task_type: task_type.into(),
            payload: payload.as_object().unwrap().clone(),
            priority: Some("high".into()),
            callback_url: None,
        }
    }

    #[test]
    fn task_types_map_onto_the_nodes_own() {
        let config = VeraSection::default();
        let job = request(
            "model_inference",
            json!({"prompt": "hi", "model": "m", "timeout": 30}),
        )
        .to_job(&config)
        .unwrap();
        assert_eq!(
            (job.task.task_type.as_str(), job.runtime.mode.as_str()),
            ("llm_inference", "auto")
        );
        assert_eq!(job.runtime.limits.max_runtime_seconds, Some(30.0));
        assert!(job.task.payload.get("timeout").is_none());
        assert_eq!(job.priority.as_deref(), Some("high"));
        let job = request(
            "data_processing",
            json!({"operation": "aggregation", "items_json": "[]"}),
        )
        .to_job(&config)
        .unwrap();
        assert_eq!(job.task.task_type, "aggregation");
        let job = request(
            "data_processing",
            json!({"component": "builtin:retrieval", "query": "q"}),
        )
        .to_job(&config)
        .unwrap();
        assert_eq!(
            (job.runtime.mode.as_str(), job.runtime.component.as_deref()),
            ("wasm", Some("builtin:retrieval"))
        );
        let job = request("custom", json!({"tool": "grep", "pattern": "x"}))
            .to_job(&config)
            .unwrap();
        assert_eq!(job.task.task_type, "tool_execution");
        let job = request(
            "toolchain_execution",
            json!({"image": "runner:1", "cmd": ["make"]}),
        )
        .to_job(&config)
        .unwrap();
        assert_eq!(
            (job.runtime.image.as_deref(), job.runtime.cmd.clone()),
            (Some("runner:1"), vec!["make".to_string()])
        );
    }

    #[test]
    fn sandboxed_code_runs_in_a_configured_runtime_or_the_nodes_own_python() {
        let mut config = VeraSection::default();
        let req = request(
            "sandboxed_execution",
            json!({"code": "print(1)", "language": "python"}),
        );
        let job = req.to_job(&config).unwrap();
        assert_eq!(job.runtime.language.as_deref(), Some("python"));
        assert_eq!(job.task.payload["code"], "print(1)");
        let ruby = request(
            "sandboxed_execution",
            json!({"code": "puts 1", "language": "ruby"}),
        );
        assert_eq!(
            ruby.to_job(&config).unwrap_err().code,
            "BACKEND_UNAVAILABLE"
        );
        config.languages.insert(
            "python".into(),
            LanguageRuntime {
                image: Some("py:3".into()),
                command: vec!["python3".into(), "-c".into()],
                ..LanguageRuntime::default()
            },
        );
        let job = req.to_job(&config).unwrap();
        assert_eq!(job.runtime.cmd, ["python3", "-c", "print(1)"]);
    }

    #[test]
    fn bad_requests_are_refused_with_codes() {
        let config = VeraSection::default();
        assert_eq!(
            request("teleport", json!({}))
                .to_job(&config)
                .unwrap_err()
                .code,
            "UNKNOWN_TASK_TYPE"
        );
        assert_eq!(
            request("custom", json!({}))
                .to_job(&config)
                .unwrap_err()
                .code,
            "INVALID_TASK"
        );
        assert_eq!(
            request("custom", json!({"tool": "x", "timeout": "soon"}))
                .to_job(&config)
                .unwrap_err()
                .code,
            "INVALID_TASK"
        );
        let mut bad_id = request("custom", json!({"tool": "x"}));
        bad_id.task_id = "../x".into();
        assert_eq!(bad_id.to_job(&config).unwrap_err().code, "INVALID_TASK_ID");
        assert_eq!(
            ExecuteRequest::parse(b"{}").unwrap_err().code,
            "INVALID_JSON"
        );
    }

    #[test]
    fn callbacks_must_be_allowlisted_http_urls() {
        let allow = |entries: &[&str], allow_plain_http| VeraSection {
            callback_allowlist: entries.iter().map(|e| e.to_string()).collect(),
            allow_plain_http,
            ..Default::default()
        };
        let local = allow(&["http://127.0.0.1:8088/hooks/"], false);
        assert!(callback_allowed("http://127.0.0.1:8088/hooks/done", &local).is_ok());
        assert_eq!(
            callback_allowed("http://169.254.169.254/latest", &local)
                .unwrap_err()
                .code,
            "POLICY_DENIED"
        );
        assert_eq!(
            callback_allowed("http://127.0.0.1:8088/hooks/x", &allow(&[], false))
                .unwrap_err()
                .code,
            "POLICY_DENIED"
        );
        let remote = allow(&["*"], false);
        let in_clear = callback_allowed("http://hooks.example.com/done", &remote).unwrap_err();
        assert!(
            in_clear.message.contains("allow_plain_http"),
            "{}",
            in_clear.message
        );
        assert!(callback_allowed("https://hooks.example.com/done", &remote).is_ok());
        assert!(callback_allowed("http://hooks.example.com/done", &allow(&["*"], true)).is_ok());
        assert_eq!(
            callback_allowed("file:///etc/passwd", &allow(&["*"], false))
                .unwrap_err()
                .code,
            "INVALID_CALLBACK"
        );
        assert!(callback_allowed("https://any.example/x", &allow(&["*"], false)).is_ok());
    }
}
