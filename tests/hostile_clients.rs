//! The hostile-client suite: every finding of the red-team review
//! (issue 13), tried again as an attacker would against the real node on
//! 127.0.0.1, one test per finding and named after it (finding 13, TLS,
//! has its own suite in `tls.rs`); plus a planted secret that must show up
//! nowhere the node shows things.

use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmnode_e2e::control_plane::{TaskDef, TestControlPlane};
use wasmnode_e2e::files::FileServer;
use wasmnode_e2e::goliat::TestDashboard;
use wasmnode_e2e::{
    Gate, NodeProcess, callback_settled, callback_task, stderr, stdout, test_guest, test_guest_dir,
    wait_state, wait_terminal, wasm_job, wasmnode,
};

const WAIT: Duration = Duration::from_secs(60);

fn job(id: &str, task_type: &str, payload: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id, "task": {"type": task_type, "payload": payload},
        "runtime": {"mode": "auto"}})
}

/// Submits `job` and waits for it to end; returns the final record.
async fn run(node: &NodeProcess, job: &Value) -> Value {
    let (status, body) = node.post_json("/jobs", job).await;
    assert_eq!(status, 200, "{body}");
    let id = job["job_id"].as_str().unwrap();
    wait_terminal(&reqwest::Client::new(), node, id, WAIT).await
}

fn code(done: &Value) -> (&str, &str) {
    (
        done["state"].as_str().unwrap_or_default(),
        done["error"]["code"].as_str().unwrap_or_default(),
    )
}

/// A server recording every request (method, path, headers) and answering
/// each with `status` and `body`.
struct Sink {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    async fn start(status: u16, body: &'static str) -> Self {
        Self::with(axum::Router::new(), status, body).await
    }

    async fn with(routes: axum::Router, status: u16, body: &'static str) -> Self {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let app = routes.fallback(move |request: axum::extract::Request| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!(
                    "{} {} {:?}",
                    request.method(),
                    request.uri(),
                    request.headers()
                ));
                (StatusCode::from_u16(status).unwrap(), body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn finding_1_a_client_cannot_take_the_hub_token_or_poison_the_model_cache() {
    let hub = FileServer::start().await;
    hub.add("acme/tiny", "tiny.gguf", vec![7u8; 50_000]);
    let evil = FileServer::start().await;
    evil.add("acme/tiny", "tiny.gguf", b"attacker's bytes".to_vec());
    let node = NodeProcess::start(&format!(
        "[llm]\nhf_endpoint = {:?}\nhf_token = \"hf_operator_secret\"\n",
        hub.url
    ))
    .await;
    let stolen = run(
        &node,
        &job(
            "steal",
            "model_download",
            json!({"model": "acme/tiny", "file": "tiny.gguf", "endpoint": evil.url}),
        ),
    )
    .await;
    assert_eq!(code(&stolen), ("failed", "POLICY_DENIED"), "{stolen}");
    assert!(evil.requests().is_empty(), "the attacker's hub saw nothing");

    let honest = run(
        &node,
        &job(
            "honest",
            "model_download",
            json!({"model": "acme/tiny", "file": "tiny.gguf"}),
        ),
    )
    .await;
    assert_eq!(honest["state"], "finished", "{honest}");
    let out = node.get_json("/jobs/honest/result").await;
    assert_eq!(out["cached"], false, "nothing was planted in the cache");
    assert_eq!(
        std::fs::read(out["path"].as_str().unwrap()).unwrap(),
        vec![7u8; 50_000]
    );
}

#[tokio::test]
async fn finding_2_jobs_cannot_write_the_artifact_root_nor_redirect_outputs_by_symlink() {
    let artifacts = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cp = TestControlPlane::start().await;
    let node = NodeProcess::start_agent(
        &cp.url(),
        "w-artifacts",
        &format!(
            "[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 200\n",
            artifacts.path().display().to_string()
        ),
    )
    .await;

    // (a) The artifact root is never mounted writable.
    let mut rewrite = job(
        "rewrite",
        "tool_execution",
        json!({"tool": "file_write", "path": "/artifacts/victim/t/output.json", "content": "{}"}),
    );
    rewrite["runtime"]["mounts"] =
        json!([{"source": "artifacts", "target": "/artifacts", "mode": "rw"}]);
    let (status, body) = node.post_json("/jobs", &rewrite).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("POLICY_DENIED")),
        "{body}"
    );

    // (b) A link planted in the root is not followed when outputs are written.
    std::os::unix::fs::symlink(outside.path(), artifacts.path().join("victimjob")).unwrap();
    cp.submit([TaskDef::new(
        "victimjob",
        "t1",
        "aggregation",
        json!({"items_json": "[{\"n\":1}]"}),
    )]);
    cp.wait_done(1, WAIT).await;
    let written: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(
        written.is_empty(),
        "nothing was written through the link: {written:?}"
    );
}

