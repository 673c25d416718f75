//! `WasmExecutor`: runs WASI components (the `wasmnode:task` and
//! `wasmnode:tool` worlds, plain `wasi:cli/command` programs, components
//! exporting plain functions) and core preview 1 modules under wasmtime.
//!
//! An `Engine` per CPU (up to a cap), picked by the CPU a task starts on; a
//! fresh `Store` per task; `InstancePre` cached per binary and engine;
//! compiled code cached on disk and verified before it is loaded.
//! Each task sees only its mounts (read-only unless a mount says otherwise),
//! no network and nothing of the node's environment, and is held to its
//! memory, deadline, fuel and output limits.

mod bindings;
mod cache;
mod call;
mod contract;
mod describe;
mod determinism;
mod embedded;
mod engine;
mod files;
mod functions;
mod http;
mod image;
mod lanes;
mod link;
mod load;
mod output;
mod prepare;
mod run;
mod sandbox;
mod ticker;
mod tool_host;

pub use contract::{MountNeed, ToolDescription};
pub use describe::{ComponentInfo, Description, FunctionInfo};
pub use embedded::{PrecompileError, Written, precompile};
pub use engine::{Allocator, AllocatorChoice, EngineSettings};
pub use functions::{Function, Skipped};
pub use lanes::{MAX_DEFAULT_ENGINES, allowed_cpus, default_engines};
pub use prepare::{CacheStats, CodeOrigin, World};
pub use sandbox::MOUNTS_ENV;

use crate::builtins;
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use crate::signing::{self, TrustList};
use crate::task::ComponentSource;
use lanes::Lanes;
use prepare::{Binary, Prepared, Preparer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

/// Verified (component, signature) pairs remembered; more clears the memory.
const VERIFIED_CAPACITY: usize = 1024;
/// Grace period past the deadline before a guest blocked in a host call is abandoned.
const BLOCKED_GRACE: Duration = Duration::from_millis(50);
/// Prepared binaries kept in memory.
const PREPARED_CAPACITY: usize = 128;
/// Binaries whose description is remembered; more clears the memory.
const DESCRIPTIONS_CAPACITY: usize = 1024;

/// How the WASI executor is set up.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Engine settings (allocator, fuel metering, stack, epoch tick).
    pub engine: EngineSettings,
    /// Engines tasks are spread over, by the CPU a task starts on: tasks
    /// on different engines share no instance pool, lock or counter, which
    /// is what lets two threads run nearly twice the tasks of one. Each
    /// engine reserves its own pool and holds its own copy of the code it
    /// runs. At least 1; fewer are made where the address space runs out.
    pub engines: usize,
    /// Directory of the compiled-code cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Load the built-ins from the code embedded in the binary (release
    /// builds) where it matches the engine, rather than compiling them.
    pub precompiled_builtins: bool,
    /// When set, a component file runs only if a key of this list signed
    /// exactly its bytes (`policy.require_signed_tools`); built-ins are
    /// part of the node and need no signature.
    pub trust: Option<Arc<TrustList>>,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            engine: EngineSettings::default(),
            engines: lanes::default_engines(),
            cache_dir: None,
            precompiled_builtins: true,
            trust: None,
        }
    }
}

