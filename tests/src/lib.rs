//! Support for wasmnode's end-to-end tests: finding the built binary,
//! running it as a process, and test servers that play its peers.

pub mod browser;
pub mod control_plane;
pub mod files;
pub mod goliat;
pub mod ollama;
pub mod registry;
pub mod tls;
pub mod web;

use std::path::PathBuf;
use std::process::{Command, Output};

/// A response's status and its JSON (null when it is not JSON).
async fn status_and_json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

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

/// The example plugin tool (`examples/plugin-tool`, `word_count`), built
/// once per test binary.
pub fn plugin_tool() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = root.join("target/wasm-guests");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(root.join("examples/plugin-tool/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .status()
                .expect("run cargo");
            assert!(status.success(), "building examples/plugin-tool failed");
            target.join("wasm32-wasip2/release/word_count.wasm")
        })
        .clone()
}

/// `wasmnode tool run TOOL --mount MOUNT --args ARGS EXTRA...` with the
/// data directory `data_dir`.
pub fn tool_run(
    data_dir: &std::path::Path,
    tool: &std::path::Path,
    mount: &str,
    args: &str,
    extra: &[&str],
) -> Output {
    let base = [
        "tool",
        "run",
        tool.to_str().expect("a UTF-8 path"),
        "--mount",
        mount,
        "--args",
        args,
    ];
    wasmnode(data_dir, &[&base[..], extra].concat())
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

/// A `wasmnode serve` process on a free loopback port with its own data
/// directory; killed when dropped.
pub struct NodeProcess {
    child: std::process::Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The data directory (kept across restarts).
    pub data_dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    log: PathBuf,
    command: Vec<String>,
    /// `prlimit` options the node starts under (e.g. `--nofile=256:256`).
    limits: Vec<String>,
    /// The `wasmnode` binary it runs.
    binary: PathBuf,
}

impl NodeProcess {
    /// Starts `wasmnode serve` with `config_toml` (the test adds listen and data dir).
    pub async fn start(config_toml: &str) -> Self {
        Self::start_command(&["serve"], config_toml).await
    }

    /// Starts `wasmnode agent --control-plane URL --worker-id ID` with `config_toml`.
    pub async fn start_agent(control_plane: &str, worker_id: &str, config_toml: &str) -> Self {
        Self::start_command(
            &[
                "agent",
                "--control-plane",
                control_plane,
                "--worker-id",
                worker_id,
            ],
            config_toml,
        )
        .await
    }

    /// Starts `wasmnode agent --protocol goliat --control-plane URL` with `config_toml`.
    pub async fn start_goliat(dashboard: &str, config_toml: &str) -> Self {
        Self::start_command(
            &[
                "agent",
                "--protocol",
                "goliat",
                "--control-plane",
                dashboard,
            ],
            config_toml,
        )
        .await
    }

    /// Starts `wasmnode COMMAND...` with `config_toml`.
    pub async fn start_command(command: &[&str], config_toml: &str) -> Self {
        Self::start_limited(command, config_toml, &[]).await
    }

    /// Starts `wasmnode COMMAND...` with `config_toml` under the resource
    /// limits `prlimit` options give (e.g. `--nofile=256:256`).
    pub async fn start_limited(command: &[&str], config_toml: &str, limits: &[&str]) -> Self {
        Self::launch(&binary(), command, config_toml, limits, "http").await
    }

    /// Starts `wasmnode serve` from the build `binary` (another target's, say)
    /// instead of [`binary()`], with `config_toml`.
    pub async fn start_binary(binary: &std::path::Path, config_toml: &str) -> Self {
        Self::launch(binary, &["serve"], config_toml, &[], "http").await
    }

    /// Starts `wasmnode serve` with `config_toml`, which serves the API over
    /// HTTPS (`api.tls_cert`); `url` is `https://...`.
    pub async fn start_https(config_toml: &str) -> Self {
        Self::launch(&binary(), &["serve"], config_toml, &[], "https").await
    }

    async fn launch(
        binary: &std::path::Path,
        command: &[&str],
        config_toml: &str,
        limits: &[&str],
        scheme: &str,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let config = data_dir.path().join("node.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let port = free_port();
        let log = data_dir.path().join("node.log");
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let limits: Vec<String> = limits.iter().map(|s| s.to_string()).collect();
        let binary = binary.to_path_buf();
        let child = spawn_node(
            &binary,
            &command,
            &config,
            data_dir.path(),
            port,
            &log,
            &limits,
        );
        let node = Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            data_dir,
            config,
            port,
            log,
            command,
            limits,
            binary,
        };
        node.wait_ready().await;
        node
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path` as JSON (panics on a transport error or a body that is not JSON).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.at(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A line of the node's `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the node's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Resident memory now, MiB.
    pub fn rss_mib(&self) -> u64 {
        self.memory_kib("VmRSS") >> 10
    }

    /// The most resident memory the process has had, MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        self.memory_kib("VmHWM") >> 10
    }

    /// Starts the peak (`VmHWM`) afresh from the memory resident now
    /// (`/proc/PID/clear_refs`), so a later peak measures what came after.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("reset the node's peak resident memory");
    }

    /// Sets the node's resource limits while it runs (`prlimit --pid`
    /// options, e.g. `--fsize=100000:`).
    pub fn set_limit(&self, option: &str) {
        let status = Command::new("prlimit")
            .arg("--pid")
            .arg(self.pid().to_string())
            .arg(option)
            .status()
            .expect("prlimit");
        assert!(status.success(), "prlimit {option} failed");
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node has prepared its built-in guests (their
    /// compiled code is in memory), so that memory measured afterwards is
    /// not the warm-up's.
    pub async fn wait_warm(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !self.log().contains("built-in guests ready") {
            assert!(
                std::time::Instant::now() < deadline,
                "the built-in guests were not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self) {
        // Readiness only: the tests check the node's certificate themselves.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(r) = client.get(self.at("/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("node did not become ready; log:\n{}", self.log());
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the node.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit (up to `timeout`) and returns its status code.
    pub async fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node did not exit in {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`, then starts again on the same port with the same data.
    pub async fn crash_and_restart(&mut self) {
        self.signal("KILL");
        self.wait_exit(std::time::Duration::from_secs(10)).await;
        self.restart().await;
    }

    /// Starts the (stopped) node again with the same config, port and data.
    pub async fn restart(&mut self) {
        self.child = spawn_node(
            &self.binary,
            &self.command,
            &self.config,
            self.data_dir.path(),
            self.port,
            &self.log,
            &self.limits,
        );
        self.wait_ready().await;
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(
    binary: &std::path::Path,
    command: &[String],
    config: &std::path::Path,
    data_dir: &std::path::Path,
    port: u16,
    log: &std::path::Path,
    limits: &[String],
) -> std::process::Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    // `prlimit OPTIONS -- wasmnode ...` sets the limits and execs the node,
    // which keeps prlimit's process id.
    let mut node = if limits.is_empty() {
        Command::new(binary)
    } else {
        let mut prlimit = Command::new("prlimit");
        prlimit.args(limits).arg("--").arg(binary);
        prlimit
    };
    node.arg("--config")
        .arg(config)
        .args(command)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("WASMNODE_LOG", "info")
        .env_remove("WASMNODE_API_KEY")
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("start wasmnode serve")
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The directory holding the test guests, for `policy.component_roots`.
pub fn test_guest_dir() -> PathBuf {
    test_guest("hostile").parent().expect("dir").to_path_buf()
}

/// A WASI preview 1 program (WAT) with enough code that compiling it takes
/// a while (about a second on one core), and nothing to do when it runs.
pub fn slow_to_compile() -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)");
    for f in 0..2000 {
        wat.push_str(&format!("(func $f{f} (param i64) (result i64) local.get 0"));
        for i in 0..150 {
            wat.push_str(&format!(" i64.const {i} i64.mul local.get 0 i64.xor"));
        }
        wat.push(')');
    }
    wat.push_str("(func (export \"_start\")))");
    wat.into_bytes()
}

/// A Job Protocol v1 request running `component` (a test guest stem or `builtin:NAME`).
pub fn wasm_job(job_id: &str, component: &str, payload: serde_json::Value) -> serde_json::Value {
    let component = if component.starts_with("builtin:") {
        component.to_string()
    } else {
        test_guest(component).display().to_string()
    };
    serde_json::json!({"protocol_version": 1, "job_id": job_id,
        "task": {"type": "wasm", "payload": payload},
        "runtime": {"mode": "wasm", "component": component}})
}

/// A Vera-style task (a small aggregation) whose result goes to `callback_url`.
pub fn callback_task(task_id: &str, callback_url: &str) -> serde_json::Value {
    serde_json::json!({"task_id": task_id, "task_type": "data_processing",
        "payload": {"operation": "aggregation", "items_json": "[{\"n\":1}]"},
        "callback_url": callback_url})
}

/// Polls `/task/{id}/status` until its callback is delivered or failed.
pub async fn callback_settled(node: &NodeProcess, task_id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = node.get_json(&format!("/task/{task_id}/status")).await;
        if matches!(
            status["callback"]["state"].as_str(),
            Some("delivered" | "failed")
        ) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `GET /jobs/{id}` until the job is terminal (or `timeout`).
pub async fn wait_terminal(
    client: &reqwest::Client,
    node: &NodeProcess,
    job_id: &str,
    timeout: std::time::Duration,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let job: serde_json::Value = client
            .get(node.at(&format!("/jobs/{job_id}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if matches!(
            job["state"].as_str(),
            Some("finished" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job_id} still {} after {timeout:?}",
            job["state"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A gate that jobs of the hostile test guest wait behind: a directory
/// mounted into them, opened by creating a file in it. Tests hold a slot
/// or keep a job running with it, never with a sleep.
pub struct Gate {
    dir: tempfile::TempDir,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("gate directory"),
        }
    }

    /// The `[policy]` table letting a node run the test guests and mount the
    /// gate (`extra` lines are added to it).
    pub fn policy(&self, extra: &str) -> String {
        format!(
            "[policy]\ncomponent_roots = [{:?}]\nmount_roots = [{:?}]\n{extra}",
            test_guest_dir().display().to_string(),
            self.dir.path().display().to_string()
        )
    }

    /// The gate's directory, as a mount of the hostile guest's payloads.
    pub fn mount(&self) -> serde_json::Value {
        serde_json::json!([{"source": self.dir.path().display().to_string(), "target": "/gate"}])
    }

    /// A job that runs (printing `running`) until the gate opens.
    pub fn job(&self, job_id: &str) -> serde_json::Value {
        let mut job = wasm_job(
            job_id,
            "hostile",
            serde_json::json!({"action": "block", "until": "/gate/open"}),
        );
        job["runtime"]["mounts"] = self.mount();
        job
    }

    /// Opens the gate: every job waiting behind it ends.
    pub fn open(&self) {
        std::fs::write(self.dir.path().join("open"), b"").expect("open the gate");
    }
}

/// Polls `GET /jobs/{id}` until the job is in `state` (panics after 120 s).
pub async fn wait_state(node: &NodeProcess, job_id: &str, state: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = node.get_json(&format!("/jobs/{job_id}")).await;
        if job["state"] == state {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{job_id} never became {state}: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl NodeProcess {
    /// Submits the Job Protocol `job` (which must be accepted) and waits up
    /// to `timeout` for it to end; answers its view.
    pub async fn run_job(
        &self,
        job: &serde_json::Value,
        timeout: std::time::Duration,
    ) -> serde_json::Value {
        let (status, body) = self.post_json("/jobs", job).await;
        assert_eq!(status, 200, "{body}");
        let id = job["job_id"].as_str().expect("the job has an id");
        wait_terminal(&reqwest::Client::new(), self, id, timeout).await
    }

    /// `PUT /blobs` with `bytes`: the status and the JSON answer (null
    /// when the answer is not JSON).
    pub async fn upload(&self, bytes: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .put(self.at("/blobs"))
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT /blobs: {e}"));
        status_and_json(response).await
    }

    /// `POST path` with the JSON `body`: the status and the JSON answer
    /// (null when the answer is not JSON).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(self.at(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        status_and_json(response).await
    }

    /// `GET path` as text.
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(self.at(path))
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Polls `/health` until `until` holds for it (panics after 120 s).
    pub async fn wait_health(
        &self,
        until: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let health = self.get_json("/health").await;
            if until(&health) {
                return health;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "health never came: {health}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The events of job `job_id` until its stream ends, as (name, data)
    /// pairs; with `then_open`, that gate opens once the first event came
    /// (the job is followed from before it starts).
    pub async fn job_events(
        &self,
        job_id: &str,
        then_open: Option<&Gate>,
    ) -> Vec<(String, serde_json::Value)> {
        use futures::StreamExt;
        let wait = std::time::Duration::from_secs(120);
        let response = reqwest::get(self.at(&format!("/jobs/{job_id}/events")))
            .await
            .expect("events");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = String::new();
        let mut stream = response.bytes_stream();
        let mut gate = then_open;
        while let Some(chunk) = tokio::time::timeout(wait, stream.next())
            .await
            .expect("events in time")
        {
            body.push_str(&String::from_utf8_lossy(&chunk.expect("an event")));
            if let Some(gate) = gate.take() {
                gate.open();
            }
        }
        body.split("\n\n")
            .filter_map(|block| {
                let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((
                    name.to_string(),
                    serde_json::from_str(data).expect("JSON data"),
                ))
            })
            .collect()
    }
}