#[tokio::test]
async fn finding_3_model_downloads_cannot_reach_internal_pages_nor_echo_them() {
    let internal = Sink::start(404, "SECRET-INTERNAL-PAGE: db_password=hunter2").await;
    let page = format!("{}/admin", internal.url);
    let url_download = |id: &str| {
        job(
            id,
            "model_download",
            json!({"model": "org/m", "source": "url", "url": page, "sha256": "0".repeat(64)}),
        )
    };

    let default = NodeProcess::start("").await;
    let done = run(&default, &url_download("default")).await;
    assert_eq!(code(&done), ("failed", "POLICY_DENIED"), "{done}");

    let any_host = NodeProcess::start("[llm]\ndownload_allowlist = [\"*\"]\n").await;
    let done = run(&any_host, &url_download("wildcard")).await;
    assert_eq!(code(&done), ("failed", "POLICY_DENIED"), "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal address"),
        "{done}"
    );
    assert!(internal.seen().is_empty(), "no request reached it");

    let named = NodeProcess::start(&format!(
        "[llm]\ndownload_allowlist = [\"{}/\"]\n",
        internal.url
    ))
    .await;
    let done = run(&named, &url_download("named")).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        !done.to_string().contains("SECRET-INTERNAL-PAGE"),
        "the page is never echoed: {done}"
    );
}

#[tokio::test]
async fn finding_4_userinfo_cannot_disguise_a_callbacks_host() {
    let allowed = Sink::start(200, "").await;
    let target = Sink::start(200, "").await;
    let node = NodeProcess::start(&format!(
        "[vera]\ncallback_allowlist = [{:?}]\n",
        allowed.url
    ))
    .await;
    let disguised = format!(
        "{}@{}/x",
        allowed.url,
        target.url.trim_start_matches("http://")
    );
    let (status, body) = node
        .post_json("/execute", &callback_task("disguised", &disguised))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_CALLBACK")),
        "{body}"
    );
    assert!(target.seen().is_empty());
}

