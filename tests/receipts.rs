//! Signed execution receipts against the real binary: the node's identity
//! (`/info`, `wasmnode identity`), a receipt per job that ran (`GET
//! /jobs/{id}/receipt`), checked by `wasmnode receipt verify` with the
//! output and files it names, refused when one byte changes, free of secret
//! values, and kept through `kill -9` with its job.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use wasmnode_e2e::{Gate, NodeProcess, stderr, stdout, wait_state, wasm_job, wasmnode};

const WAIT: Duration = Duration::from_secs(120);
const SECRET: &str = "r3ceipt-s3cret-41";

async fn fetch(node: &NodeProcess, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(node.at(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The statement inside a receipt, unchecked.
fn statement(receipt: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(receipt).unwrap();
    let payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// `wasmnode receipt verify RECEIPT ARGS…`: exit status and what it said.
fn verify(data_dir: &Path, receipt: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["receipt", "verify", receipt.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = wasmnode(data_dir, &all);
    (
        output.status.code(),
        format!("{}{}", stdout(&output), stderr(&output)),
    )
}

#[tokio::test]
async fn a_receipt_verifies_and_a_flipped_byte_in_the_output_or_the_envelope_fails() {
    let node = NodeProcess::start("").await;
    let info = node.get_json("/info").await;
    let identity = &info["identity"];
    assert_eq!(identity["algorithm"], "ed25519", "{info}");
    let job = json!({"protocol_version": 1, "job_id": "sum",
        "task": {"type": "aggregation", "payload": {"items_json": "[{\"owner\":\"ops\"}]"}},
        "runtime": {"mode": "auto", "env": {"PLAIN": SECRET}, "secrets": {"TOKEN": SECRET}}});
    let ended = node.run_job(&job, WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");

    let dir = tempfile::tempdir().unwrap();
    let (status, receipt) = fetch(&node, "/jobs/sum/receipt").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&receipt));
    let (_, output) = fetch(&node, "/jobs/sum/result").await;
    let paths = ["receipt.json", "out.json", "node.pub.pem"].map(|n| dir.path().join(n));
    std::fs::write(&paths[0], &receipt).unwrap();
    std::fs::write(&paths[1], &output).unwrap();
    std::fs::write(&paths[2], identity["public_key"].as_str().unwrap()).unwrap();
    let (receipt_file, output_file, key) = (&paths[0], &paths[1], paths[2].to_str().unwrap());

    let other = tempfile::tempdir().unwrap();
    let (code, said) = verify(
        other.path(),
        receipt_file,
        &["--output", output_file.to_str().unwrap(), "--key", key],
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("verified: job sum finished"), "{said}");
    assert!(
        said.contains(identity["fingerprint"].as_str().unwrap()),
        "{said}"
    );
    // On the node's machine its own identity is the default key.
    let (code, said) = verify(node.data_dir.path(), receipt_file, &[]);
    assert_eq!(code, Some(0), "{said}");

    let mut flipped = output.clone();
    flipped[1] ^= 0x01;
    std::fs::write(output_file, &flipped).unwrap();
    let (code, said) = verify(
        other.path(),
        receipt_file,
        &["--output", output_file.to_str().unwrap(), "--key", key],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("output.json does not match the receipt"),
        "{said}"
    );

    let mut envelope: Value = serde_json::from_slice(&receipt).unwrap();
    let mut payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let at = payload.len() / 2;
    payload[at] ^= 0x01;
    envelope["payload"] = json!(BASE64.encode(&payload));
    std::fs::write(receipt_file, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let (code, said) = verify(other.path(), receipt_file, &["--key", key]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("signature does not match"), "{said}");

    // With no key and no node identity here, the command says what to give.
    let (code, said) = verify(other.path(), receipt_file, &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("--key"), "{said}");

    let signed = statement(&receipt);
    let text = signed.to_string();
    assert!(
        !text.contains(SECRET),
        "a secret value in the receipt: {text}"
    );
    let predicate = &signed["predicate"];
    assert_eq!(predicate["input"]["env"], json!(["PLAIN"]), "{predicate}");
    assert_eq!(
        predicate["input"]["secrets"],
        json!(["TOKEN"]),
        "{predicate}"
    );
    assert_eq!(predicate["ran"]["executor"], "wasm", "{predicate}");
    assert!(
        predicate["ran"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("blake3:")),
        "{predicate}"
    );
    assert_eq!(predicate["outcome"]["state"], "finished");
    assert!(predicate["usage"]["peak_memory_bytes"].as_u64() > Some(0));
    assert_eq!(predicate["node"]["fingerprint"], identity["fingerprint"]);

    // The built-in aggregation reads no clock or randomness that reaches its
    // answer: the same input, run again, has the same output digest.
    let mut again = job.clone();
    again["job_id"] = json!("sum-again");
    assert_eq!(node.run_job(&again, WAIT).await["state"], "finished");
    let (_, second) = fetch(&node, "/jobs/sum-again/receipt").await;
    assert_eq!(statement(&second)["subject"][0], signed["subject"][0]);
}

#[tokio::test]
async fn a_failed_job_and_its_output_files_have_a_receipt_too() {
    let node = NodeProcess::start(&Gate::new().policy("")).await;
    let write = json!({"protocol_version": 1, "job_id": "write",
        "task": {"type": "tool_execution", "payload": {"tool": "file_write",
            "path": "/workspace/reports/out.txt", "content": "all good\n", "create_dirs": true}},
        "runtime": {"mode": "auto"}});
    assert_eq!(node.run_job(&write, WAIT).await["state"], "finished");
    let (_, receipt) = fetch(&node, "/jobs/write/receipt").await;
    let (_, file) = fetch(&node, "/jobs/write/files/reports/out.txt").await;
    assert_eq!(file, b"all good\n");
    let dir = tempfile::tempdir().unwrap();
    let (receipt_file, file_path) = (dir.path().join("r.json"), dir.path().join("out.txt"));
    std::fs::write(&receipt_file, &receipt).unwrap();
    std::fs::write(&file_path, &file).unwrap();
    let named = format!("reports/out.txt={}", file_path.display());
    let (code, said) = verify(node.data_dir.path(), &receipt_file, &["--file", &named]);
    assert_eq!(code, Some(0), "{said}");
    std::fs::write(&file_path, b"all bad\n").unwrap();
    let (code, said) = verify(node.data_dir.path(), &receipt_file, &["--file", &named]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("files/reports/out.txt does not match"),
        "{said}"
    );
    let missing = format!("nope.txt={}", file_path.display());
    let (code, said) = verify(node.data_dir.path(), &receipt_file, &["--file", &missing]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no subject `files/nope.txt`"), "{said}");

    let trap = wasm_job("trap", "hostile", json!({"action": "trap"}));
    assert_eq!(node.run_job(&trap, WAIT).await["state"], "failed");
    let (status, receipt) = fetch(&node, "/jobs/trap/receipt").await;
    assert_eq!(status, 200);
    let outcome = &statement(&receipt)["predicate"]["outcome"];
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(outcome["error_code"].is_string(), "{outcome}");

    let (status, body) = fetch(&node, "/jobs/no-such-job/receipt").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn receipts_survive_kill_dash_nine_with_their_job_and_the_identity_stays() {
    let gate = Gate::new();
    let mut node = NodeProcess::start(&gate.policy("")).await;
    let before = node.get_json("/info").await["identity"].clone();
    let done = wasm_job("done", "hostile", json!({"action": "echo", "v": 1}));
    assert_eq!(node.run_job(&done, WAIT).await["state"], "finished");
    let (_, receipt) = fetch(&node, "/jobs/done/receipt").await;
    node.post_json("/jobs", &gate.job("long")).await;
    wait_state(&node, "long", "running").await;
    let (status, _) = fetch(&node, "/jobs/long/receipt").await;
    assert_eq!(status, 409, "a running job has no receipt yet");

    node.crash_and_restart().await;

    assert_eq!(node.get_json("/info").await["identity"], before);
    let (status, again) = fetch(&node, "/jobs/done/receipt").await;
    assert_eq!((status, &again), (200, &receipt));
    wasmnode_e2e::wait_terminal(&reqwest::Client::new(), &node, "long", WAIT).await;
    let (status, interrupted) = fetch(&node, "/jobs/long/receipt").await;
    assert_eq!(status, 200);
    let outcome = &statement(&interrupted)["predicate"]["outcome"];
    assert_eq!(outcome["error_code"], "INTERRUPTED", "{outcome}");

    let shown = wasmnode(node.data_dir.path(), &["identity", "--json"]);
    let shown: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown, before);
    let key = node.data_dir.path().join("identity/node.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn replay_of_a_deterministic_retrieval_reproduces_its_output_digest() {
    let node = NodeProcess::start("").await;
    let documents = json!([
        {"id": "a", "text": "how to reset a password"},
        {"id": "b", "text": "sandboxed execution of untrusted code"},
        {"id": "c", "text": "password rotation policy for the sandbox"},
    ])
    .to_string();
    let job = json!({"protocol_version": 1, "job_id": "find",
        "task": {"type": "retrieval", "payload": {"query": "password sandbox",
            "documents_json": documents, "top_k": "2"}},
        "runtime": {"mode": "auto", "deterministic": true, "seed": 7}});
    let ended = node.run_job(&job, WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let (_, receipt) = fetch(&node, "/jobs/find/receipt").await;
    assert_eq!(
        statement(&receipt)["predicate"]["input"]["deterministic"],
        json!({"seed": 7})
    );
    let receipt = file("receipt.json", &receipt);
    let document = file("job.json", job.to_string().as_bytes());
    let info = node.get_json("/info").await;
    let key = file(
        "node.pub.pem",
        info["identity"]["public_key"].as_str().unwrap().as_bytes(),
    );
    // Elsewhere: another machine's data directory, the node's public key.
    let elsewhere = tempfile::tempdir().unwrap();
    let replay = |args: &[&str]| {
        let mut all = vec!["replay", receipt.as_str(), "--key", key.as_str(), "--input"];
        all.extend_from_slice(args);
        let output = wasmnode(elsewhere.path(), &all);
        (
            output.status.code(),
            format!("{}{}", stdout(&output), stderr(&output)),
        )
    };
    let (code, said) = replay(&[&document]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("reproduced: job find's output"), "{said}");
    let (code, said) = replay(&[&document, "--component", "builtin:aggregation"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("a different component ran"), "{said}");
    let mut changed = job.clone();
    changed["task"]["payload"]["top_k"] = json!("3");
    let changed = file("changed.json", changed.to_string().as_bytes());
    let (code, said) = replay(&[&changed]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not the job's document"), "{said}");

    // A job that did not run deterministically cannot be replayed.
    let mut free = job.clone();
    free["job_id"] = json!("free");
    free["runtime"] = json!({"mode": "auto"});
    node.run_job(&free, WAIT).await;
    // The built-in retrieval reads no clock or randomness: its ranking
    // repeats without deterministic mode too.
    let (found, again) = (
        node.get_json("/jobs/find/result").await,
        node.get_json("/jobs/free/result").await,
    );
    assert_eq!(found["documents"], again["documents"]);
    let (_, free_receipt) = fetch(&node, "/jobs/free/receipt").await;
    std::fs::write(&receipt, free_receipt).unwrap();
    let (code, said) = replay(&[&document]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("did not run in deterministic mode"), "{said}");
}

#[tokio::test]
async fn a_node_with_receipts_off_signs_none_and_says_so() {
    let node = NodeProcess::start("[receipts]\nenabled = false\n").await;
    let info = node.get_json("/info").await;
    assert_eq!(info["receipts"], false, "{info}");
    assert!(info["identity"]["fingerprint"].is_string(), "{info}");
    let job = wasm_job("plain", "builtin:aggregation", json!({"items_json": "[]"}));
    assert_eq!(node.run_job(&job, WAIT).await["state"], "finished");
    let (status, body) = fetch(&node, "/jobs/plain/receipt").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("NO_RECEIPT")),
        "{body}"
    );
}
