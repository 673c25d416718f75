//! Where a binary's compiled code comes from: a verified load from the disk
//! cache, the code embedded in the node's binary, or a compilation (whose
//! result goes into the disk cache). WAT text is turned into a binary first.

use super::cache::{DiskCache, Lookup};
use super::embedded::Embedded;
use super::prepare::{Code, CodeOrigin, Counters};
use crate::failure::TaskFailure;
use std::sync::atomic::Ordering;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Loads or compiles code for the executor's engines.
pub struct Loader {
    disk: Option<DiskCache>,
    embedded: Embedded,
}

impl Loader {
    /// A loader over an optional disk cache and the embedded code.
    pub fn new(disk: Option<DiskCache>, embedded: Embedded) -> Self {
        Self { disk, embedded }
    }

    /// Whether code prepared in memory can be let go of: it loads again
    /// from the disk cache or from this binary without compiling.
    pub fn reloads(&self, hash: &blake3::Hash) -> bool {
        self.disk.is_some() || self.embedded.code(hash).is_some()
    }

    /// Whether there is a disk cache.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Whether the node's binary carries the code of `hash`.
    pub fn is_embedded(&self, hash: &blake3::Hash) -> bool {
        self.embedded.code(hash).is_some()
    }

    /// The code of `bytes` in `engine`, counted in `counters`.
    pub fn code(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: blake3::Hash,
        counters: &Counters,
    ) -> Result<(Code, CodeOrigin), TaskFailure> {
        let binary = to_binary(bytes)?;
        let kind = binary_kind(&binary)?;
        let deserialize = |code: &[u8]| match kind {
            // SAFETY (both): the code is either sealed with this node's MAC
            // under a key that includes the engine compatibility hash (the
            // node wrote it itself), or part of this binary, compiled by this
            // wasmtime under this engine's settings (portable CPU flags);
            // wasmtime checks its header against the engine again.
            BinaryKind::Component => {
                unsafe { Component::deserialize(engine, code) }.map(Code::Component)
            }
            BinaryKind::Module => unsafe { Module::deserialize(engine, code) }.map(Code::Module),
        };
        if let Some(code) = self.cached(&hash, counters) {
            match deserialize(&code) {
                Ok(code) => {
                    counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((code, CodeOrigin::Disk));
                }
                Err(e) => self.reject(&hash, &e.to_string(), counters),
            }
        }
        if let Some(code) = self.embedded.code(&hash) {
            match deserialize(code) {
                Ok(code) => {
                    counters.embedded_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((code, CodeOrigin::Embedded));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "embedded code did not load; compiling")
                }
            }
        }
        let code = match kind {
            BinaryKind::Component => Component::from_binary(engine, &binary)
                .map(Code::Component)
                .map_err(|e| format!("not a valid component: {e:#}")),
            BinaryKind::Module => Module::from_binary(engine, &binary)
                .map(Code::Module)
                .map_err(|e| format!("not a valid module: {e:#}")),
        }
        .map_err(TaskFailure::invalid_input)?;
        counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Ok(serialized) = code.serialize() {
            self.store(&hash, &serialized);
        }
        Ok((code, CodeOrigin::Compiled))
    }

    /// Compiles `bytes` on this thread with a throwaway engine of `engine`'s
    /// configuration into the disk cache, unless it is there already.
    pub fn precompile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: blake3::Hash,
        counters: &Counters,
    ) -> Result<CodeOrigin, TaskFailure> {
        if self.cached(&hash, counters).is_some() {
            return Ok(CodeOrigin::Disk);
        }
        let binary = to_binary(bytes)?;
        // Parallel compilation leaves its scratch memory scattered over the
        // worker threads' heaps, where it stays resident for good (tens of
        // MiB on an otherwise idle node).
        let mut config = engine.config().clone();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
        config.parallel_compilation(false);
        let compiler = Engine::new(&config)
            .map_err(|e| TaskFailure::internal(format!("cannot create a compiler: {e:#}")))?;
        let code = match binary_kind(&binary)? {
            BinaryKind::Component => compiler.precompile_component(&binary),
            BinaryKind::Module => compiler.precompile_module(&binary),
        }
        .map_err(|e| TaskFailure::invalid_input(format!("does not compile: {e:#}")))?;
        counters.compiled.fetch_add(1, Ordering::Relaxed);
        self.store(&hash, &code);
        Ok(CodeOrigin::Compiled)
    }

    fn cached(&self, hash: &blake3::Hash, counters: &Counters) -> Option<Vec<u8>> {
        match self.disk.as_ref()?.load(hash) {
            Lookup::Hit(code) => Some(code),
            Lookup::Miss => None,
            Lookup::Rejected(why) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "compiled-code cache entry rejected; recompiling");
                None
            }
        }
    }

    fn reject(&self, hash: &blake3::Hash, why: &str, counters: &Counters) {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
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
