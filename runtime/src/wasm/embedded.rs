//! The built-in guests' code compiled ahead of time and embedded in release
//! binaries, so the first task on a fresh board compiles nothing.
//!
//! `wasmnode precompile --out DIR` (under qemu for a foreign target) compiles
//! the built-ins with a portable engine: the node's engine settings and this
//! target's baseline CPU features, so the code runs on every CPU of the
//! target. A second build embeds it (`WASMNODE_PRECOMPILED_DIR`, build.rs).
//! The node uses it only when its own engine, made portable, has the
//! compatibility hash the code was compiled under; wasmtime checks each
//! header again when it loads one. Code compiled for this very CPU (the disk
//! cache) is preferred where there is some.

use super::engine::{self, EngineSettings};
use crate::builtins::{self, Precompiled};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The table of a node that uses no embedded code.
static NONE: Precompiled = Precompiled {
    engine: [0; 32],
    code: &[],
};

/// The embedded code a node may use.
pub struct Embedded {
    table: &'static Precompiled,
    settings: EngineSettings,
    matches: OnceLock<bool>,
}

impl Embedded {
    /// `table`, used only by an engine of `settings` whose portable variant
    /// compiled it.
    pub fn new(table: &'static Precompiled, settings: EngineSettings) -> Self {
        Self {
            table,
            settings,
            matches: OnceLock::new(),
        }
    }

    /// This binary's table, or none when `enabled` is false.
    pub fn builtins(enabled: bool, settings: EngineSettings) -> Self {
        Self::new(
            if enabled {
                &builtins::PRECOMPILED
            } else {
                &NONE
            },
            settings,
        )
    }

    /// The compiled code of the wasm whose blake3 is `wasm`, when there is
    /// some and it was compiled under this node's engine settings.
    pub fn code(&self, wasm: &blake3::Hash) -> Option<&'static [u8]> {
        let entry = self
            .table
            .code
            .iter()
            .find(|entry| entry.wasm == *wasm.as_bytes())?;
        self.matches().then_some(entry.code)
    }

    fn matches(&self) -> bool {
        *self
            .matches
            .get_or_init(|| match engine::portable(&self.settings) {
                Ok(portable) if engine::compatibility_hash(&portable) == self.table.engine => true,
                Ok(_) => {
                    tracing::info!(
                        "the built-in guests' embedded code was compiled under other engine settings \
                         (wasm.fuel_metering?); each is compiled on first use instead"
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot check the built-in guests' embedded code; compiling them instead");
                    false
                }
            })
    }
}

/// One built-in `precompile` wrote.
#[derive(Debug)]
pub struct Written {
    /// The built-in's name.
    pub name: &'static str,
    /// The file holding its code.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
}

