//! Job Protocol v1 requests (`POST /jobs`, `wasmnode run --job`): parsing,
//! validation with protocol error codes, and conversion to a `TaskSpec`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use wasmnode_runtime::{
    ComponentSource, ImageRuntime, LimitRequest, Mount, MountSource, Runtime, TaskSpec, WasmRuntime,
};

/// The only protocol version this node speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// How deeply a payload may nest: ample for real documents and well inside
/// the JSON parser's own limit, so every accepted request reads back from
/// the store exactly as it went in.
pub const MAX_PAYLOAD_DEPTH: usize = 64;
/// Longest task type, bytes.
pub const MAX_TASK_TYPE_LEN: usize = 128;

/// Why a job was rejected: a protocol error code and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct JobError {
    /// Machine-readable code, e.g. `BAD_RUNTIME_MODE`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl JobError {
    /// A rejection with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Must be 1.
    pub protocol_version: u64,
    /// Unique per worker, chosen by the submitter.
    pub job_id: String,
    /// What to do.
    pub task: JobTask,
    /// How to run it.
    pub runtime: JobRuntime,
    /// Re-run after a node crash instead of failing with `INTERRUPTED`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Scheduling priority: `low`, `normal` (default) or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

/// The `task` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTask {
    /// Task type (a SPLAI type, or any name with an explicit runtime).
    #[serde(rename = "type")]
    pub task_type: String,
    /// The task's inputs.
    #[serde(default)]
    pub payload: Value,
}

/// The `runtime` object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRuntime {
    /// `wasm`, `image` or `auto` (route by task type).
    pub mode: String,
    /// Image reference (image mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command (image mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Component: `builtin:NAME` or a file path (wasm mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// A language whose source `task.payload.code` is (`python`): run by
    /// the node's runtime for it, in the wasm sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// For a component exporting plain functions, the one to call with the
    /// payload as its arguments (`add`, or `ns:pkg/iface#func`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Arguments after argv[0] (wasm commands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets, given to the guest as environment variables and masked in
    /// everything it outputs (see `secrets.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secrets::SecretSource>,
    /// Text on stdin (instead of the payload as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// GPUs requested (image mode), subject to policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Directories to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<JobMount>,
    /// Directories the node itself prepared for the job (a control plane's
    /// downloaded config), outside the mount policy; a submitted request may
    /// not name any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_mounts: Vec<JobMount>,
    /// Requested limits.
    #[serde(default)]
    pub limits: LimitRequest,
    /// Run a wasm task deterministically: fixed clocks and seeded
    /// randomness, so `wasmnode replay` can reproduce its output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// The seed of a deterministic run's randomness (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One mount: `source` is a host path, `artifacts`, `workspace` or an uploaded
/// archive (`blob:HASH`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobMount {
    /// Host directory, `artifacts`, `workspace` or `blob:HASH`.
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    /// `ro` (default) or `rw`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "ro".into()
}

