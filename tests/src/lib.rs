//! Support for wasmnode's end-to-end tests: finding the built binary,
//! running it as a process, and test servers that play its peers.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `wasmnode` binary built for this test run (`WASMNODE_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WASMNODE_BIN") {
        return path.into();
    }
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join("wasmnode");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p wasmnode`)",
        path.display()
    );
    path
}

/// Path of a test-only guest built by `runtime/build.rs` (`hostile`, `command`, ...).
pub fn test_guest(stem: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release")
        .join(format!("{stem}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the runtime tests first",
        path.display()
    );
    path
}

/// Runs `wasmnode ARGS` with a private data directory and returns its output.
pub fn wasmnode(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("WASMNODE_DATA_DIR", data_dir)
        .env_remove("WASMNODE_CONFIG")
        .env("WASMNODE_LOG", "warn")
        .output()
        .expect("start wasmnode")
}

/// Stdout of `output` as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of `output` as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Stdout of `output` parsed as JSON (panics with both streams if it is not).
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(output),
            stderr(output)
        )
    })
}
