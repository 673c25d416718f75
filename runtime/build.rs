//! Builds the guest components in `../guests` for wasm32-wasip2 and generates
//! `builtins.rs`, which embeds the built-in guests in the binary (and, with
//! the `test-guests` feature, names the test guests' files); and builds the
//! containers' deadline helper (`deadline/`) as a static binary for the
//! target being built, embedded as `deadline_helper.bin`.
//!
//! With `WASMNODE_PRECOMPILED_DIR` set (release builds, scripts/release.sh),
//! `builtins.rs` also embeds the built-ins' compiled code that
//! `wasmnode precompile --out DIR` wrote, after checking it was compiled for
//! this target from exactly these guests.
//!
//! Each nested build gets its own target directory (`target/wasm-guests`,
//! `target/deadline`), so the nested cargo never waits on the lock of the
//! build that runs this script.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in guests: (name used as `builtin:NAME`, cargo package, wasm file stem).
const BUILTINS: &[(&str, &str, &str)] = &[
    ("aggregation", "aggregation", "aggregation"),
    ("retrieval", "retrieval", "retrieval"),
    ("file_read", "tool-file-read", "tool_file_read"),
    ("file_write", "tool-file-write", "tool_file_write"),
    ("file_edit", "tool-file-edit", "tool_file_edit"),
    ("grep", "tool-grep", "tool_grep"),
    ("find", "tool-find", "tool_find"),
    ("list", "tool-list", "tool_list"),
    ("web_fetch", "tool-web-fetch", "tool_web_fetch"),
];

/// Test-only guests: (constant name, cargo package, wasm file stem).
const TEST_GUESTS: &[(&str, &str, &str)] = &[
    ("HOSTILE", "hostile", "hostile"),
    ("COMMAND", "command", "command"),
    ("FUNCTIONS", "functions", "functions"),
];

/// Environment a nested cargo must not inherit from the outer build.
const SCRUBBED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_LLVM_COV",
    "LLVM_PROFILE_FILE",
];