impl JobRequest {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<Self, JobError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            JobError::new("INVALID_JSON", format!("the body is not valid JSON: {e}"))
        })?;
        let Value::Object(object) = &value else {
            return Err(JobError::new(
                "INVALID_JOB",
                "the body must be a JSON object",
            ));
        };
        match object.get("protocol_version") {
            None => {
                return Err(JobError::new(
                    "MISSING_FIELD",
                    "protocol_version is required",
                ));
            }
            Some(v) if v.as_u64() != Some(PROTOCOL_VERSION) => {
                return Err(JobError::new(
                    "BAD_PROTOCOL_VERSION",
                    format!("protocol_version {v} is not supported (this node speaks 1)"),
                ));
            }
            Some(_) => {}
        }
        for field in ["job_id", "task", "runtime"] {
            if !object.contains_key(field) {
                return Err(JobError::new(
                    "MISSING_FIELD",
                    format!("{field} is required"),
                ));
            }
        }
        let job: JobRequest = serde_json::from_value(value)
            .map_err(|e| JobError::new("INVALID_JOB", format!("invalid job: {e}")))?;
        if !job.runtime.node_mounts.is_empty() {
            return Err(JobError::new(
                "INVALID_JOB",
                "runtime.node_mounts is the node's own; a submitted job names its mounts in runtime.mounts",
            ));
        }
        job.validate()?;
        Ok(job)
    }

    /// Checks what serde cannot: ids, modes, priorities, sizes and nesting.
    /// Every front door's request passes through it before it is accepted.
    pub fn validate(&self) -> Result<(), JobError> {
        validate_job_id(&self.job_id)?;
        if self.task.task_type.trim().is_empty() {
            return Err(JobError::new("INVALID_JOB", "task.type must not be empty"));
        }
        if self.task.task_type.len() > MAX_TASK_TYPE_LEN {
            return Err(JobError::new(
                "INVALID_JOB",
                format!("task.type is longer than {MAX_TASK_TYPE_LEN} bytes"),
            ));
        }
        let depth = json_depth(&self.task.payload);
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(JobError::new(
                "INVALID_JOB",
                format!(
                    "task.payload nests {depth} levels deep; at most {MAX_PAYLOAD_DEPTH} are accepted"
                ),
            ));
        }
        match self.runtime.mode.as_str() {
            "wasm" | "auto" => {}
            "image"
                if self
                    .runtime
                    .image
                    .as_deref()
                    .is_some_and(|i| !i.trim().is_empty()) => {}
            "image" => {
                return Err(JobError::new(
                    "INVALID_RUNTIME",
                    "runtime.image is required in image mode",
                ));
            }
            other => {
                return Err(JobError::new(
                    "BAD_RUNTIME_MODE",
                    format!("runtime.mode `{other}` is not supported (use wasm, image or auto)"),
                ));
            }
        }
        if let Some(language) = &self.runtime.language {
            if language != "python" {
                return Err(JobError::new(
                    "INVALID_RUNTIME",
                    format!("runtime.language `{language}` is not one this node knows (python)"),
                ));
            }
            if self.runtime.mode == "image" || self.runtime.component.is_some() {
                return Err(JobError::new(
                    "INVALID_RUNTIME",
                    "runtime.language runs in the wasm sandbox: give no image or component",
                ));
            }
        }
        if self.runtime.seed.is_some() && !self.runtime.deterministic {
            return Err(JobError::new(
                "INVALID_RUNTIME",
                "runtime.seed seeds a deterministic run: set runtime.deterministic too",
            ));
        }
        if self.runtime.deterministic && self.runtime.mode == "image" {
            return Err(JobError::new(
                "INVALID_RUNTIME",
                "runtime.deterministic applies to wasm tasks; a container's clocks and randomness are its own",
            ));
        }
        if let Some(p) = &self.priority
            && !["low", "normal", "high"].contains(&p.as_str())
        {
            return Err(JobError::new(
                "INVALID_JOB",
                format!("priority `{p}` must be low, normal or high"),
            ));
        }
        for m in &self.runtime.mounts {
            if m.mode != "ro" && m.mode != "rw" {
                return Err(JobError::new(
                    "INVALID_RUNTIME",
                    format!("mount mode `{}` must be ro or rw", m.mode),
                ));
            }
        }
        Ok(())
    }

    /// The task this job runs.
    pub fn to_task(&self) -> TaskSpec {
        self.clone().into_task()
    }

    /// The task this job runs, taking the request apart (no copy of the
    /// payload).
    pub fn into_task(self) -> TaskSpec {
        let rt = &self.runtime;
        let runtime = match rt.mode.as_str() {
            "image" => Runtime::Image(ImageRuntime {
                image: rt.image.clone().unwrap_or_default(),
                cmd: rt.cmd.clone(),
                env: rt.env.clone(),
                stdin: rt.stdin.clone().map(String::into_bytes),
                gpus: rt.gpus,
            }),
            "wasm" if rt.component.is_some() => Runtime::Wasm(WasmRuntime {
                function: rt.function.clone(),
                args: rt.args.clone(),
                env: rt.env.clone(),
                stdin: rt.stdin.clone().map(String::into_bytes),
                ..WasmRuntime::new(ComponentSource::parse(
                    rt.component.as_deref().unwrap_or_default(),
                ))
            }),
            _ => Runtime::Auto {
                env: rt.env.clone(),
            },
        };
        let prepared = rt.node_mounts.iter().map(|m| Mount {
            source: MountSource::Prepared(PathBuf::from(&m.source)),
            guest_path: m.target.clone(),
            writable: m.mode == "rw",
        });
        let mounts = rt
            .mounts
            .iter()
            .map(|m| Mount {
                source: match m.source.as_str() {
                    "artifacts" => MountSource::Artifacts,
                    "workspace" => MountSource::Workspace,
                    blob if blob.starts_with(wasmnode_runtime::blobs::SCHEME) => {
                        MountSource::Blob(blob.to_string())
                    }
                    path => MountSource::Host(PathBuf::from(path)),
                },
                guest_path: m.target.clone(),
                writable: m.mode == "rw",
            })
            .chain(prepared)
            .collect();
        let limits = rt.limits.clone();
        let task_type = match rt.language.as_deref() {
            Some(language) => language.to_string(),
            None => self.task.task_type,
        };
        TaskSpec {
            task_id: self.job_id.clone(),
            job_id: self.job_id,
            task_type,
            payload: self.task.payload,
            runtime,
            mounts,
            limits,
            deterministic: rt.deterministic.then(|| rt.seed.unwrap_or(0)),
        }
    }
}

