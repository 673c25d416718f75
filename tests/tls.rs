//! TLS on the real node, against every kind of peer it talks to (model
//! backends, hub and URL downloads, callbacks, SPLAI and GOLIAT control
//! planes) served over HTTPS with certificates of a private CA the node
//! trusts through `tls.ca_file`: a certificate it does not trust fails at
//! once, is never retried and says how to fix it; the node presents its
//! client certificate to a control plane that asks; plain http beyond this
//! machine needs the operator's consent; and the node's own API is served
//! over HTTPS.

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmnode_e2e::control_plane::{TaskDef, TestControlPlane};
use wasmnode_e2e::files::FileServer;
use wasmnode_e2e::goliat::{TestDashboard, command_config};
use wasmnode_e2e::ollama::{FakeOllama, WORDS};
use wasmnode_e2e::tls::{TestCa, TlsFront};
use wasmnode_e2e::web::{WebSite, fetch_job};
use wasmnode_e2e::{NodeProcess, callback_settled, callback_task, stderr, wait_terminal, wasmnode};

const WAIT: Duration = Duration::from_secs(60);

fn trusting(ca: &TestCa) -> String {
    format!(
        "[tls]\nca_file = {:?}\n",
        ca.ca_file().display().to_string()
    )
}

fn generation(id: &str) -> Value {
    json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "llm_inference", "payload": {"prompt": "Why?", "model": "llama3.2", "max_tokens": "8"}},
        "runtime": {"mode": "auto"}})
}

fn ollama_at(url: &str) -> String {
    format!("[llm]\nconnect_retries = 3\n[llm.backends.ollama]\nurl = {url:?}\n")
}

#[tokio::test]
async fn a_model_backend_over_https_is_trusted_through_the_ca_file() {
    let ca = TestCa::new();
    let ollama = FakeOllama::start(&["llama3.2:latest"], false).await;
    let front = TlsFront::start(&ca.issue("ollama"), &ollama.url).await;
    let node = NodeProcess::start(&format!("{}{}", trusting(&ca), ollama_at(&front.url))).await;
    let client = reqwest::Client::new();
    let (status, body) = node.post_json("/jobs", &generation("gen")).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &node, "gen", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    let out = node.get_json("/jobs/gen/result").await;
    assert_eq!(out["text"], WORDS.concat());
    assert!(front.handshakes() > 0);
}

#[tokio::test]
async fn an_untrusted_model_backend_fails_at_once_without_retries() {
    let ca = TestCa::new();
    let ollama = FakeOllama::start(&["llama3.2:latest"], false).await;
    let front = TlsFront::start(&ca.issue("ollama"), &ollama.url).await;
    let node = NodeProcess::start(&ollama_at(&front.url)).await;
    let client = reqwest::Client::new();
    let before = front.connections();
    node.post_json("/jobs", &generation("gen")).await;
    let done = wait_terminal(&client, &node, "gen", WAIT).await;
    assert_eq!(
        (done["state"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("POLICY_DENIED")),
        "{done}"
    );
    let message = done["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("tls.ca_file"),
        "says how to fix it: {message}"
    );
    assert_eq!(
        front.connections() - before,
        1,
        "one attempt, not the {} connection retries",
        3
    );
    assert_eq!(front.handshakes(), 0);
    assert!(ollama.calls().is_empty(), "nothing reached the backend");
}

fn download(id: &str, payload: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "model_download", "payload": payload}, "runtime": {"mode": "auto"}})
}

