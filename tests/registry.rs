//! Distribution and trust: a tool signed with `tool sign`, pushed to a real
//! OCI registry, pulled on a fresh data directory and run by a node that
//! requires signed tools; an unsigned tool, a changed tool and a damaged
//! registry blob are refused.

use serde_json::json;
use std::path::Path;
use std::process::Output;
use wasmnode_e2e::registry::Registry;
use wasmnode_e2e::{NodeProcess, plugin_tool, stderr, stdout, wait_terminal, wasmnode};

/// `wasmnode tool ARGS` with the data directory `data`.
fn tool(data: &Path, args: &[&str]) -> Output {
    wasmnode(data, &[&["tool"], args].concat())
}

/// What a command that must succeed printed.
fn succeeded(out: Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// The reason a command that must fail (exit 1) gave.
fn failed(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    stderr(&out)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
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

/// A key pair `NAME.pem` / `NAME.pub.pem` under `dir`; the public key's path.
fn keygen(data: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    succeeded(tool(data, &["keygen", "--out", text(&dir.join(name))]));
    dir.join(format!("{name}.pub.pem"))
}

/// A copy of the example tool under `dir`.
fn copy_of_the_tool(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("word_count.wasm");
    std::fs::copy(plugin_tool(), &path).unwrap();
    path
}

#[tokio::test]
async fn a_signed_tool_travels_through_a_registry_and_runs_where_signatures_are_required() {
    let registry = Registry::start().await;
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let alice_pub = keygen(data.path(), keys.path(), "alice");
    let mallory_pub = keygen(data.path(), keys.path(), "mallory");
    let work = tempfile::tempdir().unwrap();
    let wasm = copy_of_the_tool(work.path());
    let alice = keys.path().join("alice.pem");
    succeeded(tool(
        data.path(),
        &["sign", text(&wasm), "--key", text(&alice)],
    ));
    let verified = succeeded(tool(
        data.path(),
        &["verify", text(&wasm), "--key", text(&alice_pub)],
    ));
    assert!(
        verified.starts_with("verified: word_count 0.1.0"),
        "{verified}"
    );
    let refused = failed(tool(
        data.path(),
        &["verify", text(&wasm), "--key", text(&mallory_pub)],
    ));
    assert!(refused.contains("does not trust"), "{refused}");

    let reference = format!("{}/tools/word_count:0.1.0", registry.addr);
    let pushed = succeeded(tool(data.path(), &["push", text(&wasm), &reference]));
    assert!(pushed.contains("with its signature"), "{pushed}");
    let pushed = pinned(&pushed);

    // A fresh data directory pulls by tag, then by the pinned digest.
    let fresh = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    for (what, pull) in [("a tag", reference.as_str()), ("a digest", pushed.as_str())] {
        let pulled = succeeded(tool(
            fresh.path(),
            &["pull", pull, "--dir", text(plugins.path())],
        ));
        assert_eq!(
            pinned(&pulled),
            pushed,
            "{what} resolves to what was pushed"
        );
    }
    assert_eq!(
        std::fs::read(plugins.path().join("word_count.wasm")).unwrap(),
        std::fs::read(&wasm).unwrap()
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
    let alice_pub = keygen(data.path(), keys.path(), "alice");

    // An unsigned tool pulled from the registry is skipped at load, and a
    // job naming its file is refused at submission.
    let work = tempfile::tempdir().unwrap();
    let wasm = copy_of_the_tool(work.path());
    let reference = format!("{}/tools/unsigned:1", registry.addr);
    succeeded(tool(data.path(), &["push", text(&wasm), &reference]));
    let plugins = tempfile::tempdir().unwrap();
    let pulled = succeeded(tool(
        data.path(),
        &["pull", &reference, "--dir", text(plugins.path())],
    ));
    assert!(pulled.contains("unsigned"), "{pulled}");
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
    let alice = keys.path().join("alice.pem");
    succeeded(tool(
        data.path(),
        &["sign", text(&wasm), "--key", text(&alice)],
    ));
    let mut bytes = std::fs::read(&wasm).unwrap();
    // A custom section appended: still a valid component, other bytes.
    bytes.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
    std::fs::write(&wasm, &bytes).unwrap();
    let refused = failed(tool(
        data.path(),
        &["verify", text(&wasm), "--key", text(&alice_pub)],
    ));
    assert!(refused.contains("is not what was signed"), "{refused}");

    // A blob damaged inside the registry is caught by its digest on pull.
    let digest = sha256_digest(&std::fs::read(plugin_tool()).unwrap());
    let blob = registry.blob_path(&digest);
    let mut stored = std::fs::read(&blob).unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 0xff;
    std::fs::write(&blob, &stored).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let refused = failed(tool(
        data.path(),
        &["pull", &reference, "--dir", text(elsewhere.path())],
    ));
    assert!(refused.contains("digest"), "{refused}");
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
