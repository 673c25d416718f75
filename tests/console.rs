//! The web console in a real browser (headless Chromium through
//! chromedriver) against the real binary: signing in with the API key,
//! the node page, the job list and its filter, a job's result, receipt and
//! document, a running job's live log and its Cancel button, the Submit
//! form for task types and tools, signing out.

use reqwest::Client;
use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::browser::Browser;
use wasmnode_e2e::{Gate, NodeProcess, wasm_job};

const KEY: &str = "console-test-key";
const WAIT: Duration = Duration::from_secs(120);
const SUBMIT: &str = "#submit-form button[type=submit]";

/// `GET path` with the key.
async fn get(node: &NodeProcess, path: &str) -> Value {
    Client::new()
        .get(node.at(path))
        .header("X-API-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn submit(node: &NodeProcess, job: &Value) {
    let response = Client::new()
        .post(node.at("/jobs"))
        .header("X-API-Key", KEY)
        .json(job)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Polls the API until `job_id` is in `state`.
async fn until_state(node: &NodeProcess, job_id: &str, state: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let job = get(node, &format!("/jobs/{job_id}")).await;
        if job["state"] == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sign_in(browser: &Browser, key: &str) {
    browser.type_in("#login #key", key).await;
    browser.click("#login button[type=submit]").await;
}

fn keyed(extra: &str) -> String {
    format!("[api]\napi_key = \"{KEY}\"\n{extra}")
}

#[tokio::test]
async fn an_operator_signs_in_watches_jobs_and_cancels_one_in_the_browser() {
    let gate = Gate::new();
    let node = NodeProcess::start(&keyed(&gate.policy(""))).await;
    let echo = json!({"action": "echo", "n": 41});
    submit(&node, &wasm_job("done-1", "hostile", echo)).await;
    until_state(&node, "done-1", "finished").await;
    submit(&node, &gate.job("blocked-1")).await;
    until_state(&node, "blocked-1", "running").await;

    let browser = Browser::start().await;
    browser.open(&node.at("/")).await;

    // Without the key the console asks for it, and says when one is wrong.
    sign_in(&browser, "not-the-key").await;
    browser
        .wait_text("#login-error", "That key was refused")
        .await;
    sign_in(&browser, KEY).await;
    let info = get(&node, "/info").await;
    let worker = info["worker_id"].as_str().unwrap();
    browser.wait_text("#worker-id", worker).await;
    browser.wait_text("#node", "Limits and policy").await;
    browser.wait_text("#node", "256 MiB (at most").await;
    browser.find("#nav a[href='/openapi.json']").await;

    // The job list, newest first, and its state filter.
    browser.open(&node.at("/#/jobs")).await;
    let rows = browser.wait_text("#job-rows", "done-1").await;
    let (blocked, done) = (rows.find("blocked-1"), rows.find("done-1"));
    assert!(blocked < done, "newest first: {rows}");
    browser.choose("#filter-state", "running").await;
    browser.wait_gone("tr[data-job='done-1']").await;
    browser.wait_text("#job-rows", "blocked-1").await;

    // A finished job: its result, its receipt, the document it was given.
    browser.open(&node.at("/#/jobs/done-1")).await;
    browser.wait_text("#job-state", "finished").await;
    browser.wait_text("#result-output", "41").await;
    browser.wait_text("#job-receipt", "Download receipt").await;
    let fingerprint = info["identity"]["fingerprint"].as_str().unwrap();
    browser.wait_text("#job-receipt", fingerprint).await;
    browser.wait_text("#job-spec", "\"action\": \"echo\"").await;
    browser.wait_text("#job-summary", "CPU time").await;

    // A running job: its live log, then Cancel.
    browser.open(&node.at("/#/jobs/blocked-1")).await;
    browser.wait_text("#job-state", "running").await;
    browser.wait_text("#job-log", "running").await;
    browser.click("#cancel").await;
    browser.wait_text("#job-state", "cancelled").await;
    until_state(&node, "blocked-1", "cancelled").await;
    browser.wait_gone("#cancel").await;

    // Signing out forgets the key, also across a reload.
    browser.click("#sign-out").await;
    browser.find("#login").await;
    browser.client.refresh().await.unwrap();
    browser.find("#login").await;
    browser.wait_gone("#worker-id").await;
    browser.close().await;
}

#[tokio::test]
async fn jobs_submitted_from_the_form_run_with_the_inputs_of_their_type_or_tool() {
    let node = NodeProcess::start(&keyed("")).await;
    let browser = Browser::start().await;
    browser.open(&node.at("/#/submit")).await;
    sign_in(&browser, KEY).await;
    browser.open(&node.at("/#/submit")).await;

    // A built-in task type: its inputs come from the task-type table, and
    // a JSON input that is not JSON is refused before it is sent.
    browser.choose("#submit-type", "aggregation").await;
    browser
        .type_in("#input-items_json", "[{\"title\": \"not json")
        .await;
    browser.click(SUBMIT).await;
    browser.wait_text("#submit-error", "Not valid JSON").await;
    browser
        .type_in("#input-items_json", "[{\"title\": \"from the form\"}]")
        .await;
    browser.type_in("#submit-job-id", "formed-1").await;
    browser.click(SUBMIT).await;
    browser.wait_text("#job-state", "finished").await;
    browser.wait_text("#result-output", "from the form").await;
    let request = get(&node, "/jobs/formed-1/request").await;
    assert_eq!(request["task"]["type"], "aggregation", "{request}");

    // A tool: its arguments come from its own schema.
    browser.open(&node.at("/#/submit")).await;
    browser.choose("#submit-type", "tool_execution").await;
    browser.choose("#input-tool", "file_write").await;
    browser.type_in("#arg-path", "note.txt").await;
    browser
        .type_in("#arg-content", "written in a browser")
        .await;
    browser.type_in("#submit-job-id", "formed-2").await;
    browser.click(SUBMIT).await;
    browser.wait_text("#job-state", "finished").await;
    let request = get(&node, "/jobs/formed-2/request").await;
    assert_eq!(
        request["task"]["payload"],
        json!({"tool": "file_write", "args": {"path": "note.txt", "content": "written in a browser"}}),
        "{request}"
    );
    browser.wait_text("#job-files", "note.txt").await;
    browser.click("#job-files button").await;
    assert_eq!(
        browser.downloaded("note.txt").await,
        b"written in a browser",
        "the file the job wrote, as the browser saved it"
    );

    // A job id the node has seen for other work: its refusal is shown.
    browser.open(&node.at("/#/submit")).await;
    browser.choose("#submit-type", "retrieval").await;
    browser.type_in("#input-query", "a").await;
    browser.type_in("#input-documents", "a b").await;
    browser.type_in("#submit-job-id", "formed-1").await;
    browser.click(SUBMIT).await;
    browser.wait_text("#submit-error", "formed-1").await;
    browser.close().await;
}

#[tokio::test]
async fn the_charts_draw_the_last_hour_of_the_nodes_own_metrics() {
    let gate = Gate::new();
    let settings = format!("chart_sample_seconds = 1\n{}", gate.policy(""));
    let node = NodeProcess::start(&keyed(&settings)).await;
    for n in 0..3 {
        let id = format!("charted-{n}");
        submit(&node, &wasm_job(&id, "hostile", json!({"action": "echo"}))).await;
        until_state(&node, &id, "finished").await;
    }
    // Wait for a sample that counted the tasks: the chart shows what it has.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let history = get(&node, "/metrics/history").await;
        assert_eq!(history["interval_seconds"], 1);
        let samples = history["samples"].as_array().unwrap();
        if samples.iter().any(|s| s["duration_ms"].is_array()) {
            let last = samples.last().unwrap();
            assert!(last["rss_mb"].as_f64() > Some(1.0), "{last}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{history}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let browser = Browser::start().await;
    browser.open(&node.at("/#/charts")).await;
    sign_in(&browser, KEY).await;
    browser.open(&node.at("/#/charts")).await;
    for chart in [
        "chart-jobs",
        "chart-queue",
        "chart-duration",
        "chart-memory",
    ] {
        browser.find(&format!("#{chart} svg")).await;
    }
    browser.find("#chart-duration svg .series").await;
    browser.wait_text("#chart-duration", "p99: ").await;
    browser.wait_text("#chart-memory", "MiB").await;
    browser
        .wait_text("#charts-note", "A sample every 1 s")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy_and_can_be_turned_off() {
    let node = NodeProcess::start(&keyed("")).await;
    let page = reqwest::get(node.at("/")).await.unwrap();
    assert_eq!(page.status(), 200, "the page itself needs no key");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(page.text().await.unwrap().contains("/console/main.js"));
    let data = reqwest::get(node.at("/jobs")).await.unwrap();
    assert_eq!(data.status(), 401, "the data still needs the key");

    let off = NodeProcess::start("[api]\nconsole = false\n").await;
    let page = reqwest::get(off.at("/")).await.unwrap();
    assert_eq!(page.status(), 404);
}
