//! Assembling a node from its configuration: the executors, the tool
//! registry and the router every front end shares, and for long-running
//! nodes the job store, the scheduler and its execution runtime. What the
//! front doors may do with a node is in `facade`; its tools as clients see
//! them in `catalog`.

mod catalog;
mod facade;
mod plugins;

pub use catalog::{Described, function_description};

use crate::agent::status::ControlPlaneStatus;
use crate::config::{Config, DockerMode};
use crate::events::EventHub;
use crate::facts::HostFacts;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::receipts::Notary;
use crate::scheduler::{Scheduler, Settings};
use crate::store::JobStore;
use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;
use wasmnode_runtime::blobs::BlobStore;
use wasmnode_runtime::docker::DockerExecutor;
use wasmnode_runtime::index_cache::IndexCache;
use wasmnode_runtime::languages::python::PythonRuntime;
use wasmnode_runtime::llm::{LlmExecutor, Probe};
use wasmnode_runtime::{
    ArtifactStore, Executors, Policy, Router, RuntimeMode, ToolRegistry, WasmExecutor,
    signing::TrustList,
};

/// Who submits the tasks a router will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A local user at the command line: any path and any local image.
    Local,
    /// Remote submitters (API, control plane): the configured policy.
    Remote,
}

/// Connects to the Docker engine as `config.docker.mode` says: `None` when
/// off, or when `auto` and the engine does not answer.
pub async fn docker(
    config: &Config,
    access: Access,
) -> anyhow::Result<Option<Arc<DockerExecutor>>> {
    if config.docker.mode == DockerMode::Off {
        return Ok(None);
    }
    match DockerExecutor::connect(config.docker_settings(access == Access::Local)).await {
        Ok(docker) => Ok(Some(Arc::new(docker))),
        Err(e) if config.docker.mode == DockerMode::On => Err(e).context("docker.mode is `on`"),
        Err(e) => {
            tracing::info!(reason = %e, "container jobs disabled (no Docker engine)");
            Ok(None)
        }
    }
}

/// Builds the router for `config` with the given container backend.
pub async fn router(
    config: &Config,
    access: Access,
    docker: Option<Arc<DockerExecutor>>,
    llm: Arc<LlmExecutor>,
) -> anyhow::Result<Router> {
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let mut wasm_config = config.wasm_config();
    if access == Access::Remote && config.policy.require_signed_tools {
        let trust = TrustList::load(&config.policy.trusted_keys)?;
        tracing::info!(keys = trust.len(), "only signed component files run");
        wasm_config.trust = Some(Arc::new(trust));
    }
    let wasm = Arc::new(WasmExecutor::new(wasm_config)?);
    tracing::debug!(
        allocator = wasm.allocator().as_str(),
        engines = wasm.engines(),
        "WASI executor ready"
    );
    let policy = match access {
        Access::Local => Policy {
            limits: config.limits.policy(),
            ..Policy::local()
        },
        Access::Remote => config.policy(),
    };
    let tools = tool_registry(config, &wasm).await?;
    let artifact_root = config.node.artifact_root();
    let artifacts = ArtifactStore::open(&artifact_root)
        .with_context(|| format!("cannot open artifact root {}", artifact_root.display()))?;
    let mut executors = Executors::new(wasm).register(RuntimeMode::Model, llm);
    if let Some(docker) = docker {
        executors = executors.register(RuntimeMode::Image, docker);
    }
    let mut router = Router::new(
        executors,
        policy,
        tools,
        artifacts,
        data_dir.join("workspaces"),
    );
    if let Some(settings) = config.retrieval.index_cache(data_dir) {
        let dir = settings.dir.clone();
        let cache = IndexCache::open(settings)
            .with_context(|| format!("cannot open the retrieval index cache {}", dir.display()))?;
        router = router.with_index_cache(cache);
    }
    if let Some(python) = &config.languages.python {
        let started = Instant::now();
        let runtime = PythonRuntime::open(&python.dir, &data_dir.join("languages").join("python"))
            .with_context(|| format!("[languages.python] dir = {}", python.dir.display()))?;
        tracing::info!(
            version = runtime.version(),
            seconds = started.elapsed().as_secs_f64(),
            "Python runtime checked against its SHA256SUMS"
        );
        router = router.with_python(Arc::new(runtime));
    }
    if access == Access::Local {
        return Ok(router);
    }
    let blob_root = data_dir.join("blobs");
    let blobs = BlobStore::open(&blob_root, config.blobs.limits())
        .with_context(|| format!("cannot open the blob store {}", blob_root.display()))?;
    Ok(router.with_blobs(blobs))
}

