//! The guest components embedded in the binary (`builtin:NAME`), so a single
//! file is all an edge box needs. `build.rs` compiles them from `guests/`
//! and, in release builds, embeds their compiled code too.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The built-ins' code compiled for this binary's target with portable CPU
/// settings (empty unless the build was given `WASMNODE_PRECOMPILED_DIR`).
pub struct Precompiled {
    /// Compatibility hash of the engine that compiled it.
    pub engine: [u8; 32],
    /// One entry per built-in.
    pub code: &'static [PrecompiledCode],
}

/// One built-in's compiled code.
pub struct PrecompiledCode {
    /// The built-in's name.
    pub name: &'static str,
    /// blake3 of the wasm it was compiled from.
    pub wasm: [u8; 32],
    /// The serialized component.
    pub code: &'static [u8],
}

/// A built-in guest.
pub struct Builtin {
    /// Its name, used as `builtin:NAME`.
    pub name: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
    /// blake3 of `wasm`, computed by `build.rs`: a node that loads the
    /// built-ins' code from a cache never reads their bytes.
    pub hash: [u8; 32],
}

/// The built-in guest `name` (without the `builtin:` prefix).
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Names of every built-in guest.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// Names of the built-in guests that are tools (`wasmnode:tool` world).
pub const TOOLS: &[&str] = &[
    "file_read",
    "file_write",
    "file_edit",
    "grep",
    "find",
    "list",
    "web_fetch",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_a_component() {
        for Builtin { name, wasm, .. } in BUILTINS {
            assert_eq!(&wasm[..4], b"\0asm", "{name}");
            assert_eq!(
                &wasm[6..8],
                &[1, 0],
                "{name} must be a component, not a core module"
            );
        }
        assert!(builtin("retrieval").is_some());
        assert!(builtin("nope").is_none());
        for tool in TOOLS {
            assert!(builtin(tool).is_some(), "{tool}");
        }
    }

    #[test]
    fn every_builtin_carries_the_blake3_of_its_bytes() {
        for builtin in BUILTINS {
            assert_eq!(
                &builtin.hash,
                blake3::hash(builtin.wasm).as_bytes(),
                "{}",
                builtin.name
            );
        }
    }
}