#[tokio::test]
async fn model_downloads_over_https_from_the_hub_and_from_urls() {
    let ca = TestCa::new();
    let files = FileServer::start().await;
    let model = vec![42u8; 100_000];
    let sha: String = sha2::Sha256::digest(&model)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    files.add("acme/tiny", "tiny.gguf", model.clone());
    let front = TlsFront::start(&ca.issue("hub"), &files.url).await;
    let node = NodeProcess::start(&format!(
        "{}[llm]\nhf_endpoint = {:?}\ndownload_allowlist = [\"{}/\"]\n",
        trusting(&ca),
        front.url,
        front.url
    ))
    .await;
    let client = reqwest::Client::new();

    node.post_json(
        "/jobs",
        &download("hub", json!({"model": "acme/tiny", "file": "tiny.gguf"})),
    )
    .await;
    let done = wait_terminal(&client, &node, "hub", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    let out = node.get_json("/jobs/hub/result").await;
    assert_eq!(std::fs::read(out["path"].as_str().unwrap()).unwrap(), model);

    let url = format!("{}/acme/tiny/resolve/main/tiny.gguf", front.url);
    node.post_json(
        "/jobs",
        &download(
            "url",
            json!({"model": "acme/copy", "source": "url", "url": url, "sha256": sha}),
        ),
    )
    .await;
    let done = wait_terminal(&client, &node, "url", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    assert!(front.handshakes() >= 2);
}

#[tokio::test]
async fn a_goliat_dashboard_over_https_is_served_with_the_ca_file() {
    let ca = TestCa::new();
    let mut dashboard = TestDashboard::new();
    dashboard.serve().await;
    let front = TlsFront::start(&ca.issue("dashboard"), &dashboard.url()).await;
    let config = format!("{}{}", trusting(&ca), command_config());
    let _node = NodeProcess::start_goliat(&front.url, &config).await;
    dashboard.assign("c1.json", "{\"shard\": \"one\"}", 3);
    dashboard.wait_reports(1, WAIT).await;
    assert_eq!(dashboard.reports()[0]["status"], "completed");
}

#[tokio::test]
async fn the_node_presents_its_client_certificate_to_the_control_plane() {
    let ca = TestCa::new();
    let cp = TestControlPlane::start().await;
    let front = TlsFront::start_mutual(&ca.issue("cp"), &cp.url(), &ca).await;
    let node_id = ca.issue("node");
    let artifacts = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 200\nclient_cert = {:?}\nclient_key = {:?}\n",
        trusting(&ca),
        artifacts.path().display().to_string(),
        node_id.cert.display().to_string(),
        node_id.key.display().to_string()
    );
    let _node = NodeProcess::start_agent(&front.url, "w-mtls", &config).await;
    cp.submit([TaskDef::new(
        "job1",
        "a1",
        "aggregation",
        json!({"items_json": "[]"}),
    )]);
    cp.wait_done(1, WAIT).await;
    assert_eq!(cp.completed().len(), 1, "failed: {:?}", cp.failed());

    let anonymous = NodeProcess::start_agent(&front.url, "w-anonymous", &trusting(&ca)).await;
    let deadline = Instant::now() + WAIT;
    while !anonymous.get_json("/health").await["control_plane"]["last_error"].is_string() {
        assert!(
            Instant::now() < deadline,
            "a node without a certificate got in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!cp.registrations().contains_key("w-anonymous"));
}

/// A callback receiver answering 200 to every POST.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hooks/done",
        post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received)
}

#[tokio::test]
async fn callbacks_over_https_are_delivered_to_trusted_targets_only() {
    let ca = TestCa::new();
    let (plain, received) = receiver().await;
    let front = TlsFront::start(&ca.issue("hooks"), &plain).await;
    let vera =
        "[vera]\ncallback_allowlist = [\"https://127.0.0.1:*\"]\ncallback_backoff_ms = 100\n";

    let node = NodeProcess::start(&format!("{}{vera}", trusting(&ca))).await;
    let url = format!("{}/hooks/done", front.url);
    assert_eq!(
        node.post_json("/execute", &callback_task("ok", &url))
            .await
            .0,
        200
    );
    let status = callback_settled(&node, "ok").await;
    assert_eq!(status["callback"]["state"], "delivered", "{status}");
    assert_eq!(received.lock().unwrap()[0]["task_id"], "ok");

    let untrusting = NodeProcess::start(vera).await;
    let before = front.connections();
    assert_eq!(
        untrusting
            .post_json("/execute", &callback_task("no", &url))
            .await
            .0,
        200
    );
    let status = callback_settled(&untrusting, "no").await;
    assert_eq!(
        (
            status["callback"]["state"].as_str(),
            status["callback"]["attempts"].as_u64()
        ),
        (Some("failed"), Some(1)),
        "an untrusted target is not retried: {status}"
    );
    let error = status["callback"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("tls.ca_file"), "{error}");
    assert_eq!(front.connections() - before, 1);
    assert_eq!(received.lock().unwrap().len(), 1, "nothing more arrived");
}

#[tokio::test]
async fn a_splai_control_plane_over_https_is_served_with_the_ca_file() {
    let ca = TestCa::new();
    let cp = TestControlPlane::start().await;
    let front = TlsFront::start(&ca.issue("cp"), &cp.url()).await;
    let artifacts = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[node]\nartifact_root = {:?}\n[control_plane]\npoll_millis = 200\n",
        trusting(&ca),
        artifacts.path().display().to_string()
    );
    let _node = NodeProcess::start_agent(&front.url, "w-tls", &config).await;
    cp.submit([TaskDef::new(
        "job1",
        "a1",
        "aggregation",
        json!({"items_json": "[{\"owner\":\"ops\"}]"}),
    )]);
    cp.wait_done(1, WAIT).await;
    assert_eq!(cp.completed().len(), 1, "failed: {:?}", cp.failed());
}