/// The tools of a node: the built-ins, the plugins in `node.plugin_dir`,
/// the operator's container tools, and `[tools.NAME]` settings.
pub async fn tool_registry(config: &Config, wasm: &WasmExecutor) -> anyhow::Result<ToolRegistry> {
    tools_from(config, wasm, config.node.plugin_dir.as_deref()).await
}

/// The tools of a node with the plugins of `plugin_dir` (none if `None`).
async fn tools_from(
    config: &Config,
    wasm: &WasmExecutor,
    plugin_dir: Option<&std::path::Path>,
) -> anyhow::Result<ToolRegistry> {
    let mut tools = ToolRegistry::builtin();
    if let Some(dir) = plugin_dir {
        let added = tools
            .add_plugins(dir, wasm)
            .await
            .with_context(|| format!("cannot read plugin directory {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), tools = added, "plugin tools loaded");
    }
    for (name, image) in &config.docker.tool_images {
        tools.add_image(name, image);
    }
    tools
        .configure(config.tools.clone())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    for name in tools.unknown_settings() {
        tracing::warn!(
            tool = name,
            "[tools.{name}] is set, but this node has no tool of that name"
        );
    }
    Ok(tools)
}

/// A long-running node: everything `serve` and `agent` share.
pub struct Node {
    /// The effective configuration.
    pub config: Config,
    /// Facts about the machine.
    pub facts: HostFacts,
    /// When the node started.
    pub started: Instant,
    /// The key that signs the node's receipts.
    identity: Arc<Identity>,
    /// Routes tasks to executors.
    router: Arc<Router>,
    /// Durable job store.
    store: JobStore,
    /// Queues and runs jobs.
    scheduler: Scheduler,
    /// Live job events.
    events: EventHub,
    /// Prometheus metrics.
    metrics: Arc<Metrics>,
    /// The container backend, when there is one.
    docker: Option<Arc<DockerExecutor>>,
    /// The control-plane connection, in attached mode.
    control_plane: ControlPlaneStatus,
    /// The model backends.
    llm: Arc<LlmExecutor>,
    /// Cancelled when a stop is asked for through the API (`POST /drain`).
    stop_requested: tokio_util::sync::CancellationToken,
    /// Bumped each time the tools change (a plugin added or removed).
    tools_version: Arc<tokio::sync::watch::Sender<u64>>,
    /// CPU and memory sampler for the JSON metrics.
    utilisation: std::sync::Mutex<crate::facts::Utilisation>,
    /// Held for its lifetime: tasks run on it until the node goes.
    _exec: ExecRuntime,
}

impl Node {
    /// Opens the store, recovers unfinished jobs and starts the scheduler.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let docker = docker(&config, Access::Remote).await?;
        if let Some(docker) = &docker {
            match docker.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    removed = n,
                    "removed containers left behind by an earlier run"
                ),
                Err(e) => tracing::warn!(error = %e, "could not sweep leftover containers"),
            }
        }
        let llm = Arc::new(LlmExecutor::new(config.llm_settings())?);
        let router = Arc::new(router(&config, Access::Remote, docker.clone(), llm.clone()).await?);
        let store =
            JobStore::open_with(&config.node.data_dir.join("jobs.redb"), config.store.sync)?;
        let threads = config.scheduler.max_concurrent_jobs.clamp(1, 64);
        let exec = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wasmnode-exec")
            .enable_all()
            .build()
            .context("cannot start the task runtime")?;
        let events = EventHub::default();
        let metrics = Arc::new(Metrics::default());
        let settings = Settings {
            max_concurrent_jobs: config.scheduler.max_concurrent_jobs,
            queue_capacity: config.scheduler.queue_capacity,
            max_queued_bytes: config.scheduler.max_queued_bytes,
            data_dir: config.node.data_dir.clone(),
            min_free_disk_bytes: config.node.min_free_disk_mb << 20,
            secrets: config.secrets.clone(),
        };
        let (identity, created) = Identity::load_or_create(&config.node.data_dir)?;
        let identity = Arc::new(identity);
        if created {
            tracing::info!(fingerprint = %identity.public().fingerprint, "made the node's identity key");
        }
        let notary = config.receipts.enabled.then(|| {
            Arc::new(Notary::new(
                identity.clone(),
                config.node.worker_id.clone(),
                router.policy().clone(),
            ))
        });
        let scheduler = Scheduler::start(
            store.clone(),
            router.clone(),
            exec.handle().clone(),
            events.clone(),
            metrics.clone(),
            settings,
            notary,
        )
        .await?;
        Ok(Self {
            facts: HostFacts::read(),
            started: Instant::now(),
            config,
            identity,
            router,
            store,
            scheduler,
            events,
            metrics,
            docker,
            control_plane: ControlPlaneStatus::default(),
            llm,
            stop_requested: Default::default(),
            tools_version: Arc::new(tokio::sync::watch::Sender::new(0)),
            utilisation: Default::default(),
            _exec: ExecRuntime(Some(exec)),
        })
    }

    /// Compiles the built-in guests into the code cache in the background so
    /// the first jobs do not wait for it, describes the tools, then lets go
    /// of their code (it loads from the cache in about a millisecond) and
    /// gives the compiler's scratch memory back to the system.
    pub fn spawn_warm_up(&self) {
        let wasm = self.router.executors().wasm.clone();
        let python = self.router.python().map(|p| p.snapshot());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            // The Python runtime first: it takes minutes to compile once,
            // and a python job that arrives meanwhile waits for this.
            if let Some(python) = python {
                match wasm.ready(&python).await {
                    Ok(origin) => tracing::info!(
                        from = origin.as_str(),
                        seconds = started.elapsed().as_secs_f64(),
                        "Python runtime ready"
                    ),
                    Err(e) => tracing::warn!(error = %e, "the Python runtime failed to prepare"),
                }
            }
            for name in wasmnode_runtime::builtins::names() {
                let source = wasmnode_runtime::ComponentSource::Builtin(name.into());
                // Tools are described too, so submissions are checked against
                // their contracts from then on.
                let warmed = match wasm.warm(&source).await {
                    Ok(origin) if wasmnode_runtime::builtins::TOOLS.contains(&name) => {
                        wasm.tool_description(&source).await.map(|_| origin)
                    }
                    warmed => warmed,
                };
                match warmed {
                    Ok(origin) => tracing::debug!(
                        builtin = name,
                        from = origin.as_str(),
                        "built-in guest ready"
                    ),
                    Err(e) => {
                        tracing::warn!(builtin = name, error = %e, "built-in guest failed to prepare")
                    }
                }
            }
            crate::facts::release_free_memory();
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "built-in guests ready"
            );
        });
    }

    /// The model backends answering a probe now, and the models each has,
    /// plus the files in the model cache.
    pub async fn model_inventory(&self) -> (Vec<Probe>, Vec<String>) {
        let probes = self.llm.probe().await;
        let cached = wasmnode_runtime::llm::inventory(&self.llm.settings().model_cache_dir);
        (probes, cached)
    }

    /// Samples the metrics for the console's charts, now and every
    /// `api.chart_sample_seconds`.
    pub fn spawn_chart_samples(&self) {
        let metrics = self.metrics.clone();
        let every = std::time::Duration::from_secs(self.config.api.chart_sample_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                metrics.sample(every);
            }
        });
    }

    /// Removes finished jobs past the retention limits, with their files,
    /// and uploaded blobs unused as long, now and every minute.
    pub fn spawn_retention(&self) {
        let store = self.store.clone();
        let files = self.files();
        let blobs = self.router.blobs().cloned();
        let max_idle = std::time::Duration::from_secs(
            self.config
                .scheduler
                .retention_max_age_hours
                .saturating_mul(3600),
        );
        let max_jobs = self.config.scheduler.retention_max_jobs;
        let max_age_ms = self
            .config
            .scheduler
            .retention_max_age_hours
            .saturating_mul(3_600_000);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match store.apply_retention(max_jobs, max_age_ms).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "retention removed finished jobs"),
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
                let (files, store, blobs) = (files.clone(), store.clone(), blobs.clone());
                let swept = tokio::task::spawn_blocking(move || {
                    let jobs = files.sweep(|id| matches!(store.get(id), Ok(Some(_)) | Err(_)))?;
                    let blobs = blobs.map_or(Ok(0), |b| b.sweep(max_idle))?;
                    std::io::Result::Ok((jobs, blobs))
                })
                .await;
                match swept {
                    Ok(Ok((0, 0))) => {}
                    Ok(Ok((jobs, blobs))) => {
                        tracing::info!(jobs, blobs, "retention removed job files and idle blobs")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention of files failed"),
                    Err(e) => tracing::warn!(error = %e, "retention of files failed"),
                }
            }
        });
    }
}

/// The runtime tasks run on. Dropping it never blocks, so the last handle
/// on a node may go away anywhere, async code included.
struct ExecRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ExecRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