#[tokio::test]
async fn finding_5_callbacks_do_not_follow_redirects() {
    let elsewhere = Sink::start(200, "").await;
    let to = format!("{}/stolen", elsewhere.url);
    let redirect = axum::Router::new().route(
        "/hooks/done",
        post(move || {
            let to = to.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    let allowed = Sink::with(redirect, 200, "").await;
    let node = NodeProcess::start(&format!(
        "[vera]\ncallback_allowlist = [{:?}]\ncallback_attempts = 2\ncallback_backoff_ms = 50\n",
        allowed.url
    ))
    .await;
    let url = format!("{}/hooks/done", allowed.url);
    assert_eq!(
        node.post_json("/execute", &callback_task("cb", &url))
            .await
            .0,
        200
    );
    let status = callback_settled(&node, "cb").await;
    assert_eq!(status["callback"]["state"], "failed", "{status}");
    assert!(elsewhere.seen().is_empty(), "the redirect was not followed");
}

#[tokio::test]
async fn finding_6_web_pages_cannot_submit_jobs_nor_rebind_the_api() {
    let node = NodeProcess::start("").await;
    let client = reqwest::Client::new();
    let body = wasm_job("csrf", "builtin:aggregation", json!({"items_json": "[]"})).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = client
            .post(node.at("/jobs"))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{content_type}");
    }
    let rebound = client
        .get(node.at("/jobs"))
        .header(
            "host",
            format!("evil.example:{}", node.url.rsplit(':').next().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let error: Value = rebound.json().await.unwrap();
    assert_eq!(error["error"]["code"], "FORBIDDEN_HOST");
    assert_eq!(
        node.get_json("/jobs/csrf").await["error"]["code"],
        "JOB_NOT_FOUND",
        "no job was created"
    );
}

#[tokio::test]
async fn finding_7_goliat_configs_are_not_mountable_by_api_clients() {
    let mut dashboard = TestDashboard::new();
    dashboard.serve().await;
    let config = format!(
        "[policy]\ncomponent_roots = [{:?}]\n[goliat]\nheartbeat_seconds = 1\npoll_seconds = 1\n[goliat.job]\nmode = \"wasm\"\ncomponent = {:?}\n",
        test_guest_dir().display().to_string(),
        test_guest("command").display().to_string()
    );
    let node = NodeProcess::start_goliat(&dashboard.url(), &config).await;
    dashboard.assign("c1.json", "{\"secret\": \"dashboard-config\"}", 1);
    dashboard.wait_reports(1, WAIT).await;
    let goliat = node.data_dir.path().join("goliat");
    let mut read = wasm_job(
        "snoop",
        "hostile",
        json!({"action": "read", "path": "/cfg"}),
    );
    read["runtime"]["mounts"] =
        json!([{"source": goliat.display().to_string(), "target": "/cfg", "mode": "rw"}]);
    let (status, body) = node.post_json("/jobs", &read).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("POLICY_DENIED")),
        "{body}"
    );

    let mut smuggled = read.clone();
    smuggled["job_id"] = json!("smuggled");
    smuggled["runtime"]["mounts"] = json!([]);
    smuggled["runtime"]["node_mounts"] =
        json!([{"source": goliat.display().to_string(), "target": "/cfg"}]);
    let (status, body) = node.post_json("/jobs", &smuggled).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_JOB")),
        "{body}"
    );
}

#[tokio::test]
async fn finding_8_control_plane_credentials_are_never_shown() {
    let cp = TestControlPlane::start().await;
    let url = cp
        .url()
        .replacen("http://", "http://worker:cp-password-8@", 1)
        + "/?token=cp-token-8";
    let node = NodeProcess::start_agent(&url, "w-creds", "").await;
    let health = node.get_json("/health").await.to_string();
    let info = node.get_json("/info").await.to_string();
    for shown in [&health, &info, &node.log()] {
        assert!(
            !shown.contains("cp-password-8") && !shown.contains("cp-token-8"),
            "{shown}"
        );
    }
    assert!(
        health.contains("***"),
        "the URL is shown redacted: {health}"
    );
}

#[tokio::test]
async fn finding_9_distinct_splai_ids_never_share_an_artifact() {
    let artifacts = tempfile::tempdir().unwrap();
    let cp = TestControlPlane::start().await;
    let _node = NodeProcess::start_agent(
        &cp.url(),
        "w-ids",
        &format!(
            "[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 200\n",
            artifacts.path().display().to_string()
        ),
    )
    .await;
    cp.submit([
        TaskDef::new(
            "a/b",
            "c/d",
            "aggregation",
            json!({"items_json": "[{\"who\":\"first\"}]"}),
        ),
        TaskDef::new(
            "a",
            "b/c/d",
            "aggregation",
            json!({"items_json": "[{\"who\":\"second\"}]"}),
        ),
    ]);
    cp.wait_done(2, WAIT).await;
    let completed = cp.completed();
    assert_eq!(completed.len(), 2, "failed: {:?}", cp.failed());
    let uris: Vec<&String> = completed.values().map(|r| &r.output_artifact_uri).collect();
    assert_ne!(uris[0], uris[1], "two tasks, two artifacts");
    for report in completed.values() {
        let path = artifacts.path().join(
            report
                .output_artifact_uri
                .strip_prefix("artifact://")
                .unwrap(),
        );
        let output = std::fs::read_to_string(&path).unwrap();
        let who = if report.job_id == "a/b" {
            "first"
        } else {
            "second"
        };
        assert!(output.contains(who), "{}: {output}", path.display());
    }
}

#[tokio::test]
async fn finding_10_a_mount_swapped_for_a_link_after_its_check_is_not_followed() {
    let gate = Gate::new();
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "OUTSIDE-THE-ROOTS").unwrap();
    let dir = root.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), "inside").unwrap();
    let node = NodeProcess::start(&format!(
        "[policy]\ncomponent_roots = [{:?}]\nmount_roots = [{}, {:?}]\n[scheduler]\nmax_concurrent_jobs = 1\n",
        test_guest_dir().display().to_string(),
        gate.mount()[0]["source"],
        root.path().display().to_string()
    ))
    .await;
    node.post_json("/jobs", &gate.job("blocker")).await;
    wait_state(&node, "blocker", "running").await;
    let mut read = wasm_job(
        "swapped",
        "hostile",
        json!({"action": "read", "path": "/m/secret.txt"}),
    );
    read["runtime"]["mounts"] = json!([{"source": dir.display().to_string(), "target": "/m"}]);
    let (status, body) = node.post_json("/jobs", &read).await;
    assert_eq!(
        status, 200,
        "checked and accepted while it is a directory: {body}"
    );
    std::fs::rename(&dir, root.path().join("dir.old")).unwrap();
    std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
    gate.open();
    let done = wait_terminal(&reqwest::Client::new(), &node, "swapped", WAIT).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        !done.to_string().contains("OUTSIDE-THE-ROOTS"),
        "the guest read through the link: {done}"
    );
}