#[tokio::test]
async fn an_untrusted_control_plane_is_reported_on_health_and_gets_nothing() {
    let ca = TestCa::new();
    let cp = TestControlPlane::start().await;
    let front = TlsFront::start(&ca.issue("cp"), &cp.url()).await;
    let node = NodeProcess::start_agent(&front.url, "w-untrusting", "").await;
    let deadline = Instant::now() + WAIT;
    let health = loop {
        let health = node.get_json("/health").await;
        if health["control_plane"]["last_error"].is_string() {
            break health;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["control_plane"]["state"], "disconnected", "{health}");
    let error = health["control_plane"]["last_error"].as_str().unwrap();
    assert!(error.contains("tls.ca_file"), "{error}");
    assert_eq!(front.handshakes(), 0);
    assert!(cp.registrations().is_empty(), "nothing reached it");
}

#[test]
fn a_plain_http_control_plane_beyond_this_machine_needs_consent() {
    let data = tempfile::tempdir().unwrap();
    let out = wasmnode(
        data.path(),
        &["agent", "--control-plane", "http://cp.example.com:8080"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("control_plane.allow_plain_http"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_api_is_served_over_https_with_its_certificate() {
    let ca = TestCa::new();
    let api = ca.issue("api");
    let node = NodeProcess::start_https(&format!(
        "[api]\ntls_cert = {:?}\ntls_key = {:?}\n",
        api.cert.display().to_string(),
        api.key.display().to_string()
    ))
    .await;
    assert!(node.url.starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.certificate())
        .build()
        .unwrap();
    let health = client.get(node.at("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, body) = {
        let response = client
            .post(node.at("/jobs"))
            .json(&json!({"protocol_version": 1, "job_id": "j",
                "task": {"type": "aggregation", "payload": {"items_json": "[]"}}, "runtime": {"mode": "auto"}}))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "{body}");

    let stranger = reqwest::Client::new().get(node.at("/health")).send().await;
    assert!(
        stranger.is_err(),
        "a client without the CA cannot verify it"
    );
    let plain = reqwest::Client::new()
        .get(node.at("/health").replacen("https://", "http://", 1))
        .send()
        .await;
    assert!(plain.is_err(), "plain http is not answered");
}

#[tokio::test]
async fn a_tools_https_requests_trust_the_ca_file_like_every_other_client() {
    let ca = TestCa::new();
    let site = WebSite::start().await;
    let front = TlsFront::start(&ca.issue("site"), &site.url("")).await;
    let authority = front.url.trim_start_matches("https://").to_string();
    let grant = format!("[tools.web_fetch]\nallowed_hosts = [\"{authority}\"]\n");
    let fetch = |id: &str| fetch_job(id, json!({"url": format!("{}/page", front.url)}));
    let client = reqwest::Client::new();

    let trusting_node = NodeProcess::start(&format!("{}{grant}", trusting(&ca))).await;
    let (status, body) = trusting_node.post_json("/jobs", &fetch("trusted")).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &trusting_node, "trusted", WAIT).await;
    assert_eq!(done["state"], "finished", "{done}");
    let page = trusting_node.get_json("/jobs/trusted/result").await;
    assert_eq!(page["status"], 200, "{page}");

    let stranger = NodeProcess::start(&grant).await;
    let (status, body) = stranger.post_json("/jobs", &fetch("untrusted")).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_terminal(&client, &stranger, "untrusted", WAIT).await;
    assert_eq!(
        done["error"]["code"], "NON_ZERO_EXIT",
        "without the CA the certificate is not accepted: {done}"
    );
}