/// Removes from `cmd` the environment a nested cargo must not inherit: the
/// variables above and every profile override (`CARGO_PROFILE_*`), which
/// would otherwise change how the embedded guests are built.
fn scrub(cmd: &mut Command) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (var, _) in env::vars_os() {
        if var.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(var);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root");
    let guests = root.join("guests");
    let target_dir = root.join("target").join("wasm-guests");
    let with_tests = env::var_os("CARGO_FEATURE_TEST_GUESTS").is_some();

    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        "kit",
        "bm25",
        "aggregation",
        "retrieval",
        "fs-tools",
        "tools",
        "testing",
    ] {
        println!("cargo:rerun-if-changed={}", guests.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("build")
        .arg("--release")
        .args(["--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    let packages = BUILTINS.iter().map(|(_, package, _)| *package).chain(
        TEST_GUESTS
            .iter()
            .filter(|_| with_tests)
            .map(|(_, package, _)| *package),
    );
    for package in packages {
        cmd.args(["-p", package]);
    }
    scrub(&mut cmd);
    let status = cmd
        .status()
        .expect("failed to start cargo for the guest components");
    if !status.success() {
        panic!(
            "building the guest components failed ({status}). They need the wasm32-wasip2 \
             target: run `make wasm-target` (or `rustup target add wasm32-wasip2`)."
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    println!("cargo:rustc-env=WASMNODE_TARGET={target}");
    println!("cargo:rerun-if-env-changed=WASMNODE_PRECOMPILED_DIR");
    let hashes = builtin_hashes(&wasm_dir);
    let mut code = generate(&wasm_dir, &hashes, with_tests);
    match env::var_os("WASMNODE_PRECOMPILED_DIR") {
        Some(dir) if !dir.is_empty() => {
            code.push_str(&precompiled(Path::new(&dir), &hashes, &target));
        }
        _ => code.push_str(&no_precompiled("built without WASMNODE_PRECOMPILED_DIR")),
    }
    std::fs::write(out_dir.join("builtins.rs"), code).expect("write builtins.rs");
    let helper = build_deadline_helper(root, &manifest_dir);
    std::fs::copy(&helper, out_dir.join("deadline_helper.bin")).expect("copy the deadline helper");
}

/// Builds `deadline/` for the target being built, statically linked (it runs
/// inside containers whatever their image holds); returns the binary.
fn build_deadline_helper(root: &Path, manifest_dir: &Path) -> PathBuf {
    let crate_dir = manifest_dir.join("deadline");
    println!("cargo:rerun-if-changed={}", crate_dir.display());
    let target = env::var("TARGET").expect("TARGET");
    let target_dir = root.join("target").join("deadline");
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("build")
        .arg("--release")
        .args(["--target", &target])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    scrub(&mut cmd);
    if target.ends_with("-gnu") {
        cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    let status = cmd
        .status()
        .expect("failed to start cargo for the deadline helper");
    assert!(
        status.success(),
        "building the deadline helper failed ({status})"
    );
    target_dir
        .join(&target)
        .join("release")
        .join("wasmnode-deadline")
}

/// The blake3 of each built-in's wasm, in `BUILTINS` order.
fn builtin_hashes(wasm_dir: &Path) -> Vec<blake3::Hash> {
    BUILTINS
        .iter()
        .map(|(_, _, stem)| {
            let path = wasm_dir.join(format!("{stem}.wasm"));
            let wasm = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("missing built guest {}: {e}", path.display()));
            blake3::hash(&wasm)
        })
        .collect()
}

fn generate(wasm_dir: &Path, hashes: &[blake3::Hash], with_tests: bool) -> String {
    let mut code = String::from(
        "/// Built-in guests, each hashed when the binary was built.\npub static BUILTINS: &[Builtin] = &[\n",
    );
    for ((name, _, stem), hash) in BUILTINS.iter().zip(hashes) {
        let path = wasm_dir.join(format!("{stem}.wasm"));
        writeln!(
            code,
            "    Builtin {{ name: {name:?}, wasm: include_bytes!({:?}), hash: {:?} }},",
            path.display().to_string(),
            hash.as_bytes()
        )
        .unwrap();
    }
    code.push_str("];\n");
    if with_tests {
        code.push_str("\n/// Paths of the test-only guest components.\npub mod test_guests {\n");
        for (constant, _, stem) in TEST_GUESTS {
            let path = wasm_dir.join(format!("{stem}.wasm"));
            writeln!(
                code,
                "    /// `{stem}.wasm`.\n    pub const {constant}: &str = {:?};",
                path.display().to_string()
            )
            .unwrap();
        }
        code.push_str("}\n");
    }
    code
}

/// An empty `PRECOMPILED` table, saying `why` it is empty.
fn no_precompiled(why: &str) -> String {
    format!(
        "\n/// No compiled code embedded ({why}).\n\
         pub static PRECOMPILED: Precompiled = Precompiled {{ engine: [0; 32], code: &[] }};\n"
    )
}

/// The `PRECOMPILED` table for the code in `dir`: its `MANIFEST` (written by
/// `wasmnode precompile`) names the target, the engine's compatibility hash
/// and, per built-in, the blake3 of the wasm it was compiled from. Code for
/// another target or other guest bytes is stale: nothing is embedded, with a
/// warning (scripts/build-embedded.sh then compiles it afresh and rebuilds).
fn precompiled(dir: &Path, hashes: &[blake3::Hash], target: &str) -> String {
    let manifest_path = dir.join("MANIFEST");
    println!("cargo:rerun-if-changed={}", dir.display());
    let manifest = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!(
            "WASMNODE_PRECOMPILED_DIR: cannot read {}: {e}",
            manifest_path.display()
        )
    });
    let mut lines = manifest
        .lines()
        .map(|l| l.split_once(' ').unwrap_or((l, "")));
    let mut field = |key: &str| match lines.next() {
        Some((k, v)) if k == key => v.to_string(),
        other => panic!(
            "{}: expected `{key} …`, found {other:?}",
            manifest_path.display()
        ),
    };
    let manifest_target = field("target");
    if manifest_target != target {
        println!(
            "cargo:warning={} holds code for {manifest_target}, not {target}: nothing embedded",
            manifest_path.display()
        );
        return no_precompiled("the precompiled code was stale");
    }
    let engine = blake3::Hash::from_hex(field("engine")).expect("engine hash in hex");
    let mut code = format!(
        "\n/// The built-ins' code compiled for {target} when this binary was built.\n\
         pub static PRECOMPILED: Precompiled = Precompiled {{\n    engine: {:?},\n    code: &[\n",
        engine.as_bytes()
    );
    for ((name, _, _), hash) in BUILTINS.iter().zip(hashes) {
        let recorded = blake3::Hash::from_hex(field(name)).expect("wasm hash in hex");
        if recorded != *hash {
            println!(
                "cargo:warning={}: `{name}` was compiled from other guest bytes than this build's: nothing embedded",
                manifest_path.display()
            );
            return no_precompiled("the precompiled code was stale");
        }
        let file = dir.join(format!("{name}.cwasm"));
        assert!(file.exists(), "missing {}", file.display());
        writeln!(
            code,
            "        PrecompiledCode {{ name: {name:?}, wasm: {:?}, code: include_bytes!({:?}) }},",
            recorded.as_bytes(),
            file.display().to_string()
        )
        .unwrap();
    }
    code.push_str("    ],\n};\n");
    code
}
