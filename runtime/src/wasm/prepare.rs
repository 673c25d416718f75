//! Turning wasm bytes into something ready to instantiate: format and world
//! detection, compilation (or a verified load from the disk cache, or the
//! code embedded in the binary), and the `InstancePre` for the detected
//! world, cached in memory per blake3 hash.

use super::bindings::{task::TaskPre, tool::ToolPre};
use super::cache::{DiskCache, Lookup};
use super::embedded::Embedded;
use super::functions::{self, FunctionsPre};
use super::sandbox::State;
use crate::failure::TaskFailure;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

/// Which contract a binary implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    /// `wasmnode:task/task`: `run(input) -> result<string, task-error>`.
    Task,
    /// `wasmnode:tool/tool`: `describe()` and `invoke(args)`.
    Tool,
    /// `wasi:cli/command`: stdin, args, env, stdout, exit code.
    Command,
    /// A core WebAssembly module using WASI preview 1: a command (`_start`)
    /// or a reactor (`_initialize`, then `run() -> exit code`).
    CoreModule,
    /// A component exporting plain functions, each called with JSON.
    Functions,
}

impl World {
    /// Name for messages and `tool inspect`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Task => "wasmnode:task/task",
            World::Tool => "wasmnode:tool/tool",
            World::Command => "wasi:cli/command",
            World::CoreModule => "wasi preview1 core module",
            World::Functions => "plain functions",
        }
    }
}

/// A binary (wasm or WAT) and its blake3 hash, the key of every cache.
#[derive(Clone)]
pub struct Binary {
    /// The bytes, shared or static.
    pub bytes: bytes::Bytes,
    /// Their blake3 hash.
    pub hash: blake3::Hash,
}

impl Binary {
    /// `bytes`, hashing them.
    pub fn new(bytes: bytes::Bytes) -> Self {
        let hash = blake3::hash(&bytes);
        Self { bytes, hash }
    }

    /// `bytes` whose hash is already known.
    pub fn with_hash(bytes: bytes::Bytes, hash: blake3::Hash) -> Self {
        Self { bytes, hash }
    }
}

/// Where compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOrigin {
    /// Already prepared in this process.
    Memory,
    /// Loaded from the disk cache after verification.
    Disk,
    /// Loaded from the code embedded in the binary (built-ins of release builds).
    Embedded,
    /// Compiled now.
    Compiled,
}

impl CodeOrigin {
    /// Name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeOrigin::Memory => "memory",
            CodeOrigin::Disk => "disk",
            CodeOrigin::Embedded => "embedded",
            CodeOrigin::Compiled => "compiled",
        }
    }
}

/// Instance pre-handles, one per world.
pub enum Pre {
    Task(TaskPre<State>),
    Tool(ToolPre<State>),
    Command(CommandPre<State>),
    Module(wasmtime::InstancePre<State>),
    Functions(FunctionsPre),
}

/// A binary ready to instantiate.
pub struct Prepared {
    /// The contract it implements.
    pub world: World,
    /// blake3 of its bytes.
    pub hash: blake3::Hash,
    /// Where its code came from when it was first prepared.
    pub origin: CodeOrigin,
    /// Its pre-instantiation handle.
    pub pre: Pre,
    /// Names of its imports (`wasi:filesystem/types@0.2.6`, `wasi_snapshot_preview1::fd_write`).
    pub imports: Vec<String>,
    /// Names of its exports.
    pub exports: Vec<String>,
    /// The tool's self-description, filled on first use.
    pub tool_info: OnceCell<Arc<super::ToolDescription>>,
}

/// Counters of the compiled-code cache.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    /// Prepared binaries found in memory.
    pub memory_hits: u64,
    /// Verified loads from disk.
    pub disk_hits: u64,
    /// Loads of code embedded in the binary.
    pub embedded_hits: u64,
    /// Compilations.
    pub compiled: u64,
    /// Disk entries that failed verification (and were rebuilt).
    pub rejected: u64,
    /// Binaries being compiled or loaded from disk right now.
    pub preparing: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    embedded_hits: AtomicU64,
    compiled: AtomicU64,
    rejected: AtomicU64,
    preparing: AtomicU64,
}

/// Counts one preparation in flight for as long as it lives.
struct Preparing<'a>(&'a AtomicU64);

