//! Binaries made ready to instantiate, in each of the executor's engines:
//! remembered in memory per engine by blake3 hash, the first engine's from
//! where its code loads (`load`), every other engine's copied from the
//! first's, so a binary is compiled once however many engines run it. Large
//! code is not copied: every engine maps it from one shared image (`image`),
//! so it is held in memory once.

use super::bindings::{task::TaskPre, tool::ToolPre};
use super::files::ComponentFiles;
use super::functions::FunctionsPre;
use super::image::Image;
use super::link::Linkers;
use super::load::{Loaded, Loader};
use super::sandbox::State;
use crate::failure::TaskFailure;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use wasmtime::component::Component;
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
    /// Its bytes, or the file they are in.
    content: Content,
    /// Their blake3 hash.
    pub hash: blake3::Hash,
}

#[derive(Clone)]
enum Content {
    /// In memory, shared or static.
    Bytes(bytes::Bytes),
    /// In a component file that hashed to the binary's hash and has not
    /// changed since: read only if its code has to be loaded from them.
    File(Arc<ComponentFiles>, PathBuf),
}

impl Binary {
    /// `bytes`, hashing them.
    pub fn new(bytes: bytes::Bytes) -> Self {
        let hash = blake3::hash(&bytes);
        Self::with_hash(bytes, hash)
    }

    /// `bytes` whose hash is already known.
    pub fn with_hash(bytes: bytes::Bytes, hash: blake3::Hash) -> Self {
        Self {
            content: Content::Bytes(bytes),
            hash,
        }
    }

    /// The file at `path`, known to hash to `hash` as it is now.
    pub fn in_file(files: Arc<ComponentFiles>, path: PathBuf, hash: blake3::Hash) -> Self {
        Self {
            content: Content::File(files, path),
            hash,
        }
    }

    /// Its bytes, read now if they are in a file (which must still hash to
    /// the binary's hash).
    pub fn bytes(&self) -> Result<bytes::Bytes, TaskFailure> {
        match &self.content {
            Content::Bytes(bytes) => Ok(bytes.clone()),
            Content::File(files, path) => files.reread(path, &self.hash).map(Into::into),
        }
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

/// Compiled code, bound to the engine that loaded it.
#[derive(Clone)]
pub enum Code {
    Component(Component),
    Module(Module),
}

impl Code {
    /// The engine the code belongs to (a store of another cannot run it).
    pub fn engine(&self) -> &Engine {
        match self {
            Code::Component(component) => component.engine(),
            Code::Module(module) => module.engine(),
        }
    }

    /// The code as bytes that load into an engine of the same settings.
    pub fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Code::Component(component) => component.serialize(),
            Code::Module(module) => module.serialize(),
        }
    }
}

/// A binary ready to instantiate.
pub struct Prepared {
    /// The contract it implements.
    pub world: World,
    /// blake3 of its bytes.
    pub hash: blake3::Hash,
    /// Where its code came from when it was first prepared.
    pub origin: CodeOrigin,
    /// Its compiled code, in the engine it was prepared for.
    pub code: Code,
    /// The image every engine maps the code from, where it is shared.
    pub image: Option<Arc<Image>>,
    /// Its pre-instantiation handle.
    pub pre: Pre,
    /// Names of its imports (`wasi:filesystem/types@0.2.6`, `wasi_snapshot_preview1::fd_write`).
    pub imports: Vec<String>,
    /// Names of its exports.
    pub exports: Vec<String>,
    /// The tool's self-description, filled on first use.
    pub tool_info: OnceCell<Arc<super::ToolDescription>>,
}

impl Prepared {
    /// The code in `engine`: mapped from the shared image where there is
    /// one, else a copy of its own.
    fn copy_to(&self, engine: &Engine) -> Result<Code, TaskFailure> {
        let copied = match &self.image {
            Some(image) => image.load(engine),
            // SAFETY: the bytes were serialized just now by this process
            // from code wasmtime compiled or verified; wasmtime checks their
            // header against `engine` again.
            None => self.code.serialize().and_then(|code| match self.code {
                Code::Component(_) => {
                    unsafe { Component::deserialize(engine, &code) }.map(Code::Component)
                }
                Code::Module(_) => unsafe { Module::deserialize(engine, &code) }.map(Code::Module),
            }),
        };
        copied
            .map_err(|e| TaskFailure::internal(format!("cannot copy code between engines: {e:#}")))
    }
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
    /// Component files read from disk (a file unchanged since it was
    /// hashed is not read for its code to be looked up).
    pub files_read: u64,
}

