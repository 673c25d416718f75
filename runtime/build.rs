//! Builds the guest components in `../guests` for wasm32-wasip2 and generates
//! `builtins.rs`, which embeds the built-in guests in the binary (and, with
//! the `test-guests` feature, names the test guests' files); and builds the
//! containers' deadline helper (`deadline/`) as a static binary for the
//! target being built, embedded as `deadline_helper.bin`.
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
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
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
    std::fs::write(out_dir.join("builtins.rs"), generate(&wasm_dir, with_tests))
        .expect("write builtins.rs");
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
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    if target.ends_with("-gnu") || target.ends_with("-gnueabihf") {
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

fn generate(wasm_dir: &Path, with_tests: bool) -> String {
    let mut code = String::from(
        "/// Built-in guests: (name, component bytes).\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, _, stem) in BUILTINS {
        let path = wasm_dir.join(format!("{stem}.wasm"));
        assert!(path.exists(), "missing built guest {}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
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
