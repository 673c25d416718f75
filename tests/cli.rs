//! `wasmnode run` and `wasmnode tool` as a user runs them: the real binary,
//! real files, exit codes and one-line errors.

use serde_json::json;
use wasmnode_e2e::{binary, json, stderr, stdout, test_guest, wasmnode};

#[test]
fn run_retrieval_from_a_documents_file() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.json");
    let corpus = json!([
        {"id": "pw", "text": "To reset your password open the sign-in page and choose forgot password"},
        {"id": "inv", "text": "Invoices are sent on the first day of each month"},
    ]);
    std::fs::write(&docs, corpus.to_string()).unwrap();
    let out = wasmnode(
        dir.path(),
        &[
            "run",
            "retrieval",
            "--input",
            "query=how to reset password",
            "--input",
            &format!("documents_json=@{}", docs.display()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["documents"][0]["id"], "pw");
}

#[test]
fn run_a_job_file_and_report_failures_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({"protocol_version": 1, "job_id": "agg-1",
               "task": {"type": "aggregation", "payload": {"items_json": "[{\"a\":1},{\"b\":2}]"}},
               "runtime": {"mode": "wasm"}})
        .to_string(),
    )
    .unwrap();
    let out = wasmnode(dir.path(), &["run", "--job", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["report"], json!({"a": 1, "b": 2}));

    let out = wasmnode(
        dir.path(),
        &[
            "run",
            "aggregation",
            "--input",
            "items_json=[{\"a\":1}]",
            "--input",
            "required_fields=b",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: INVALID_INPUT: required fields missing"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_input_is_a_clear_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad_job = dir.path().join("bad.json");
    std::fs::write(&bad_job, "{\"protocol_version\": 2}").unwrap();
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, "plain text").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), "--job".into(), bad_job.display().to_string()],
            "BAD_PROTOCOL_VERSION",
        ),
        (
            vec!["run".into(), "compile_cpp".into()],
            "unknown task type",
        ),
        (
            vec!["run".into(), "retrieval".into()],
            "missing required input",
        ),
        (
            vec![
                "run".into(),
                "--component".into(),
                not_wasm.display().to_string(),
            ],
            "not a WebAssembly binary",
        ),
        (
            vec![
                "run".into(),
                "--component".into(),
                test_guest("functions").display().to_string(),
            ],
            "name the one to call",
        ),
        (
            vec!["tool".into(), "run".into(), "nmap".into()],
            "no tool named `nmap`",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = wasmnode(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_command_line_the_command_cannot_use_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["tool", "run", "builtin:grep", "--args", r#"{"path": "#],
            "--args must be a JSON object",
        ),
        (&["tool", "run", "builtin:grep", "--args", "[1]"], "not [1]"),
        (
            &["run", "retrieval", "--input", "query"],
            "must look like KEY=VALUE",
        ),
        (
            &[
                "run",
                "retrieval",
                "--input",
                "query=x",
                "--mount",
                "/tmp:/t:rx",
            ],
            "mode must be ro or rw",
        ),
        (
            &["run", "retrieval", "--arg", "x"],
            "apply to --component runs only",
        ),
        (&["run", "--no-such-flag"], "unexpected argument"),
    ];
    for (args, expected) in cases {
        let out = wasmnode(dir.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn tool_run_is_confined_to_its_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("todo.txt"), "first\nTODO: ship\n").unwrap();
    let mount = format!("{}:/data:ro", data.display());
    let out = wasmnode(
        dir.path(),
        &[
            "tool",
            "run",
            "builtin:grep",
            "--mount",
            &mount,
            "--args",
            r#"{"pattern": "TODO", "path": "/data"}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["matches"][0]["line"], 2);

    let out = wasmnode(
        dir.path(),
        &[
            "tool",
            "run",
            "file_write",
            "--mount",
            &mount,
            "--args",
            r#"{"path": "/data/x", "content": "no"}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("POLICY_DENIED"), "{}", stderr(&out));
    let out = wasmnode(
        dir.path(),
        &[
            "tool",
            "run",
            "file_read",
            "--mount",
            &mount,
            "--args",
            r#"{"path": "/data/../../etc/passwd"}"#,
        ],
    );
    assert!(stderr(&out).contains("POLICY_DENIED"), "{}", stderr(&out));
}

#[test]
fn tool_inspect_shows_the_world_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = wasmnode(dir.path(), &["tool", "inspect", "builtin:file_edit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = json(&out);
    assert_eq!(info["world"], "tool");
    assert_eq!(info["tool"]["writes"], true);
    assert_eq!(
        info["tool"]["args_schema"]["required"],
        json!(["path", "old", "new"])
    );
    let out = wasmnode(dir.path(), &["tool", "list"]);
    assert!(stdout(&out).contains("file_edit\tbuiltin"));
}

#[test]
fn plain_functions_run_by_export_or_by_their_plugin_name() {
    let dir = tempfile::tempdir().unwrap();
    let component = test_guest("functions");
    let out = wasmnode(
        dir.path(),
        &[
            "tool",
            "run",
            component.to_str().unwrap(),
            "--function",
            "add",
            "--args",
            r#"{"a": 2, "b": 3}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out), json!(5));

    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(&component, plugins.join("calc.wasm")).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, format!("[node]\nplugin_dir = {plugins:?}\n")).unwrap();
    let config = config.to_str().unwrap();
    let by_name = |tool: &str, args: &str| {
        wasmnode(
            dir.path(),
            &["--config", config, "tool", "run", tool, "--args", args],
        )
    };
    let out = by_name("calc.shapes.area", r#"{"s": {"rect": [3, 4]}}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out), json!(12.0));
    let out = by_name("calc.divide", r#"{"a": 1, "b": 0}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("NON_ZERO_EXIT") && stderr(&out).contains("division by zero"),
        "{}",
        stderr(&out)
    );
    let out = wasmnode(dir.path(), &["--config", config, "tool", "list"]);
    assert!(
        stdout(&out).contains("calc.add\tfunction"),
        "{}",
        stdout(&out)
    );
    let out = wasmnode(
        dir.path(),
        &["tool", "inspect", component.to_str().unwrap()],
    );
    let info = json(&out);
    assert_eq!(info["world"], "functions");
    let add = info["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["export"] == "add")
        .unwrap_or_else(|| panic!("add is listed: {info}"));
    assert_eq!(add["output_schema"]["type"], "integer", "{info}");
}

#[test]
fn plain_wasi_commands_pass_their_output_through() {
    let dir = tempfile::tempdir().unwrap();
    let command = test_guest("command");
    let out = wasmnode(
        dir.path(),
        &[
            "run",
            "--component",
            command.to_str().unwrap(),
            "--arg",
            "0",
            "--arg",
            "hello",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("args=0 hello"), "{}", stdout(&out));
    assert!(stderr(&out).contains("to stderr"));
    let out = wasmnode(
        dir.path(),
        &[
            "run",
            "--component",
            command.to_str().unwrap(),
            "--arg",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NON_ZERO_EXIT"));
}

#[test]
fn run_out_keeps_what_the_program_wrote_to_its_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = test_guest("hostile");
    let out_dir = dir.path().join("out");
    let run = |out: &std::path::Path| {
        wasmnode(
            dir.path(),
            &[
                "run",
                "--component",
                hostile.to_str().unwrap(),
                "--input",
                "action=write",
                "--input",
                "path=/workspace/report.txt",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let out = run(&out_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("report.txt")).unwrap(),
        "written"
    );
    // A directory holding anything already is not taken over.
    let out = run(&out_dir);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must be missing or empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

#[test]
fn a_program_streams_its_output_live_reads_our_stdin_and_its_exit_code_is_the_commands() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    std::fs::create_dir(&gate).unwrap();
    let mut child = std::process::Command::new(binary())
        .args(["run", "--component"])
        .arg(test_guest("hostile"))
        .args(["--input", "action=block", "--input", "until=/gate/open"])
        .arg("--mount")
        .arg(format!("{}:/gate", gate.display()))
        .env("WASMNODE_DATA_DIR", dir.path())
        .env("WASMNODE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let guest_out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(guest_out).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    // The guest prints `running`, then waits for the gate: the line can
    // only arrive now if it is passed on as it is written.
    let first = seen
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the guest's first line arrives while it runs");
    assert_eq!(first, "running");
    std::fs::write(gate.join("open"), "").unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: String = seen.try_iter().collect();
    assert!(status.success());
    assert!(rest.contains("released"), "{rest}");

    // Without inputs, a program reads the command's own stdin.
    let mut child = std::process::Command::new(binary())
        .args(["run", "--component"])
        .arg(test_guest("command"))
        .env("WASMNODE_DATA_DIR", dir.path())
        .env("WASMNODE_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped in").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("stdin=piped in"), "{}", stdout(&out));

    // A WASI preview 1 program's exit code is the command's own.
    let module = dir.path().join("exit3.wat");
    std::fs::write(
        &module,
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const 3))))"#,
    )
    .unwrap();
    let out = wasmnode(
        dir.path(),
        &["run", "--component", module.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("NON_ZERO_EXIT"));
}

#[test]
fn config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = wasmnode(dir.path(), &["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("listen = \"127.0.0.1:9000\""), "{text}");
    assert!(
        text.contains(&format!("data_dir = \"{}\"", dir.path().display())),
        "{text}"
    );
}