impl<'a> Preparing<'a> {
    fn start(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type Slot = Arc<OnceCell<Arc<Prepared>>>;

/// Prepares binaries, remembering the last `capacity` of them.
pub struct Preparer {
    engine: Engine,
    linker: Linker<State>,
    module_linker: wasmtime::Linker<State>,
    disk: Option<DiskCache>,
    embedded: Embedded,
    slots: Mutex<(HashMap<blake3::Hash, Slot>, VecDeque<blake3::Hash>)>,
    capacity: usize,
    counters: Counters,
}

impl Preparer {
    /// A preparer for `engine` with the given linkers, optional disk cache
    /// and embedded code.
    pub fn new(
        engine: Engine,
        linker: Linker<State>,
        module_linker: wasmtime::Linker<State>,
        disk: Option<DiskCache>,
        embedded: Embedded,
        capacity: usize,
    ) -> Self {
        Self {
            engine,
            linker,
            module_linker,
            disk,
            embedded,
            slots: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity: capacity.max(1),
            counters: Counters::default(),
        }
    }

    /// Cache counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            embedded_hits: c.embedded_hits.load(Ordering::Relaxed),
            compiled: c.compiled.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            preparing: c.preparing.load(Ordering::Relaxed),
        }
    }

    /// The prepared form of `binary`, and where its code came from this time.
    ///
    /// The preparation runs in a task of its own: a caller that stops
    /// waiting (its task was cancelled) neither abandons nor repeats it, and
    /// the next caller finds it done.
    pub async fn prepare(
        self: &Arc<Self>,
        binary: Binary,
    ) -> Result<(Arc<Prepared>, CodeOrigin), TaskFailure> {
        let Binary { bytes, hash } = binary;
        let slot = self.slot(hash);
        if let Some(prepared) = slot.get() {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((prepared.clone(), CodeOrigin::Memory));
        }
        let this = self.clone();
        let prepared = tokio::spawn(async move {
            slot.get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let _preparing = Preparing::start(&this.counters.preparing);
                    this.prepare_now(&bytes, hash)
                })
                .await
                .map_err(|e| TaskFailure::internal(format!("compile task failed: {e}")))?
                .map(Arc::new)
            })
            .await
            .cloned()
        })
        .await
        .map_err(|e| TaskFailure::internal(format!("compile task failed: {e}")))??;
        Ok((prepared.clone(), prepared.origin))
    }

    /// Whether the binary of `hash` is prepared in memory already.
    pub fn in_memory(&self, hash: &blake3::Hash) -> bool {
        self.slots
            .lock()
            .expect("preparer lock")
            .0
            .get(hash)
            .is_some_and(|s| s.initialized())
    }

    /// Forgets the in-memory preparation of `hash` where its code loads
    /// again without compiling (from the disk cache or from this binary),
    /// so an idle node does not hold it; tasks running it keep their copy.
    /// Returns whether it was forgotten.
    pub fn unload(&self, hash: &blake3::Hash) -> bool {
        if self.disk.is_none() && self.embedded.code(hash).is_none() {
            return false;
        }
        let mut guard = self.slots.lock().expect("preparer lock");
        let (map, order) = &mut *guard;
        if !map.get(hash).is_some_and(|slot| slot.initialized()) {
            return false;
        }
        map.remove(hash);
        order.retain(|h| h != hash);
        true
    }

    /// Makes sure the compiled code of `bytes` is in the disk cache (without
    /// loading it into memory), or prepares it in memory without a disk cache;
    /// code embedded in the binary needs neither.
    pub async fn precompile(self: &Arc<Self>, binary: Binary) -> Result<CodeOrigin, TaskFailure> {
        if self.embedded.code(&binary.hash).is_some() {
            return Ok(CodeOrigin::Embedded);
        }
        if self.disk.is_none() {
            return self.prepare(binary).await.map(|(_, origin)| origin);
        }
        let Binary { bytes, hash } = binary;
        if self.in_memory(&hash) {
            return Ok(CodeOrigin::Memory);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if this.cached(&hash).is_some() {
                return Ok(CodeOrigin::Disk);
            }
            let binary = to_binary(&bytes)?;
            // A throwaway engine of the same configuration that compiles on
            // this thread: parallel compilation leaves its scratch memory
            // scattered over the worker threads' heaps, where it stays
            // resident for good (tens of MiB on an otherwise idle node).
            let mut config = this.engine.config().clone();
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
            config.parallel_compilation(false);
            let compiler = Engine::new(&config)
                .map_err(|e| TaskFailure::internal(format!("cannot create a compiler: {e:#}")))?;
            let code = match binary_kind(&binary)? {
                BinaryKind::Component => compiler.precompile_component(&binary),
                BinaryKind::Module => compiler.precompile_module(&binary),
            }
            .map_err(|e| TaskFailure::invalid_input(format!("does not compile: {e:#}")))?;
            this.counters.compiled.fetch_add(1, Ordering::Relaxed);
            this.store(&hash, &code);
            Ok(CodeOrigin::Compiled)
        })
        .await
        .map_err(|e| TaskFailure::internal(format!("compile task failed: {e}")))?
    }

    fn slot(&self, hash: blake3::Hash) -> Slot {
        let mut guard = self.slots.lock().expect("preparer lock");
        let (map, order) = &mut *guard;
        if let Some(slot) = map.get(&hash) {
            return slot.clone();
        }
        if map.len() >= self.capacity
            && let Some(oldest) = order.pop_front()
        {
            map.remove(&oldest);
        }
        let slot: Slot = Arc::new(OnceCell::new());
        map.insert(hash, slot.clone());
        order.push_back(hash);
        slot
    }

    fn prepare_now(&self, bytes: &[u8], hash: blake3::Hash) -> Result<Prepared, TaskFailure> {
        let binary = to_binary(bytes)?;
        match binary_kind(&binary)? {
            BinaryKind::Component => {
                let (component, origin) = self.component(&binary, hash)?;
                let (world, pre) = self.component_pre(&component)?;
                let ty = component.component_type();
                let imports = ty
                    .imports(&self.engine)
                    .map(|(n, _)| n.to_string())
                    .collect();
                let exports = ty
                    .exports(&self.engine)
                    .map(|(n, _)| n.to_string())
                    .collect();
                Ok(Prepared {
                    world,
                    hash,
                    origin,
                    pre,
                    imports,
                    exports,
                    tool_info: OnceCell::new(),
                })
            }
            BinaryKind::Module => {
                let (module, origin) = self.module(&binary, hash)?;
                if module.get_export("_start").is_none() && module.get_export("run").is_none() {
                    return Err(TaskFailure::invalid_input(
                        "this core module exports neither `_start` (a WASI preview 1 command) nor `run` (a reactor's entry point)",
                    ));
                }
                let pre = self
                    .module_linker
                    .instantiate_pre(&module)
                    .map_err(link_error)?;
                let imports = module
                    .imports()
                    .map(|i| format!("{}::{}", i.module(), i.name()))
                    .collect();
                let exports = module.exports().map(|e| e.name().to_string()).collect();
                Ok(Prepared {
                    world: World::CoreModule,
                    hash,
                    origin,
                    pre: Pre::Module(pre),
                    imports,
                    exports,
                    tool_info: OnceCell::new(),
                })
            }
        }
    }

    fn component(
        &self,
        binary: &[u8],
        hash: blake3::Hash,
    ) -> Result<(Component, CodeOrigin), TaskFailure> {
        if let Some(code) = self.cached(&hash) {
            // SAFETY: the bytes carry this node's MAC (the node wrote them
            // itself) and the key includes the engine compatibility hash.
            match unsafe { Component::deserialize(&self.engine, &code) } {
                Ok(component) => {
                    self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, CodeOrigin::Disk));
                }
                Err(e) => self.reject(&hash, &e.to_string()),
            }
        }
        if let Some(code) = self.embedded.code(&hash) {
            // SAFETY: the code is part of this binary, compiled by this
            // wasmtime under this engine's settings (portable CPU flags);
            // wasmtime checks its header against the engine again.
            match unsafe { Component::deserialize(&self.engine, code) } {
                Ok(component) => {
                    self.counters.embedded_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, CodeOrigin::Embedded));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "embedded code did not load; compiling")
                }
            }
        }
        let component = Component::from_binary(&self.engine, binary)
            .map_err(|e| TaskFailure::invalid_input(format!("not a valid component: {e:#}")))?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Ok(code) = component.serialize() {
            self.store(&hash, &code);
        }
        Ok((component, CodeOrigin::Compiled))
    }

    fn module(
        &self,
        binary: &[u8],
        hash: blake3::Hash,
    ) -> Result<(Module, CodeOrigin), TaskFailure> {
        if let Some(code) = self.cached(&hash) {
            // SAFETY: as for components above.
            match unsafe { Module::deserialize(&self.engine, &code) } {
                Ok(module) => {
                    self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((module, CodeOrigin::Disk));
                }
                Err(e) => self.reject(&hash, &e.to_string()),
            }
        }
        let module = Module::from_binary(&self.engine, binary)
            .map_err(|e| TaskFailure::invalid_input(format!("not a valid module: {e:#}")))?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Ok(code) = module.serialize() {
            self.store(&hash, &code);
        }
        Ok((module, CodeOrigin::Compiled))
    }

    fn cached(&self, hash: &blake3::Hash) -> Option<Vec<u8>> {
        match self.disk.as_ref()?.load(hash) {
            Lookup::Hit(code) => Some(code),
            Lookup::Miss => None,
            Lookup::Rejected(why) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "compiled-code cache entry rejected; recompiling");
                None
            }
        }
    }

    fn reject(&self, hash: &blake3::Hash, why: &str) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%why, "cached code did not load; recompiling");
        if let Some(disk) = &self.disk {
            disk.remove(hash);
        }
    }

    fn store(&self, hash: &blake3::Hash, code: &[u8]) {
        if let Some(disk) = &self.disk
            && let Err(e) = disk.store(hash, code)
        {
            tracing::warn!(error = %e, dir = %disk.dir().display(), "could not write the compiled-code cache");
        }
    }

    fn component_pre(&self, component: &Component) -> Result<(World, Pre), TaskFailure> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let has = |name: &str| exports.iter().any(|e| e == name);
        let pre = || self.linker.instantiate_pre(component).map_err(link_error);
        if has("run") {
            let pre = TaskPre::new(pre()?).map_err(|e| wrong_signature(World::Task, &e))?;
            Ok((World::Task, Pre::Task(pre)))
        } else if has("describe") && has("invoke") {
            let pre = ToolPre::new(pre()?).map_err(|e| wrong_signature(World::Tool, &e))?;
            Ok((World::Tool, Pre::Tool(pre)))
        } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")) {
            let pre = CommandPre::new(pre()?).map_err(|e| wrong_signature(World::Command, &e))?;
            Ok((World::Command, Pre::Command(pre)))
        } else {
            let (found, skipped) = functions::discover(component, &self.engine);
            if found.is_empty() {
                let listed = if skipped.is_empty() {
                    "nothing".to_string()
                } else {
                    skipped
                        .iter()
                        .map(|s| format!("`{}` ({})", s.export, s.reason))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(TaskFailure::invalid_input(format!(
                    "the component exports neither the wasmnode:task world (`run`), the wasmnode:tool world \
                     (`describe` + `invoke`), wasi:cli/run nor a function callable with JSON; it exports: {listed}"
                )));
            }
            let pre = FunctionsPre {
                pre: pre()?,
                functions: found,
                skipped,
            };
            Ok((World::Functions, Pre::Functions(pre)))
        }
    }
}

