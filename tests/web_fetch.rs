//! Outbound HTTP for tools, end to end: the built-in `web_fetch` (a
//! `wasi:http` component like any plugin) reaches the hosts the operator
//! grants and nothing else; every hop is checked after DNS; bodies are
//! capped.

use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::web::{BIG_BYTES, WebSite, fetch_job};
use wasmnode_e2e::{NodeProcess, json as stdout_json, stderr, wait_terminal, wasmnode};

const WAIT: Duration = Duration::from_secs(120);

/// Submits `args` to `web_fetch` and waits for the job to end.
async fn fetch(node: &NodeProcess, id: &str, args: Value) -> Value {
    let (status, body) = node.post_json("/jobs", &fetch_job(id, args)).await;
    assert_eq!(status, 200, "{body}");
    wait_terminal(&reqwest::Client::new(), node, id, WAIT).await
}

#[tokio::test]
async fn a_granted_host_is_fetched_with_redirects_followed_and_html_reduced_to_text() {
    let site = WebSite::start().await;
    let node = NodeProcess::start(&format!(
        "[tools.web_fetch]\nallowed_hosts = [\"{}\"]\n",
        site.authority
    ))
    .await;
    let done = fetch(&node, "page", json!({"url": site.url("/moved")})).await;
    assert_eq!(done["state"], "finished", "{done}");
    let page = node.get_json("/jobs/page/result").await;
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["url"], site.url("/page"), "the redirect was followed");
    let text = page["text"].as_str().unwrap();
    assert!(
        text.contains("Hello") && text.contains("Fish & chips"),
        "{text}"
    );
    assert!(!text.contains('<') && !text.contains("alert"), "{text}");

    let done = fetch(
        &node,
        "post",
        json!({"url": site.url("/echo"), "method": "POST", "body": "ping",
               "headers": {"content-type": "text/plain"}}),
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(node.get_json("/jobs/post/result").await["text"], "ping");

    let done = fetch(
        &node,
        "cut",
        json!({"url": site.url("/big"), "max_bytes": 1000}),
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    let cut = node.get_json("/jobs/cut/result").await;
    assert_eq!(cut["bytes"], 1000, "{}", cut["bytes"]);
    assert_eq!(cut["truncated"], true);
}

#[tokio::test]
async fn hosts_not_granted_are_refused_with_policy_denied_before_any_connection() {
    let granted = WebSite::start().await;
    let other = WebSite::start().await;
    let node = NodeProcess::start(&format!(
        "[tools.web_fetch]\nallowed_hosts = [\"{}\"]\n",
        granted.authority
    ))
    .await;
    let done = fetch(&node, "other", json!({"url": other.url("/page")})).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "POLICY_DENIED", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&other.authority) && message.contains("allowed_hosts"),
        "the refusal names the host and the setting: {message}"
    );
    assert_eq!(other.hits(), 0, "a refused request never reaches the host");

    let done = fetch(&node, "away", json!({"url": granted.url("/away")})).await;
    assert_eq!(
        done["error"]["code"], "POLICY_DENIED",
        "a redirect to a host not granted is refused like a first request: {done}"
    );
    assert_eq!(granted.hits(), 1, "only the first hop was sent");
    let job = node.get_json("/jobs/away").await;
    assert!(
        job["stderr"]
            .as_str()
            .unwrap()
            .contains("[DENIED wasmnode] outbound HTTP to localhost:"),
        "the refusal is a line of the job's stderr: {job}"
    );

    let ungranted = NodeProcess::start("").await;
    let done = fetch(&ungranted, "none", json!({"url": granted.url("/page")})).await;
    assert_eq!(
        done["error"]["code"], "POLICY_DENIED",
        "without a grant a tool has no network at all: {done}"
    );
    assert_eq!(granted.hits(), 1);
}

#[tokio::test]
async fn a_granted_name_that_resolves_to_loopback_needs_private_addresses_allowed() {
    let site = WebSite::start().await;
    let by_name = format!("http://localhost:{}/page", site.port);
    let strict = NodeProcess::start(&format!(
        "[tools.web_fetch]\nallowed_hosts = [\"localhost:{}\"]\n",
        site.port
    ))
    .await;
    let done = fetch(&strict, "strict", json!({"url": by_name})).await;
    assert_eq!(done["error"]["code"], "POLICY_DENIED", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not a public address") && message.contains("allow_private_addresses"),
        "{message}"
    );
    assert_eq!(site.hits(), 0, "checked after DNS, before connecting");

    let open = NodeProcess::start(&format!(
        "[tools.web_fetch]\nallowed_hosts = [\"localhost:{}\"]\nallow_private_addresses = true\n",
        site.port
    ))
    .await;
    let done = fetch(&open, "open", json!({"url": by_name})).await;
    assert_eq!(done["state"], "finished", "{done}");
}

#[tokio::test]
async fn responses_over_the_operators_cap_and_requests_past_its_count_fail() {
    let site = WebSite::start().await;
    let node = NodeProcess::start(&format!(
        "[tools.web_fetch]\nallowed_hosts = [\"{}\"]\n[tools.web_fetch.http]\nmax_response_bytes = 4096\nmax_requests = 1\n",
        site.authority
    ))
    .await;
    let done = fetch(&node, "hops", json!({"url": site.url("/moved")})).await;
    assert_eq!(done["error"]["code"], "POLICY_DENIED", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 1 requests in one task"),
        "a redirect hop counts as a request: {done}"
    );
    let done = fetch(
        &node,
        "big",
        json!({"url": site.url("/big"), "max_bytes": BIG_BYTES}),
    )
    .await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "NON_ZERO_EXIT", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds limit: 4096 bytes"),
        "{done}"
    );
    let job = node.get_json("/jobs/big").await;
    assert!(
        job["stderr"]
            .as_str()
            .unwrap()
            .contains("[LIMIT wasmnode] the response body for 127.0.0.1:")
            && job["stderr"]
                .as_str()
                .unwrap()
                .contains("max_response_bytes = 4096"),
        "the job's stderr names the setting: {job}"
    );
}

#[tokio::test]
async fn tool_run_grants_hosts_with_allow_host_and_config_errors_name_the_entry() {
    let site = WebSite::start().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_path_buf();
    let url = site.url("/page");
    let args = json!({"url": url}).to_string();
    let authority = site.authority.clone();
    let (granted, refused) = tokio::task::spawn_blocking(move || {
        let granted = wasmnode(
            &data_dir,
            &[
                "tool",
                "run",
                "web_fetch",
                "--allow-host",
                &authority,
                "--args",
                &args,
            ],
        );
        let refused = wasmnode(&data_dir, &["tool", "run", "web_fetch", "--args", &args]);
        (granted, refused)
    })
    .await
    .unwrap();
    assert!(granted.status.success(), "{}", stderr(&granted));
    assert_eq!(stdout_json(&granted)["status"], 200);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("POLICY_DENIED"),
        "{}",
        stderr(&refused)
    );

    let config = data.path().join("bad.toml");
    std::fs::write(
        &config,
        "[tools.web_fetch]\nallowed_hosts = [\"https://example.com/\"]\n",
    )
    .unwrap();
    let out = wasmnode(
        data.path(),
        &["--config", config.to_str().unwrap(), "config"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("[tools.web_fetch] allowed host `https://example.com/`"),
        "{}",
        stderr(&out)
    );
}