/// The counters of one engine (each its own, so engines share no counter).
#[derive(Default)]
pub struct Counters {
    pub memory_hits: AtomicU64,
    pub disk_hits: AtomicU64,
    pub embedded_hits: AtomicU64,
    pub compiled: AtomicU64,
    pub rejected: AtomicU64,
    pub preparing: AtomicU64,
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

/// One engine, its linkers and the binaries prepared in it. Aligned apart
/// so that no two engines' locks and counters share a cache line.
#[repr(align(128))]
struct Lane {
    engine: Engine,
    /// Made with the engine's first preparation: an engine no task has
    /// used yet holds none of their memory (a third of a MiB).
    linkers: std::sync::OnceLock<Linkers>,
    slots: Mutex<(HashMap<blake3::Hash, Slot>, VecDeque<blake3::Hash>)>,
    counters: Counters,
}

impl Lane {
    /// The slot of `hash`, made (evicting the oldest past `capacity`) if new.
    fn slot(&self, hash: blake3::Hash, capacity: usize) -> Slot {
        let mut guard = self.slots.lock().expect("preparer lock");
        let (map, order) = &mut *guard;
        if let Some(slot) = map.get(&hash) {
            return slot.clone();
        }
        if map.len() >= capacity
            && let Some(oldest) = order.pop_front()
        {
            map.remove(&oldest);
        }
        let slot: Slot = Arc::new(OnceCell::new());
        map.insert(hash, slot.clone());
        order.push_back(hash);
        slot
    }

    fn in_memory(&self, hash: &blake3::Hash) -> bool {
        self.slots
            .lock()
            .expect("preparer lock")
            .0
            .get(hash)
            .is_some_and(|s| s.initialized())
    }

    fn unload(&self, hash: &blake3::Hash) -> bool {
        let mut guard = self.slots.lock().expect("preparer lock");
        let (map, order) = &mut *guard;
        if !map.get(hash).is_some_and(|slot| slot.initialized()) {
            return false;
        }
        map.remove(hash);
        order.retain(|h| h != hash);
        true
    }
}

/// Prepares binaries in each engine, remembering the last `capacity` of
/// them per engine.
pub struct Preparer {
    lanes: Box<[Lane]>,
    loader: Loader,
    capacity: usize,
}

impl Preparer {
    /// A preparer for `engines` (at least one; all of one configuration),
    /// loading code with `loader`.
    pub fn new(engines: Vec<Engine>, loader: Loader, capacity: usize) -> wasmtime::Result<Self> {
        let lanes: Box<[Lane]> = engines
            .into_iter()
            .map(|engine| Lane {
                engine,
                linkers: std::sync::OnceLock::new(),
                slots: Mutex::new((HashMap::new(), VecDeque::new())),
                counters: Counters::default(),
            })
            .collect();
        assert!(!lanes.is_empty(), "a preparer needs an engine");
        // The first engine's linkers now: a node that cannot link what
        // guests import fails at start, not at its first task.
        let first = Linkers::new(&lanes[0].engine)?;
        lanes[0].linkers.get_or_init(|| first);
        Ok(Self {
            lanes,
            loader,
            capacity: capacity.max(1),
        })
    }

