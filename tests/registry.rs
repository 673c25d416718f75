//! Distribution and trust: a tool signed with `tool sign`, pushed to a real
//! OCI registry, pulled on a fresh data directory and run by a node that
//! requires signed tools; an unsigned tool, a changed tool and a damaged
//! registry blob are refused.

use serde_json::json;
use std::path::Path;
use wasmnode_e2e::registry::Registry;
use wasmnode_e2e::{NodeProcess, plugin_tool, stderr, stdout, wait_terminal, wasmnode};

fn keygen(data: &Path, prefix: &Path) {
    let out = wasmnode(data, &["tool", "keygen", "--out", prefix.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The pinned reference a push or pull printed.
fn pinned(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("pinned: "))
        .unwrap_or_else(|| panic!("no pinned reference in {text}"))
        .to_string()
}

fn policy(plugins: &Path, key: &Path) -> String {
    format!(
        "[node]\nplugin_dir = {:?}\n[policy]\nrequire_signed_tools = true\ntrusted_keys = [{:?}]\n",
        plugins, key
    )
}

#[tokio::test]
async fn a_signed_tool_travels_through_a_registry_and_runs_where_signatures_are_required() {
    let registry = Registry::start().await;
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (alice, mallory) = (keys.path().join("alice"), keys.path().join("mallory"));
    keygen(data.path(), &alice);
    keygen(data.path(), &mallory);
    let alice_pub = keys.path().join("alice.pub.pem");
    let mallory_pub = keys.path().join("mallory.pub.pem");

    let work = tempfile::tempdir().unwrap();
    let tool = work.path().join("word_count.wasm");
    std::fs::copy(plugin_tool(), &tool).unwrap();
    let tool_arg = tool.to_str().unwrap();
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "sign",
            tool_arg,
            "--key",
            keys.path().join("alice.pem").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let verify = |key: &Path| {
        wasmnode(
            data.path(),
            &["tool", "verify", tool_arg, "--key", key.to_str().unwrap()],
        )
    };
    let out = verify(&alice_pub);
    assert!(
        out.status.success() && stdout(&out).starts_with("verified: word_count 0.1.0"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = verify(&mallory_pub);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not trust"), "{}", stderr(&out));

    let reference = format!("{}/tools/word_count:0.1.0", registry.addr);
    let out = wasmnode(data.path(), &["tool", "push", tool_arg, &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("with its signature"),
        "{}",
        stdout(&out)
    );
    let pushed = pinned(&stdout(&out));

    // A fresh data directory pulls by tag, then by the pinned digest.
    let fresh = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let pull = |reference: &str, dir: &Path| {
        wasmnode(
            fresh.path(),
            &["tool", "pull", reference, "--dir", dir.to_str().unwrap()],
        )
    };
    let out = pull(&reference, plugins.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        pinned(&stdout(&out)),
        pushed,
        "a tag resolves to what was pushed"
    );
    let out = pull(&pushed, plugins.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(plugins.path().join("word_count.wasm")).unwrap(),
        std::fs::read(&tool).unwrap()
    );
    assert!(plugins.path().join("word_count.wasm.sig").is_file());

    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("poem.txt"), "one two\nthree\n").unwrap();
    let node = NodeProcess::start(&format!(
        "{}mount_roots = [{:?}]\n",
        policy(plugins.path(), &alice_pub),
        files.path()
    ))
    .await;
    let job = json!({"protocol_version": 1, "job_id": "signed",
        "task": {"type": "tool_execution", "payload": {"tool": "word_count", "args": {"path": "/in/poem.txt"}}},
        "runtime": {"mode": "auto", "mounts": [{"source": files.path(), "target": "/in"}]}});
    let (status, body) = node.post_json("/jobs", &job).await;
    assert_eq!(status, 200, "{body}");
    let client = reqwest::Client::new();
    let done = wait_terminal(&client, &node, "signed", std::time::Duration::from_secs(60)).await;
    assert_eq!(done["state"], "finished", "{done}");
    let output = node.get_json("/jobs/signed/result").await;
    assert_eq!(output["words"], 3, "{output}");
}

#[tokio::test]
async fn unsigned_changed_and_damaged_tools_are_refused() {
    let registry = Registry::start().await;
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    keygen(data.path(), &keys.path().join("alice"));
    let alice_pub = keys.path().join("alice.pub.pem");

    // An unsigned tool pulled from the registry is skipped at load, and a
    // job naming its file is refused at submission.
    let work = tempfile::tempdir().unwrap();
    let tool = work.path().join("word_count.wasm");
    std::fs::copy(plugin_tool(), &tool).unwrap();
    let reference = format!("{}/tools/unsigned:1", registry.addr);
    let out = wasmnode(
        data.path(),
        &["tool", "push", tool.to_str().unwrap(), &reference],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plugins = tempfile::tempdir().unwrap();
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "pull",
            &reference,
            "--dir",
            plugins.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("unsigned"), "{}", stdout(&out));
    let node = NodeProcess::start(&policy(plugins.path(), &alice_pub)).await;
    let info = node.get_json("/info").await;
    assert!(
        !info["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("word_count")),
        "an unsigned plugin is not loaded: {info}"
    );
    let component = plugins.path().join("word_count.wasm");
    let job = json!({"protocol_version": 1, "job_id": "unsigned",
        "task": {"type": "tool", "payload": {"path": "/x"}},
        "runtime": {"mode": "wasm", "component": component}});
    let (status, body) = node.post_json("/jobs", &job).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "POLICY_DENIED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{body}"
    );
    drop(node);

    // A signed tool changed after signing no longer verifies.
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "sign",
            tool.to_str().unwrap(),
            "--key",
            keys.path().join("alice.pem").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bytes = std::fs::read(&tool).unwrap();
    // A custom section appended: still a valid component, other bytes.
    bytes.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
    std::fs::write(&tool, &bytes).unwrap();
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "verify",
            tool.to_str().unwrap(),
            "--key",
            alice_pub.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not what was signed"),
        "{}",
        stderr(&out)
    );

    // A blob damaged inside the registry is caught by its digest on pull.
    let original = plugin_tool();
    let digest = sha256_digest(&std::fs::read(&original).unwrap());
    let blob = registry.blob_path(&digest);
    let mut stored = std::fs::read(&blob).unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 0xff;
    std::fs::write(&blob, &stored).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = wasmnode(
        data.path(),
        &[
            "tool",
            "pull",
            &reference,
            "--dir",
            elsewhere.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("digest"), "{}", stderr(&out));
    assert!(
        !elsewhere.path().join("word_count.wasm").exists(),
        "nothing is written from a damaged pull"
    );
}

/// `sha256:HEX` of `bytes`, as the registry names blobs.
fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}
