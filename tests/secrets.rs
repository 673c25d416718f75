//! Job secrets: given to the guest as environment variables, masked as
//! `***` in everything that leaves the sandbox (result, stdout, stderr,
//! events, the node's log), in plain, JSON-escaped and base64 forms, and
//! never written to the data directory.

use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::{Gate, NodeProcess, wait_terminal, wasm_job};

const WAIT: Duration = Duration::from_secs(120);
/// A quote, so its JSON-escaped form differs from the plain one.
const TOKEN: &str = "tok-\"5ecret\"-9f2c";
const OPERATOR: &str = "db-pa55word-77";

fn with_secrets(mut job: Value) -> Value {
    job["runtime"]["secrets"] = json!({"TOKEN": TOKEN, "DB": {"operator": "db"}});
    job
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir(dir) {
        if let Ok(bytes) = std::fs::read(&entry)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn secrets_reach_the_guest_and_nothing_that_leaves_the_sandbox_shows_them() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy(&format!("[secrets]\ndb = \"{OPERATOR}\"\n"))).await;
    let client = reqwest::Client::new();

    // The guest sees both as environment variables; its result shows ***.
    let env = with_secrets(wasm_job("env", "hostile", json!({"action": "env"})));
    assert_eq!(node.post_json("/jobs", &env).await.0, 200);
    let ended = wait_terminal(&client, &node, "env", WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let result = node.get_json("/jobs/env/result").await;
    let vars: Vec<(String, String)> = serde_json::from_value(result["env"].clone()).unwrap();
    assert!(vars.contains(&("TOKEN".into(), "***".into())), "{vars:?}");
    assert!(vars.contains(&("DB".into(), "***".into())), "{vars:?}");

    // Printed plain, JSON-escaped and base64-encoded: all masked, in the
    // result, the stored streams and the events.
    let reveal = with_secrets(wasm_job(
        "reveal",
        "hostile",
        json!({"action": "reveal", "var": "TOKEN"}),
    ));
    assert_eq!(node.post_json("/jobs", &reveal).await.0, 200);
    let ended = wait_terminal(&client, &node, "reveal", WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(
        node.get_json("/jobs/reveal/result").await,
        json!({"value": "***"})
    );
    let view = node.get_json("/jobs/reveal").await;
    assert_eq!(view["stdout"], "plain ***\n", "{view}");
    let stderr = view["stderr"].as_str().unwrap();
    assert!(stderr.contains(r#"json {"v":"***"}"#), "{stderr}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("k={TOKEN}"));
    assert!(
        !stderr.contains(&encoded[4..encoded.len() - 4]),
        "base64 form: {stderr}"
    );
    assert!(stderr.contains("base64 "), "{stderr}");
    let events = reqwest::get(node.at("/jobs/reveal/events"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("plain ***"), "{events}");
    assert!(!events.contains(TOKEN), "{events}");

    // The job document the node keeps and shows names the secrets only.
    let kept = node.get_json("/jobs/reveal/request").await;
    assert_eq!(kept["task"]["payload"]["action"], "reveal", "{kept}");
    assert!(kept["runtime"]["secrets"].get("TOKEN").is_some(), "{kept}");
    assert!(!kept.to_string().contains(TOKEN), "{kept}");

    // Neither value was ever written to the data directory (store, log),
    // the operator's own configuration file aside.
    let config = node.data_dir.path().join("node.toml");
    for secret in [TOKEN, OPERATOR] {
        let holding: Vec<String> = files_holding(node.data_dir.path(), secret.as_bytes())
            .into_iter()
            .filter(|f| *f != config.display().to_string())
            .collect();
        assert!(holding.is_empty(), "{secret} found in {holding:?}");
    }
}

#[tokio::test]
async fn a_given_secret_is_held_in_memory_only_and_bad_secrets_are_refused() {
    let gate = Gate::new();
    let mut node = NodeProcess::start(&gate.policy("[scheduler]\nmax_concurrent_jobs = 1\n")).await;
    let client = reqwest::Client::new();
    for (secrets, expected) in [
        (json!({"1BAD": "long-enough"}), "environment variable name"),
        (json!({"SHORT": "abc"}), "too short"),
        (json!({"OP": {"operator": "missing"}}), "does not have"),
        (json!({"W": {"withheld": true}}), "must be a value"),
    ] {
        let mut job = wasm_job("bad", "hostile", json!({"action": "echo"}));
        job["runtime"]["secrets"] = secrets;
        let (status, body) = node.post_json("/jobs", &job).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("INVALID_SECRETS")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{body}"
        );
    }

    // A job waiting behind another when the node restarts lost its given
    // secret with the restart: it fails saying so, and never runs without it.
    assert_eq!(node.post_json("/jobs", &gate.job("blocker")).await.0, 200);
    let mut waiting = wasm_job("waiting", "hostile", json!({"action": "env"}));
    waiting["runtime"]["secrets"] = json!({"TOKEN": TOKEN});
    assert_eq!(node.post_json("/jobs", &waiting).await.0, 200);
    node.crash_and_restart().await;
    gate.open();
    let ended = wait_terminal(&client, &node, "waiting", WAIT).await;
    assert_eq!(ended["state"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "INVALID_INPUT", "{ended}");
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submit the job again"),
        "{ended}"
    );
}