#[tokio::test]
async fn finding_11_file_urls_fail_at_once_as_invalid_input() {
    let node = NodeProcess::start("[llm]\ndownload_allowlist = [\"*\"]\n").await;
    let done = run(
        &node,
        &job(
            "file",
            "model_download",
            json!({"model": "org/m", "source": "url", "url": "file:///etc/passwd", "sha256": "0".repeat(64)}),
        ),
    )
    .await;
    assert_eq!(code(&done), ("failed", "INVALID_INPUT"), "{done}");
    assert!(
        !done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "not retried as a broken transfer: {done}"
    );
}

#[tokio::test]
async fn finding_12_a_guest_sees_its_components_name_not_the_host_path() {
    let node = NodeProcess::start(&format!(
        "[policy]\ncomponent_roots = [{:?}]\n",
        test_guest_dir().display().to_string()
    ))
    .await;
    let done = run(
        &node,
        &wasm_job("argv", "hostile", json!({"action": "env"})),
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    let out = node.get_json("/jobs/argv/result").await;
    assert_eq!(out["args"], json!(["hostile.wasm"]), "{out}");
    assert!(
        !out.to_string()
            .contains(&test_guest_dir().display().to_string())
    );
}

#[tokio::test]
async fn a_planted_secret_shows_up_nowhere() {
    const SECRET: &str = "planted-secret-5f2c";
    let hub = Sink::with(
        axum::Router::new().route("/", get(|| async { "ok" })),
        500,
        "",
    )
    .await;
    let cp = TestControlPlane::start().await;
    let config = format!(
        "[llm]\nhf_endpoint = {hub:?}\nhf_token = \"hf-{SECRET}\"\n[llm.backends.ollama]\nurl = \"http://user:{SECRET}@127.0.0.1:9/\"\n\
         [control_plane]\ntoken = \"cp-{SECRET}\"\n",
        hub = hub.url
    );
    let url = cp
        .url()
        .replacen("http://", &format!("http://w:{SECRET}@"), 1);
    let node = NodeProcess::start_agent(&url, "w-secret", &config).await;
    let failed = run(
        &node,
        &job(
            "dl",
            "model_download",
            json!({"model": "acme/none", "file": "x.gguf"}),
        ),
    )
    .await;
    let generation = run(
        &node,
        &job(
            "gen",
            "llm_inference",
            json!({"prompt": "hi", "model": "llama3.2"}),
        ),
    )
    .await;
    let data = node.data_dir.path().to_path_buf();
    let config_file = data.join("node.toml");
    let shown_config = wasmnode(
        &data,
        &["--config", config_file.to_str().unwrap(), "config"],
    );
    assert!(shown_config.status.success(), "{}", stderr(&shown_config));
    let places = [
        ("/health", node.get_json("/health").await.to_string()),
        ("/info", node.get_json("/info").await.to_string()),
        ("/metrics", node.get_text("/metrics").await),
        ("download error", failed.to_string()),
        ("generation error", generation.to_string()),
        ("wasmnode config", stdout(&shown_config)),
        ("log", node.log()),
    ];
    for (place, text) in &places {
        assert!(!text.contains(SECRET), "{place} shows the secret: {text}");
    }
    assert!(
        stdout(&shown_config).contains("***"),
        "secrets are masked, not dropped"
    );
}
