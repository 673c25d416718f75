//! `Router`: maps a task (type + runtime mode + policy + what this node has)
//! to an executor, and owns the fallback rules. Nothing else in the node
//! knows which backend ran a task.
//!
//! With no explicit runtime: `aggregation` and local `retrieval` run as
//! built-in guests; `tool_execution` runs the named tool's component, or its
//! mapped image, or (for SPLAI's `command`/`script` form) the configured
//! sandbox image, never the host shell; `python` runs its source on the
//! node's Python runtime; `embedding`, `llm_inference` and `model_download`
//! go to the model backend (`routes`). Uploaded blobs named by a task are
//! resolved here, before any executor sees it, and a built-in retrieval
//! over a large corpus is pointed at the index cache
//! ([`crate::index_cache`]; `corpus`).

mod corpus;
mod gate;
mod routes;
#[cfg(test)]
mod tests;

pub use gate::{StartGate, StartRecord};

use crate::artifacts::ArtifactStore;
use crate::blobs::{BlobError, BlobId, BlobStore};
use crate::executor::{EventSink, Executor, Support, TaskContext};
use crate::failure::TaskFailure;
use crate::index_cache::IndexCache;
use crate::languages::python::PythonRuntime;
use crate::limits::Limits;
use crate::mask::Mask;
use crate::policy::Policy;
use crate::task::{ComponentSource, MountSource, Runtime, RuntimeMode, TaskOutcome, TaskSpec};
use crate::tools::ToolRegistry;
use crate::wasm::WasmExecutor;
use routes::is_builtin_retrieval;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where tool tasks see their scratch workspace.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The progress event of a Python job waiting for its runtime.
pub const PYTHON_PREPARING: &str =
    "preparing the Python runtime (compiled once per node, then loaded from the code cache)";
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
    /// Whether running the task can change nothing outside its sandbox but
    /// its own result, files and the node's caches: a WebAssembly task
    /// without outbound HTTP whose writable mounts are all its own scratch.
    pub fn confined(&self) -> bool {
        matches!(&self.task.runtime, Runtime::Wasm(wasm) if wasm.http.is_none())
            && self.task.mounts.iter().all(|m| {
                !m.writable
                    || matches!(
                        m.source,
                        MountSource::Workspace | MountSource::Scratch | MountSource::NodeCache(_)
                    )
            })
    }

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
    /// Holds the task back until its start is recorded, unless it is
    /// confined to its sandbox ([`Plan::confined`]).
    pub start: Option<StartGate>,
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
    index_cache: Option<IndexCache>,
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
            index_cache: None,
        }
    }

    /// Runs `python` tasks on `python`.
    pub fn with_python(mut self, python: Arc<PythonRuntime>) -> Self {
        self.python = Some(python);
        self
    }

    /// Keeps the indexes of retrieval tasks' corpora in `cache`.
    pub fn with_index_cache(mut self, cache: IndexCache) -> Self {
        self.index_cache = Some(cache);
        self
    }

    /// The retrieval index cache, where the node keeps one.
    pub fn index_cache(&self) -> Option<&IndexCache> {
        self.index_cache.as_ref()
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
        if is_builtin_retrieval(&task) {
            crate::index_cache::refuse_reserved(&task)?;
        }
        self.check_corpus_blob(&task)?;
        let mode = task
            .runtime
            .mode_kind()
            .ok_or_else(|| TaskFailure::internal("the router left a task without a runtime"))?;
        self.policy.check_mode(mode)?;
        if task.deterministic.is_some() && mode != RuntimeMode::Wasm {
            return Err(TaskFailure::invalid_input(format!(
                "`{}` tasks run on a {} executor; deterministic mode applies to wasm tasks only",
                task.task_type,
                mode.as_str()
            )));
        }
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
                    wasm.component = ComponentSource::File(self.blob_store()?.file(&id)?);
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
        let mut plan = self.plan(task)?;
        if let Some(gate) = options.start.as_ref().filter(|_| !plan.confined())
            && !gate.pass().await
        {
            return Err(TaskFailure::internal(
                "the task's start could not be recorded; it did not run",
            ));
        }
        let lease = self.corpus_lease(&mut plan.task)?;
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
        let result = if watched.is_empty() {
            run.await
        } else {
            crate::workspace::within_quota(&watched, quota, cancel, run).await
        };
        if let Some(lease) = lease {
            lease.finish(result.is_ok());
        }
        result
    }

    /// Waits until the Python runtime is ready in memory (compiled once per
    /// node, minutes, or loaded from the code cache; a wait the job's own
    /// time limit does not count), saying so in the job's events first.
    async fn python_ready(
        &self,
        python: &PythonRuntime,
        options: &RunOptions,
    ) -> Result<(), TaskFailure> {
        let source = python.snapshot();
        if self.executors.wasm.is_ready(&source) {
            return Ok(());
        }
        if let Some(events) = &options.events {
            events(crate::executor::TaskEvent::Progress {
                what: PYTHON_PREPARING.into(),
                done: 0,
                total: None,
            });
        }
        tokio::select! {
            result = self.executors.wasm.ready(&source) => result.map(drop),
            () = options.cancel.cancelled() => Err(TaskFailure::cancelled()),
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
}
