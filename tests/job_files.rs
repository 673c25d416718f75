//! Inputs and outputs of jobs against the real binary: bytes uploaded with
//! `PUT /blobs` (content-addressed, capped, deduplicated) mounted read-only
//! as an unpacked tree or run as a component where the policy allows it,
//! and a finished job's workspace listed, fetched file by file and as one
//! tar.

use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::{Gate, NodeProcess, test_guest, wait_state, wait_terminal};

const WAIT: Duration = Duration::from_secs(120);

/// A tar of `files` (path, contents).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, text.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

async fn get(node: &NodeProcess, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(node.at(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn tool_job(id: &str, payload: Value, mounts: Value) -> Value {
    json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "tool_execution", "payload": payload},
        "runtime": {"mode": "auto", "mounts": mounts}})
}

#[tokio::test]
async fn an_uploaded_tree_mounts_read_only_and_a_workspace_comes_back_as_files() {
    let node = NodeProcess::start("[blobs]\nmax_mb = 1\nmax_total_mb = 4\n").await;
    let tree = tar_of(&[
        ("src/app.py", "x = 1  # TODO: fix\n"),
        ("README.md", "no todo here\n"),
    ]);
    let (status, stored) = node.upload(tree.clone()).await;
    assert_eq!(status, 201, "{stored}");
    let blob = stored["blob"].as_str().unwrap().to_string();
    assert_eq!(
        stored["archive"],
        json!({"files": 2, "bytes": 32}),
        "{stored}"
    );
    let (status, again) = node.upload(tree).await;
    assert_eq!((status, &again["created"]), (200, &json!(false)), "{again}");
    let hash = blob.strip_prefix("blob:").unwrap();
    assert_eq!(node.get_json(&format!("/blobs/{hash}")).await["blob"], blob);
    let (status, _) = get(&node, &format!("/blobs/{}", "0".repeat(64))).await;
    assert_eq!(status, 404);

    // The tree is mounted where the job says, read-only.
    let grep = tool_job(
        "grep",
        json!({"tool": "grep", "pattern": "TODO", "path": "/src"}),
        json!([{"source": blob, "target": "/src"}]),
    );
    let ended = node.run_job(&grep, WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let found = node.get_json("/jobs/grep/result").await.to_string();
    assert!(
        found.contains("app.py") && !found.contains("README"),
        "{found}"
    );
    let mut writable = grep.clone();
    writable["job_id"] = json!("rw");
    writable["runtime"]["mounts"][0]["mode"] = json!("rw");
    let (status, body) = node.post_json("/jobs", &writable).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("POLICY_DENIED")),
        "{body}"
    );
    let mut unknown = grep.clone();
    unknown["job_id"] = json!("unknown");
    unknown["runtime"]["mounts"][0]["source"] = json!(format!("blob:{}", "1".repeat(64)));
    let (status, body) = node.post_json("/jobs", &unknown).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PUT /blobs"),
        "{body}"
    );

    // What the job wrote to its workspace is its files once it ends.
    let write = tool_job(
        "write",
        json!({"tool": "file_write", "path": "/workspace/reports/out.txt",
            "content": "all good\n", "create_dirs": true}),
        json!([{"source": "workspace", "target": "/workspace", "mode": "rw"}]),
    );
    let ended = node.run_job(&write, WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let listed = node.get_json("/jobs/write/files").await;
    assert_eq!(
        listed["files"],
        json!([{"path": "reports/out.txt", "size": 9}]),
        "{listed}"
    );
    let (status, text) = get(&node, "/jobs/write/files/reports/out.txt").await;
    assert_eq!((status, text.as_slice()), (200, b"all good\n".as_slice()));
    let (status, archive) = get(&node, "/jobs/write/files?archive=tar").await;
    assert_eq!(status, 200);
    let mut entries = Vec::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        entries.push((entry.path().unwrap().display().to_string(), text));
    }
    assert_eq!(
        entries,
        [("reports/out.txt".to_string(), "all good\n".to_string())]
    );
    for (path, code) in [
        (
            "/jobs/write/files/reports%2F..%2F..%2Fjobs.redb",
            "INVALID_PATH",
        ),
        ("/jobs/write/files/nope.txt", "FILE_NOT_FOUND"),
        ("/jobs/nosuch/files", "JOB_NOT_FOUND"),
        ("/jobs/write/files?archive=zip", "INVALID_QUERY"),
    ] {
        let (_, body) = get(&node, path).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    // A job without a workspace has no files.
    assert_eq!(node.get_json("/jobs/grep/files").await["files"], json!([]));
}