/// Kind of WebAssembly binary.
#[derive(Debug, PartialEq, Eq)]
enum BinaryKind {
    Component,
    Module,
}

/// WAT text is accepted for convenience and turned into a binary.
fn to_binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, TaskFailure> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.into());
    }
    wat::parse_bytes(bytes).map_err(|e| {
        TaskFailure::invalid_input(format!(
            "not a WebAssembly binary (no \\0asm header) and not valid WAT text: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

fn binary_kind(bytes: &[u8]) -> Result<BinaryKind, TaskFailure> {
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Ok(BinaryKind::Module),
        Some([_, _, 1, 0]) => Ok(BinaryKind::Component),
        _ => Err(TaskFailure::invalid_input(
            "unsupported WebAssembly binary version",
        )),
    }
}

fn link_error(e: wasmtime::Error) -> TaskFailure {
    TaskFailure::policy_denied(format!(
        "the binary needs imports this node does not provide (wasmnode offers WASI 0.2 and preview 1 \
         without network): {e:#}"
    ))
}

fn wrong_signature(world: World, e: &wasmtime::Error) -> TaskFailure {
    TaskFailure::invalid_input(format!(
        "the component looks like {} but its exports do not match: {e:#}",
        world.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[test]
    fn detects_binary_kinds_and_rejects_garbage() {
        assert_eq!(binary_kind(b"\0asm\x01\0\0\0").unwrap(), BinaryKind::Module);
        assert_eq!(
            binary_kind(b"\0asm\x0d\0\x01\0").unwrap(),
            BinaryKind::Component
        );
        assert_eq!(
            binary_kind(b"\0asm").unwrap_err().kind,
            FailureKind::InvalidInput
        );
        let err = to_binary(b"\x7fELF not wasm").unwrap_err();
        assert!(
            err.message.contains("not a WebAssembly binary"),
            "{}",
            err.message
        );
        assert!(to_binary(b"(module)").unwrap().starts_with(b"\0asm"));
    }
}