/// Errors setting up the executor.
#[derive(Debug, thiserror::Error)]
pub enum WasmSetupError {
    /// wasmtime refused the configuration.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The compiled-code cache directory is unusable.
    #[error("cannot open the compiled-code cache at {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs WASI tasks.
pub struct WasmExecutor {
    /// Which engine a task starts on.
    lanes: Lanes,
    allocator: Allocator,
    fuel_metering: bool,
    preparer: Arc<Preparer>,
    /// Tools described so far, by where they were loaded from: submissions
    /// are checked against them before the task is accepted.
    described: std::sync::Mutex<std::collections::HashMap<String, Arc<ToolDescription>>>,
    /// What each binary described so far is, by its blake3: a tool is
    /// asked once, and describing it (or listing a component's functions)
    /// again needs none of its code.
    descriptions: std::sync::Mutex<std::collections::HashMap<blake3::Hash, describe::Description>>,
    /// The trust list, when signatures are required.
    trust: Option<Arc<TrustList>>,
    /// blake3 of (component, signature) pairs that verified.
    verified: std::sync::Mutex<std::collections::HashSet<(blake3::Hash, blake3::Hash)>>,
    /// The component files read, and their hashes.
    files: Arc<files::ComponentFiles>,
    /// Advances the engines' epochs while a store exists.
    ticker: ticker::Ticker,
}

impl WasmExecutor {
    /// Builds the engines (probing the pooling allocator), the linkers and
    /// the caches, and starts the epoch ticker.
    pub fn new(config: WasmConfig) -> Result<Self, WasmSetupError> {
        let setup = |e: wasmtime::Error| WasmSetupError::Engine(format!("{e:#}"));
        let (engines, allocator) =
            engine::build_many(&config.engine, config.engines).map_err(setup)?;
        let disk = match &config.cache_dir {
            Some(dir) => Some(cache::DiskCache::open(dir, &engines[0]).map_err(|source| {
                WasmSetupError::Cache {
                    path: dir.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let ticker = ticker::Ticker::start(&engines, config.engine.epoch_tick);
        tracing::debug!(
            allocator = allocator.as_str(),
            engines = engines.len(),
            "WebAssembly engines ready"
        );
        let lanes = Lanes::new(engines.len());
        let loader = load::Loader::new(
            disk,
            embedded::Embedded::builtins(config.precompiled_builtins, config.engine.clone()),
        );
        Ok(Self {
            preparer: Arc::new(Preparer::new(engines, loader, PREPARED_CAPACITY).map_err(setup)?),
            lanes,
            allocator,
            fuel_metering: config.engine.fuel_metering,
            described: Default::default(),
            descriptions: Default::default(),
            trust: config.trust,
            verified: Default::default(),
            files: Arc::new(files::ComponentFiles::new(files::SETTLE)),
            ticker,
        })
    }

    /// How many engines tasks are spread over.
    pub fn engines(&self) -> usize {
        self.lanes.count()
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// Compiled-code cache counters, and the component files read.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            files_read: self.files.reads(),
            ..self.preparer.stats()
        }
    }

    /// Whether per-task fuel budgets are available.
    pub fn fuel_metering(&self) -> bool {
        self.fuel_metering
    }

    /// A component's bytes and hash. Built-ins are neither copied nor
    /// hashed (their hash was made when this binary was built), so a node
    /// that loads their code from a cache never reads their bytes; nor is a
    /// component file that has not changed since it was hashed.
    pub fn load(&self, source: &ComponentSource) -> Result<Binary, TaskFailure> {
        match source {
            ComponentSource::Builtin(name) => {
                let builtin = builtins::builtin(name).ok_or_else(|| {
                    TaskFailure::invalid_input(format!(
                        "no built-in component `builtin:{name}` (built-ins: {})",
                        builtins::names().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                Ok(Binary::with_hash(
                    bytes::Bytes::from_static(builtin.wasm),
                    blake3::Hash::from_bytes(builtin.hash),
                ))
            }
            ComponentSource::File(path) => {
                let (meta, known) = self.files.known(path)?;
                let binary = match known {
                    Some(hash) => Binary::in_file(self.files.clone(), path.clone(), hash),
                    None => {
                        let binary = Binary::new(self.files.read(path)?.into());
                        self.files.remember(path, &meta, binary.hash);
                        binary
                    }
                };
                self.check_signature(path, &binary)?;
                Ok(binary)
            }
            ComponentSource::Bytes(bytes) => {
                Ok(Binary::new(bytes::Bytes::from_owner(bytes.clone())))
            }
            ComponentSource::Hashed(bytes, hash) => Ok(Binary::with_hash(
                bytes::Bytes::from_owner(bytes.clone()),
                *hash,
            )),
            ComponentSource::Blob(reference) => Err(crate::blobs::unresolved(reference)),
        }
    }

    /// With a trust list, refuses `source` unless it is a built-in or a
    /// component file a trusted key signed exactly as it is now (checked
    /// again when it runs).
    pub fn check_trusted(&self, source: &ComponentSource) -> Result<(), TaskFailure> {
        match source {
            ComponentSource::File(_) if self.trust.is_some() => self.load(source).map(drop),
            _ => Ok(()),
        }
    }

    /// With a trust list, refuses a component file that no trusted key
    /// signed exactly as it is now.
    fn check_signature(&self, path: &std::path::Path, binary: &Binary) -> Result<(), TaskFailure> {
        let Some(trust) = &self.trust else {
            return Ok(());
        };
        let denied = |e: signing::SigningError| {
            TaskFailure::policy_denied(format!("{e} (this node requires signed tools)"))
        };
        let signature = signing::read_signature(path).map_err(denied)?;
        let pair = (binary.hash, blake3::hash(&signature));
        if self.verified.lock().expect("verified lock").contains(&pair) {
            return Ok(());
        }
        trust
            .verify(&path.display().to_string(), &binary.bytes()?, &signature)
            .map_err(denied)?;
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(pair);
        Ok(())
    }

    /// Compiles `source` ahead of its first task, so that task does not pay
    /// for it: into the disk cache when there is one (the first task then
    /// loads it in about a millisecond, and an idle node does not hold the
    /// code), else into memory.
    pub async fn warm(&self, source: &ComponentSource) -> Result<CodeOrigin, TaskFailure> {
        self.preparer.precompile(self.load(source)?).await
    }

    /// Whether `source` is prepared in memory, so a task starts at once.
    pub fn is_ready(&self, source: &ComponentSource) -> bool {
        self.load(source)
            .is_ok_and(|binary| self.preparer.in_memory(&binary.hash))
    }

    /// Prepares `source` in memory in the first engine, where every other
    /// engine copies it from (compiling it on every core, or loading it from
    /// the disk cache); a task that arrives meanwhile waits for this
    /// preparation rather than starting another.
    pub async fn ready(&self, source: &ComponentSource) -> Result<CodeOrigin, TaskFailure> {
        let (_, origin) = self.preparer.prepare(0, self.load(source)?).await?;
        Ok(origin)
    }

    /// `source` prepared in the engine of the CPU this task starts on.
    async fn prepared(
        &self,
        source: &ComponentSource,
    ) -> Result<(Arc<Prepared>, CodeOrigin), TaskFailure> {
        self.preparer
            .prepare(self.lanes.current(), self.load(source)?)
            .await
    }

    /// A fresh store for `prepared`, in the engine its code belongs to.
    fn store(
        &self,
        prepared: &Prepared,
        state: sandbox::State,
        ctx: &TaskContext,
    ) -> Result<Store<sandbox::State>, TaskFailure> {
        let mut store = Store::new(prepared.code.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.fuel_metering {
            store
                .set_fuel(ctx.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| TaskFailure::internal(format!("setting fuel: {e}")))?;
        }
        let ticking = self.ticker.hold(self.lanes.current());
        call::arm(&mut store, ctx.cancel.clone(), ctx.deadline, ticking);
        Ok(store)
    }
}
