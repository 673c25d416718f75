//! Python plugin tools: `tool new --lang python` to a passing `tool test`,
//! built by componentize-py. Run by `make test-python` (part of `make
//! test`), which installs componentize-py once per machine and names it in
//! `WASMNODE_COMPONENTIZE_PY`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use wasmnode_e2e::{json, stderr, tool_run, wasmnode};

fn componentize_py() -> PathBuf {
    std::env::var_os("WASMNODE_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .expect("WASMNODE_COMPONENTIZE_PY names componentize-py (make test-python sets it)")
}

#[test]
#[ignore = "needs componentize-py: run by make test-python"]
fn a_new_python_tool_builds_tests_and_runs_like_a_rust_one() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("word_py");
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "new",
            "word_py",
            "--lang",
            "python",
            "--dir",
            project.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(project.join("wit/tool.wit").is_file());
    let make = |target: &str| {
        let out = Command::new("make")
            .arg("-C")
            .arg(&project)
            .arg(format!("COMPONENTIZE_PY={}", componentize_py().display()))
            .args(["PYTHON=python3", target])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make {target}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    };
    make("test");
    let build = Instant::now();
    make("build");
    println!(
        "componentize-py built the tool in {:.1} s",
        build.elapsed().as_secs_f64()
    );
    let wasm = project.join("word_py.wasm");

    let out = wasmnode(data.path(), &["tool", "inspect", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = json(&out);
    assert_eq!(info["world"], "tool", "{info}");
    assert_eq!(info["tool"]["name"], "word_py", "{info}");

    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "test",
            wasm.to_str().unwrap(),
            "--cases",
            project.join("cases").to_str().unwrap(),
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && table.contains("3 passed, 0 failed"),
        "{table}{}",
        stderr(&out)
    );
    println!(
        "tool new --lang python to a passing tool test: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    std::fs::write(work.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let mount = format!("{}:/in", work.path().display());
    let out = tool_run(
        data.path(),
        &wasm,
        &mount,
        r#"{"path": "/in/poem.txt"}"#,
        &["--full"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = json(&out);
    assert_eq!(whole["output"]["words"], 3, "{whole}");
    assert_eq!(
        whole["stderr"], "[INFO word_py] counted /in/poem.txt (14 bytes)\n",
        "{whole}"
    );
    assert_ne!(
        whole["metrics"]["code_cache"], "compiled",
        "a later run reuses the tool compiled by tool test, from the node's cache: {whole}"
    );
}