    /// Cache counters so far, over every engine.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for lane in &*self.lanes {
            let c = &lane.counters;
            stats.memory_hits += c.memory_hits.load(Ordering::Relaxed);
            stats.disk_hits += c.disk_hits.load(Ordering::Relaxed);
            stats.embedded_hits += c.embedded_hits.load(Ordering::Relaxed);
            stats.compiled += c.compiled.load(Ordering::Relaxed);
            stats.rejected += c.rejected.load(Ordering::Relaxed);
            stats.preparing += c.preparing.load(Ordering::Relaxed);
        }
        stats
    }

    /// The prepared form of `binary` in engine `lane` (taken modulo the
    /// number of engines), and where its code came from this time.
    ///
    /// Engine 0 loads the code (`Loader::code`); any other engine copies it
    /// from engine 0, preparing it there first, so concurrent tasks on
    /// several engines wait for one compilation. The preparation runs in a
    /// task of its own: a caller that stops waiting (its task was cancelled)
    /// neither abandons nor repeats it, and the next caller finds it done.
    pub async fn prepare(
        self: &Arc<Self>,
        lane: usize,
        binary: Binary,
    ) -> Result<(Arc<Prepared>, CodeOrigin), TaskFailure> {
        let lane = lane % self.lanes.len();
        let slot = self.lanes[lane].slot(binary.hash, self.capacity);
        if let Some(prepared) = self.hit(lane, &slot) {
            return Ok(prepared);
        }
        let from = match lane {
            0 => None,
            _ => {
                let first = self.lanes[0].slot(binary.hash, self.capacity);
                Some(self.fill(0, first, binary.clone(), None).await?)
            }
        };
        self.fill(lane, slot, binary, from).await
    }

    /// What `slot` holds already, counted as a memory hit.
    fn hit(&self, lane: usize, slot: &Slot) -> Option<(Arc<Prepared>, CodeOrigin)> {
        let prepared = slot.get()?;
        self.lanes[lane]
            .counters
            .memory_hits
            .fetch_add(1, Ordering::Relaxed);
        Some((prepared.clone(), CodeOrigin::Memory))
    }

    /// Fills `slot` of engine `lane` with `binary`, prepared from `from`
    /// (the same binary prepared in another engine) or from its source.
    async fn fill(
        self: &Arc<Self>,
        lane: usize,
        slot: Slot,
        binary: Binary,
        from: Option<(Arc<Prepared>, CodeOrigin)>,
    ) -> Result<(Arc<Prepared>, CodeOrigin), TaskFailure> {
        if let Some(prepared) = self.hit(lane, &slot) {
            return Ok(prepared);
        }
        let this = self.clone();
        let prepared = tokio::spawn(async move {
            slot.get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || this.prepare_now(lane, &binary, from))
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

    fn prepare_now(
        &self,
        lane: usize,
        binary: &Binary,
        from: Option<(Arc<Prepared>, CodeOrigin)>,
    ) -> Result<Prepared, TaskFailure> {
        let lane = &self.lanes[lane];
        let _preparing = Preparing::start(&lane.counters.preparing);
        let loaded = match from {
            Some((prepared, origin)) => Loaded {
                code: prepared.copy_to(&lane.engine)?,
                origin,
                image: prepared.image.clone(),
            },
            None => self.loader.code(
                &lane.engine,
                binary.hash,
                || binary.bytes(),
                &lane.counters,
                self.lanes.len() > 1,
            )?,
        };
        let linkers = match lane.linkers.get() {
            Some(linkers) => linkers,
            None => {
                let made = Linkers::new(&lane.engine).map_err(|e| {
                    TaskFailure::internal(format!("cannot link the WASI imports: {e:#}"))
                })?;
                lane.linkers.get_or_init(|| made)
            }
        };
        let prepared = linkers.prepare(loaded.code, binary.hash, loaded.origin)?;
        Ok(Prepared {
            image: loaded.image,
            ..prepared
        })
    }

    /// Whether the binary of `hash` is prepared in memory in the first
    /// engine, which every other engine copies it from without compiling
    /// (another engine's copy alone would not spare the first a compile).
    pub fn in_memory(&self, hash: &blake3::Hash) -> bool {
        self.lanes[0].in_memory(hash)
    }

    /// Forgets the in-memory preparations of `hash` where its code loads
    /// again without compiling (from the disk cache or from this binary),
    /// so an idle node does not hold it; tasks running it keep their copy.
    /// Returns whether it was forgotten.
    pub fn unload(&self, hash: &blake3::Hash) -> bool {
        if !self.loader.reloads(hash) {
            return false;
        }
        self.lanes
            .iter()
            .fold(false, |unloaded, lane| lane.unload(hash) | unloaded)
    }

    /// Makes sure the compiled code of `binary` is in the disk cache
    /// (without loading it into memory), or prepares it in memory without a
    /// disk cache; code embedded in the binary needs neither.
    pub async fn precompile(self: &Arc<Self>, binary: Binary) -> Result<CodeOrigin, TaskFailure> {
        if self.loader.is_embedded(&binary.hash) {
            return Ok(CodeOrigin::Embedded);
        }
        if !self.loader.has_disk() {
            return self.prepare(0, binary).await.map(|(_, origin)| origin);
        }
        if self.in_memory(&binary.hash) {
            return Ok(CodeOrigin::Memory);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let lane = &this.lanes[0];
            this.loader
                .precompile(&lane.engine, binary.hash, || binary.bytes(), &lane.counters)
        })
        .await
        .map_err(|e| TaskFailure::internal(format!("compile task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::DiskCache;
    use super::super::embedded::Embedded;
    use super::super::engine::{self, AllocatorChoice, EngineSettings};
    use super::super::image;
    use super::*;

    /// A core module of its own (its `salt` makes the hash new).
    fn program(salt: u32) -> Binary {
        Binary::new(
            format!(r#"(module (func (export "_start")) (global i32 (i32.const {salt})))"#)
                .into_bytes()
                .into(),
        )
    }

    fn preparer(engines: usize, disk: Option<&std::path::Path>) -> Arc<Preparer> {
        sharing_from(engines, disk, image::SHARE_FROM_BYTES)
    }

    /// A preparer whose engines share code of at least `bytes` bytes.
    fn sharing_from(engines: usize, disk: Option<&std::path::Path>, bytes: usize) -> Arc<Preparer> {
        let settings = EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            ..EngineSettings::default()
        };
        let (engines, _) = engine::build_many(&settings, engines).unwrap();
        let disk = disk.map(|dir| DiskCache::open(dir, &engines[0]).unwrap());
        let loader = Loader::new(disk, Embedded::builtins(false, settings)).sharing_from(bytes);
        Arc::new(Preparer::new(engines, loader, 8).unwrap())
    }

    fn same_image(a: &Prepared, b: &Prepared) -> bool {
        matches!((&a.image, &b.image), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    #[tokio::test]
    async fn a_binary_is_compiled_once_and_each_engine_gets_its_own_copy() {
        let preparer = preparer(2, None);
        assert!(
            preparer.lanes[1].linkers.get().is_none(),
            "an engine no task used holds no linkers"
        );
        let (second, origin) = preparer.prepare(1, program(1)).await.unwrap();
        assert!(preparer.lanes[1].linkers.get().is_some());
        assert_eq!(origin, CodeOrigin::Compiled, "the task that waited for it");
        let (first, origin) = preparer.prepare(0, program(1)).await.unwrap();
        assert_eq!(origin, CodeOrigin::Memory);
        assert!(
            !Engine::same(first.code.engine(), second.code.engine()),
            "each engine runs its own copy"
        );
        assert!(Engine::same(
            second.code.engine(),
            &preparer.lanes[1].engine
        ));
        assert!(
            first.image.is_none() && second.image.is_none(),
            "small code is copied, not shared"
        );
        assert_eq!(
            preparer.prepare(3, program(1)).await.unwrap().1,
            CodeOrigin::Memory
        );
        let stats = preparer.stats();
        assert_eq!(
            (stats.compiled, stats.memory_hits, stats.preparing),
            (1, 2, 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engines_asking_for_one_binary_at_once_wait_for_one_compilation() {
        let preparer = preparer(3, None);
        let asks: Vec<_> = (0..3)
            .map(|lane| {
                let preparer = preparer.clone();
                tokio::spawn(async move { preparer.prepare(lane, program(2)).await })
            })
            .collect();
        for ask in asks {
            ask.await.unwrap().unwrap();
        }
        assert_eq!(preparer.stats().compiled, 1);
        assert!((0..3).all(|lane| preparer.lanes[lane].in_memory(&program(2).hash)));
    }

    #[tokio::test]
    async fn letting_go_of_code_frees_it_in_every_engine_only_where_it_loads_again() {
        let uncached = preparer(2, None);
        uncached.prepare(1, program(3)).await.unwrap();
        assert!(
            !uncached.unload(&program(3).hash),
            "nothing to load it from"
        );
        assert!(uncached.in_memory(&program(3).hash));

        let dir = tempfile::tempdir().unwrap();
        let cached = preparer(2, Some(dir.path()));
        cached.prepare(1, program(3)).await.unwrap();
        assert!(cached.unload(&program(3).hash));
        assert!(!cached.in_memory(&program(3).hash));
        assert!(
            !cached.lanes[1].in_memory(&program(3).hash),
            "in neither engine"
        );
        assert_eq!(
            cached.prepare(1, program(3)).await.unwrap().1,
            CodeOrigin::Disk
        );
    }

    #[tokio::test]
    async fn a_binary_that_fails_to_prepare_fails_in_every_engine_and_is_tried_again() {
        let preparer = preparer(2, None);
        let broken = Binary::new(bytes::Bytes::from_static(
            b"(module (func (export \"other\")))",
        ));
        for lane in [1, 0, 1] {
            let Err(err) = preparer.prepare(lane, broken.clone()).await else {
                panic!("a module without an entry point prepared");
            };
            assert!(err.message.contains("neither `_start`"), "{}", err.message);
        }
        assert!(!preparer.in_memory(&broken.hash));
    }

    #[tokio::test]
    async fn large_code_is_mapped_by_every_engine_from_one_image_however_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let preparer = sharing_from(3, Some(dir.path()), 0);
        let (second, origin) = preparer.prepare(1, program(5)).await.unwrap();
        assert_eq!(origin, CodeOrigin::Compiled);
        let (first, _) = preparer.prepare(0, program(5)).await.unwrap();
        let (third, _) = preparer.prepare(2, program(5)).await.unwrap();
        assert!(same_image(&first, &second) && same_image(&first, &third));
        assert!(!Engine::same(first.code.engine(), third.code.engine()));

        assert!(preparer.unload(&program(5).hash));
        let (again, origin) = preparer.prepare(2, program(5)).await.unwrap();
        assert_eq!(origin, CodeOrigin::Disk);
        let (first_again, _) = preparer.prepare(0, program(5)).await.unwrap();
        assert!(
            same_image(&again, &first_again),
            "loaded from disk, shared too"
        );
        assert!(
            !same_image(&again, &first),
            "a new image once the old was let go of"
        );
    }

    #[tokio::test]
    async fn code_of_a_single_engine_needs_no_image() {
        let (prepared, _) = sharing_from(1, None, 0)
            .prepare(0, program(6))
            .await
            .unwrap();
        assert!(prepared.image.is_none());
    }
}