/// Why `precompile` failed.
#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    /// wasmtime refused the portable configuration.
    #[error("cannot create the portable engine: {0}")]
    Engine(String),
    /// A built-in did not compile.
    #[error("built-in `{name}` does not compile: {message}")]
    Compile {
        /// The built-in.
        name: &'static str,
        /// wasmtime's error.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Compiles every built-in with the portable engine of `settings` into
/// `out` (created if missing): `NAME.cwasm` each, and a `MANIFEST` naming
/// the target, the engine's compatibility hash and the blake3 of each
/// built-in's wasm, which build.rs checks before it embeds them.
pub fn precompile(settings: &EngineSettings, out: &Path) -> Result<Vec<Written>, PrecompileError> {
    let engine =
        engine::portable(settings).map_err(|e| PrecompileError::Engine(format!("{e:#}")))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PrecompileError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut manifest = format!(
        "target {}\nengine {}\n",
        env!("WASMNODE_TARGET"),
        blake3::Hash::from_bytes(engine::compatibility_hash(&engine)).to_hex()
    );
    let mut written = Vec::new();
    for &builtins::Builtin { name, wasm, hash } in builtins::BUILTINS {
        let code = engine
            .precompile_component(wasm)
            .map_err(|e| PrecompileError::Compile {
                name,
                message: format!("{e:#}"),
            })?;
        let path = out.join(format!("{name}.cwasm"));
        std::fs::write(&path, &code).map_err(io(&path))?;
        manifest.push_str(&format!(
            "{name} {}\n",
            blake3::Hash::from_bytes(hash).to_hex()
        ));
        written.push(Written {
            name,
            path,
            bytes: code.len(),
        });
    }
    // Last: a directory without its MANIFEST is never taken for complete.
    let path = out.join("MANIFEST");
    std::fs::write(&path, manifest).map_err(io(&path))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::PrecompiledCode;

    /// A table holding `retrieval` compiled as `precompile` compiles it for `settings`.
    fn table_for(settings: &EngineSettings) -> (&'static Precompiled, blake3::Hash) {
        let wasm = builtins::builtin("retrieval").unwrap().wasm;
        let portable = engine::portable(settings).unwrap();
        let code: &'static [u8] = portable.precompile_component(wasm).unwrap().leak();
        let entries: &'static [PrecompiledCode] = vec![PrecompiledCode {
            name: "retrieval",
            wasm: *blake3::hash(wasm).as_bytes(),
            code,
        }]
        .leak();
        let table = Box::leak(Box::new(Precompiled {
            engine: engine::compatibility_hash(&portable),
            code: entries,
        }));
        (table, blake3::hash(wasm))
    }

    #[test]
    fn precompile_writes_every_builtin_and_a_manifest_build_rs_reads() {
        let dir = tempfile::tempdir().unwrap();
        let settings = EngineSettings::default();
        let written = precompile(&settings, dir.path()).unwrap();
        assert_eq!(written.len(), builtins::BUILTINS.len());
        let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).unwrap();
        let lines: Vec<&str> = manifest.lines().collect();
        assert_eq!(lines[0], format!("target {}", env!("WASMNODE_TARGET")));
        let engine = engine::compatibility_hash(&engine::portable(&settings).unwrap());
        assert_eq!(
            lines[1],
            format!("engine {}", blake3::Hash::from_bytes(engine).to_hex())
        );
        for (builtins::Builtin { name, wasm, .. }, line) in
            builtins::BUILTINS.iter().zip(&lines[2..])
        {
            assert_eq!(*line, format!("{name} {}", blake3::hash(wasm).to_hex()));
            assert!(dir.path().join(format!("{name}.cwasm")).is_file(), "{name}");
        }
    }

    #[test]
    fn code_is_offered_only_to_an_engine_of_the_settings_it_was_compiled_under() {
        let settings = EngineSettings::default();
        let (table, retrieval) = table_for(&settings);
        let same = Embedded::new(table, settings.clone());
        assert!(same.code(&retrieval).is_some());
        assert!(same.code(&blake3::hash(b"other wasm")).is_none());

        let no_fuel = EngineSettings {
            fuel_metering: false,
            ..settings
        };
        assert!(Embedded::new(table, no_fuel).code(&retrieval).is_none());
    }

    #[test]
    fn portable_code_loads_into_the_native_engine() {
        let settings = EngineSettings::default();
        let (table, retrieval) = table_for(&settings);
        let code = Embedded::new(table, settings.clone())
            .code(&retrieval)
            .unwrap();
        let (native, _) = engine::build(&EngineSettings {
            allocator: engine::AllocatorChoice::OnDemand,
            ..settings
        })
        .unwrap();
        // SAFETY: compiled just now by this wasmtime.
        unsafe { wasmtime::component::Component::deserialize(&native, code) }.unwrap();
    }

    #[test]
    fn a_node_that_declines_embedded_code_gets_none() {
        let embedded = Embedded::builtins(false, EngineSettings::default());
        let wasm = builtins::builtin("retrieval").unwrap().wasm;
        assert!(embedded.code(&blake3::hash(wasm)).is_none());
    }
}
