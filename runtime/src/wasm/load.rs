//! Where a binary's compiled code comes from: a verified load from the disk
//! cache, the code embedded in the node's binary, or a compilation (whose
//! result goes into the disk cache). WAT text is turned into a binary first.
//! Large code for several engines is loaded through a shared image.

use super::cache::{DiskCache, Lookup};
use super::embedded::Embedded;
use super::image::{self, Image};
use super::prepare::{Code, CodeOrigin, Counters};
use crate::failure::TaskFailure;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

/// Loads or compiles code for the executor's engines.
pub struct Loader {
    disk: Option<DiskCache>,
    embedded: Embedded,
    /// Code of at least this many bytes is loaded through an image that
    /// other engines map, where they are asked to share.
    share_from: usize,
}

/// Code loaded into an engine.
pub struct Loaded {
    pub code: Code,
    pub origin: CodeOrigin,
    /// The shared image the code is mapped from, if it is.
    pub image: Option<Arc<Image>>,
}

impl Loader {
    /// A loader over an optional disk cache and the embedded code.
    pub fn new(disk: Option<DiskCache>, embedded: Embedded) -> Self {
        Self {
            disk,
            embedded,
            share_from: image::SHARE_FROM_BYTES,
        }
    }

    /// The same loader, sharing code of at least `bytes` bytes.
    #[cfg(test)]
    pub fn sharing_from(self, bytes: usize) -> Self {
        Self {
            share_from: bytes,
            ..self
        }
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

    /// The code of the binary hashing to `hash` in `engine`, counted in
    /// `counters`; its `bytes` are asked for only if it must be compiled.
    /// When `share` (other engines will copy it), large code is mapped from
    /// an image that they map too.
    pub fn code(
        &self,
        engine: &Engine,
        hash: blake3::Hash,
        bytes: impl FnOnce() -> Result<bytes::Bytes, TaskFailure>,
        counters: &Counters,
        share: bool,
    ) -> Result<Loaded, TaskFailure> {
        let share = |code: &[u8]| share && code.len() >= self.share_from;
        // SAFETY: the code is either sealed with this node's MAC under a key
        // that includes the engine compatibility hash (the node wrote it
        // itself), part of this binary, compiled by this wasmtime under this
        // engine's settings (portable CPU flags), or serialized just now from
        // code this wasmtime compiled; wasmtime checks its header against the
        // engine again.
        let load = |code: &[u8], origin| unsafe {
            let kind = match Engine::detect_precompiled(code) {
                Some(Precompiled::Component) => BinaryKind::Component,
                Some(Precompiled::Module) => BinaryKind::Module,
                None => return Err(wasmtime::Error::msg("not code compiled by wasmtime")),
            };
            if share(code)
                && let Some(image) = image_of(code, kind)
            {
                return image.load(engine).map(|code| Loaded {
                    code,
                    origin,
                    image: Some(image),
                });
            }
            match kind {
                BinaryKind::Component => Component::deserialize(engine, code).map(Code::Component),
                BinaryKind::Module => Module::deserialize(engine, code).map(Code::Module),
            }
            .map(|code| Loaded {
                code,
                origin,
                image: None,
            })
        };
        if let Some(code) = self.cached(&hash, counters) {
            match load(&code, CodeOrigin::Disk) {
                Ok(loaded) => {
                    counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(loaded);
                }
                Err(e) => self.reject(&hash, &e.to_string(), counters),
            }
        }
        if let Some(code) = self.embedded.code(&hash) {
            match load(code, CodeOrigin::Embedded) {
                Ok(loaded) => {
                    counters.embedded_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(loaded);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "embedded code did not load; compiling")
                }
            }
        }
        let bytes = bytes()?;
        let binary = to_binary(&bytes)?;
        let kind = binary_kind(&binary)?;
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
        let Ok(serialized) = code.serialize() else {
            return Ok(Loaded {
                code,
                origin: CodeOrigin::Compiled,
                image: None,
            });
        };
        self.store(&hash, &serialized);
        if share(&serialized) {
            // Let go of the compiled copy before the image is made: the
            // image holds the same code, and the Python runtime's is 333 MB.
            drop(code);
            return load(&serialized, CodeOrigin::Compiled).map_err(|e| {
                TaskFailure::internal(format!("compiled code did not load again: {e:#}"))
            });
        }
        Ok(Loaded {
            code,
            origin: CodeOrigin::Compiled,
            image: None,
        })
    }

    /// Compiles the binary hashing to `hash` (its `bytes` asked for only
    /// now) on this thread with a throwaway engine of `engine`'s
    /// configuration into the disk cache, unless it is there already.
    pub fn precompile(
        &self,
        engine: &Engine,
        hash: blake3::Hash,
        bytes: impl FnOnce() -> Result<bytes::Bytes, TaskFailure>,
        counters: &Counters,
    ) -> Result<CodeOrigin, TaskFailure> {
        if self.cached(&hash, counters).is_some() {
            return Ok(CodeOrigin::Disk);
        }
        let bytes = bytes()?;
        let binary = to_binary(&bytes)?;
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

/// `code` in a new shared image, or `None` (logged) where this system
/// cannot make one: the engines then load copies of their own.
///
/// # Safety
///
/// As for [`Image::new`].
unsafe fn image_of(code: &[u8], kind: BinaryKind) -> Option<Arc<Image>> {
    // SAFETY: passed on to the caller.
    match unsafe { Image::new(code, kind == BinaryKind::Component) } {
        Ok(image) => Some(Arc::new(image)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot share compiled code between engines; each loads its own copy");
            None
        }
    }
}

/// Kind of WebAssembly binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