/// How many levels of arrays and objects `value` nests (a scalar is 0).
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// Job ids name files and URLs: 1-128 of `A-Z a-z 0-9 . _ : -`, not `.`/`..`.
pub fn validate_job_id(id: &str) -> Result<(), JobError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(JobError::new(
            "INVALID_JOB_ID",
            format!(
                "job_id `{}` must be 1-128 characters of A-Z a-z 0-9 . _ : -",
                id.chars().take(140).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<JobRequest, JobError> {
        JobRequest::parse(v.to_string().as_bytes())
    }

    #[test]
    fn accepts_the_protocol_example_unchanged() {
        let job = parse(json!({"protocol_version":1,"job_id":"job-123",
            "task":{"type":"compile_and_run_cpp","payload":{"source_code":"..."}},
            "runtime":{"mode":"image","image":"runner:1.0.0","cmd":[],
                "env":{"TIMEOUT_SECONDS":"3"},"limits":{"memory_mb":512,"max_runtime_seconds":5}}}))
        .unwrap();
        let task = job.to_task();
        assert!(
            matches!(&task.runtime, Runtime::Image(i) if i.image == "runner:1.0.0" && i.env["TIMEOUT_SECONDS"] == "3")
        );
        assert_eq!(task.limits.memory_mb, Some(512));
    }

    #[test]
    fn wasm_jobs_with_mounts_and_splai_types_convert() {
        let job = parse(json!({"protocol_version":1,"job_id":"j",
            "task":{"type":"x","payload":{}},
            "runtime":{"mode":"wasm","component":"builtin:grep","mounts":[
                {"source":"/srv/data","target":"/data"},{"source":"workspace","target":"/w","mode":"rw"},
                {"source":"blob:abc","target":"/src"}]}}))
        .unwrap();
        let task = job.to_task();
        assert!(
            matches!(&task.runtime, Runtime::Wasm(w) if matches!(&w.component, ComponentSource::Builtin(n) if n == "grep"))
        );
        assert_eq!(task.mounts[0].source, MountSource::Host("/srv/data".into()));
        assert!(!task.mounts[0].writable);
        assert_eq!(task.mounts[1].source, MountSource::Workspace);
        assert_eq!(task.mounts[2].source, MountSource::Blob("blob:abc".into()));
        let splai = parse(json!({"protocol_version":1,"job_id":"j","task":{"type":"retrieval","payload":{"query":"q"}},"runtime":{"mode":"wasm"}})).unwrap();
        assert!(matches!(splai.to_task().runtime, Runtime::Auto { .. }));
    }

    #[test]
    fn rejects_with_protocol_codes() {
        let ok = json!({"protocol_version":1,"job_id":"j","task":{"type":"t"},"runtime":{"mode":"wasm"}});
        let with = |path: &str, v: Value| {
            let mut job = ok.clone();
            job[path] = v;
            parse(job).unwrap_err().code
        };
        assert_eq!(
            JobRequest::parse(b"{nope").unwrap_err().code,
            "INVALID_JSON"
        );
        assert_eq!(JobRequest::parse(b"[]").unwrap_err().code, "INVALID_JOB");
        assert_eq!(with("protocol_version", json!(2)), "BAD_PROTOCOL_VERSION");
        assert_eq!(with("protocol_version", json!("1")), "BAD_PROTOCOL_VERSION");
        assert_eq!(with("job_id", json!("../etc")), "INVALID_JOB_ID");
        assert_eq!(with("job_id", json!("")), "INVALID_JOB_ID");
        assert_eq!(with("runtime", json!({"mode":"vm"})), "BAD_RUNTIME_MODE");
        assert_eq!(with("runtime", json!({"mode":"image"})), "INVALID_RUNTIME");
        assert_eq!(
            with("runtime", json!({"mode":"wasm","limits":{"gpu_hours":1}})),
            "INVALID_JOB"
        );
        assert_eq!(with("priority", json!("urgent")), "INVALID_JOB");
        let smuggled =
            json!({"mode": "wasm", "node_mounts": [{"source": "/etc", "target": "/etc"}]});
        assert_eq!(with("runtime", smuggled), "INVALID_JOB");
        let long_type = json!({"type": "t".repeat(MAX_TASK_TYPE_LEN + 1)});
        assert_eq!(with("task", long_type), "INVALID_JOB");
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("task");
        assert_eq!(parse(missing).unwrap_err().code, "MISSING_FIELD");
    }

    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn payloads_nest_at_most_the_limit_and_accepted_ones_read_back() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
        let job = |depth| {
            json!({"protocol_version": 1, "job_id": "j", "task": {"type": "t", "payload": nested(depth)},
                "runtime": {"mode": "wasm"}})
        };
        let accepted = parse(job(MAX_PAYLOAD_DEPTH)).unwrap();
        let stored = serde_json::to_vec(&accepted).unwrap();
        let read_back: JobRequest = serde_json::from_slice(&stored).unwrap();
        assert_eq!(read_back, accepted);
        let refused = parse(job(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        assert_eq!(refused.code, "INVALID_JOB");
        assert!(refused.message.contains("nests 65 levels"), "{refused}");
        let too_deep_for_json = parse(job(200)).unwrap_err();
        assert_eq!(too_deep_for_json.code, "INVALID_JSON");
    }

    #[test]
    fn the_example_jobs_parse() {
        for body in [
            include_str!("../../examples/jobs/retrieval.json"),
            include_str!("../../examples/jobs/aggregation.json"),
            include_str!("../../examples/jobs/grep-tool.json"),
        ] {
            JobRequest::parse(body.as_bytes()).unwrap();
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Arbitrary JSON, biased towards job-like objects.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)),
                "[a-z_:./-]{0,12}".prop_map(Value::String),
                Just(Value::from(1)),
                Just(Value::from("wasm")),
                Just(Value::from("image")),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("protocol_version".to_string()),
                            Just("job_id".to_string()),
                            Just("task".to_string()),
                            Just("runtime".to_string()),
                            Just("type".to_string()),
                            Just("payload".to_string()),
                            Just("mode".to_string()),
                            Just("limits".to_string()),
                            Just("mounts".to_string()),
                            Just("component".to_string()),
                            "[a-z_]{1,8}",
                        ],
                        inner,
                        0..6,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = JobRequest::parse(&bytes);
            }

            #[test]
            fn arbitrary_json_never_panics_and_accepted_jobs_convert(value in json_value()) {
                if let Ok(job) = JobRequest::parse(value.to_string().as_bytes()) {
                    let task = job.to_task();
                    prop_assert_eq!(task.job_id, job.job_id);
                }
            }
        }
    }
}