#[tokio::test]
async fn uploads_past_the_caps_or_unsafe_archives_are_refused() {
    let node = NodeProcess::start("[blobs]\nmax_mb = 1\nmax_total_mb = 2\n").await;
    let (status, body) = node.upload(vec![b'a'; (1 << 20) + 1]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("BLOB_TOO_LARGE")),
        "{body}"
    );
    let mut evil = tar_of(&[("ok", "fine")]);
    // Rename the entry to `../ok` in place and fix its checksum.
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&evil[..512]);
    header.as_old_mut().name[..5].copy_from_slice(b"../ok");
    header.set_cksum();
    evil[..512].copy_from_slice(header.as_bytes());
    let (status, body) = node.upload(evil).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("INVALID_ARCHIVE")),
        "{body}"
    );
    assert_eq!(node.upload(vec![1; 1 << 20]).await.0, 201);
    assert_eq!(node.upload(vec![2; 1 << 20]).await.0, 201);
    let (status, body) = node.upload(vec![3; 10]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (507, &json!("BLOB_STORE_FULL")),
        "{body}"
    );
}

#[tokio::test]
async fn files_are_served_once_the_job_ends() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy("")).await;
    let mut job = gate.job("held");
    job["runtime"]["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"source": "workspace", "target": "/workspace", "mode": "rw"}));
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    wait_state(&node, "held", "running").await;
    let (status, body) = get(&node, "/jobs/held/files").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("JOB_NOT_FINISHED")),
        "{body}"
    );
    gate.open();
    let ended = wait_terminal(&reqwest::Client::new(), &node, "held", WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(node.get_json("/jobs/held/files").await["files"], json!([]));
}

#[tokio::test]
async fn an_uploaded_component_runs_only_where_the_policy_allows_it() {
    let component = std::fs::read(test_guest("command")).unwrap();
    let job = |blob: &str| {
        json!({"protocol_version": 1, "job_id": "uploaded",
            "task": {"type": "wasm", "payload": {}},
            "runtime": {"mode": "wasm", "component": blob, "args": ["0", "hello"]}})
    };
    let closed = NodeProcess::start("").await;
    let info = closed.get_json("/info").await;
    assert_eq!(
        info["uploads"],
        json!({"max_mb": 1024, "components": false}),
        "{info}"
    );
    assert_eq!(info["image_pull"], "never", "{info}");
    let (status, stored) = closed.upload(component.clone()).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored.get("archive"), None);
    let (status, body) = closed
        .post_json("/jobs", &job(stored["blob"].as_str().unwrap()))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("POLICY_DENIED")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_uploaded_components")
    );

    let open = NodeProcess::start("[policy]\nallow_uploaded_components = true\n").await;
    assert_eq!(open.get_json("/info").await["uploads"]["components"], true);
    let (_, stored) = open.upload(component).await;
    let ended = open
        .run_job(&job(stored["blob"].as_str().unwrap()), WAIT)
        .await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let view = open.get_json("/jobs/uploaded").await;
    assert!(
        view["stdout"].as_str().unwrap().contains("args=0 hello"),
        "{view}"
    );
    // Bytes that are no archive cannot be mounted.
    let plain = stored["blob"].as_str().unwrap();
    let mount = tool_job(
        "mount-plain",
        json!({"tool": "grep", "pattern": "x", "path": "/src"}),
        json!([{"source": plain, "target": "/src"}]),
    );
    let (status, body) = open.post_json("/jobs", &mount).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a tar"),
        "{body}"
    );
}
