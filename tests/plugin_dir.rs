//! A running node and its plugin directory: when it reads a plugin's file,
//! and how it follows the directory when it is swapped, removed or made
//! again.

use serde_json::json;
use std::path::Path;
use std::time::Duration;
use wasmnode_e2e::{NodeProcess, plugin_tool, test_guest, wait_terminal};

#[tokio::test]
async fn listing_a_plain_function_plugin_loads_none_of_its_code() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(test_guest("functions"), plugins.path().join("calc.wasm")).unwrap();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.path().display().to_string()
    ))
    .await;
    for _ in 0..2 {
        let tools = node.get_json("/tools").await;
        assert!(
            tools["tools"].as_array().unwrap().iter().any(|t| {
                t["name"] == "calc.add"
                    && t["kind"] == "function"
                    && t["args_schema"]["required"] == json!(["a", "b"])
            }),
            "{tools}"
        );
    }
    let job = json!({"protocol_version": 1, "job_id": "add",
        "task": {"type": "tool_execution", "payload": {"tool": "calc.add", "a": 2, "b": 3}},
        "runtime": {"mode": "auto"}});
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    let client = reqwest::Client::new();
    let ended = wait_terminal(&client, &node, "add", Duration::from_secs(60)).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    assert_eq!(node.get_json("/jobs/add/result").await, json!(5));
    assert_eq!(
        ended["metrics"]["code_cache"], "disk",
        "the node let go of the plugin's code once it had listed its functions, and listing them again did not load it: {ended}"
    );
}

/// A node serving `calc.wasm` (the plain-function test guest, nine
/// functions) dated `modified`, and how to read its count of component
/// files read.
async fn calc_node(modified: std::time::SystemTime) -> (NodeProcess, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    let calc = plugins.path().join("calc.wasm");
    std::fs::copy(test_guest("functions"), &calc).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&calc)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.path().display().to_string()
    ))
    .await;
    (node, plugins)
}

async fn files_read(node: &NodeProcess) -> u64 {
    let metrics = node.get_text("/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("wasmnode_code_cache_events{code=\"file_read\"}"))
        .unwrap_or_else(|| panic!("no file_read count in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn list_calc(node: &NodeProcess) {
    let tools = node.get_json("/tools").await;
    let calc = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("calc."))
        .count();
    assert!(calc > 2, "the plugin lists several functions: {tools}");
}

#[tokio::test]
async fn a_plugin_file_that_may_be_changing_is_read_once_per_listing_not_per_function() {
    // Dated in the future (a skewed clock), so its hash is never trusted to
    // outlast a read.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let (node, _plugins) = calc_node(later).await;
    assert_eq!(
        files_read(&node).await,
        1,
        "read once when the node started"
    );
    for listing in 1..=2 {
        list_calc(&node).await;
        assert_eq!(
            files_read(&node).await,
            1 + listing,
            "after listing {listing}"
        );
    }
}

#[tokio::test]
async fn a_plugin_file_left_alone_is_read_once_not_per_listing_or_call() {
    let earlier = std::time::SystemTime::now() - Duration::from_secs(3600);
    let (node, _plugins) = calc_node(earlier).await;
    let client = reqwest::Client::new();
    for call in 0..2 {
        list_calc(&node).await;
        let id = format!("add-{call}");
        let job = json!({"protocol_version": 1, "job_id": id,
            "task": {"type": "tool_execution", "payload": {"tool": "calc.add", "a": 2, "b": call}},
            "runtime": {"mode": "auto"}});
        assert_eq!(node.post_json("/jobs", &job).await.0, 200);
        let ended = wait_terminal(&client, &node, &id, Duration::from_secs(60)).await;
        assert_eq!(ended["state"], "finished", "{ended}");
    }
    assert_eq!(
        files_read(&node).await,
        1,
        "read when the node started, and neither listed nor run from its bytes since"
    );
}

/// The names of the tools `node` lists.
async fn tool_names(node: &NodeProcess) -> Vec<String> {
    let tools = node.get_json("/tools").await;
    tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `node` lists `tool` (or, if not `listed`, no longer lists it).
async fn wait_listed(node: &NodeProcess, tool: &str, listed: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let names = tool_names(node).await;
        if names.iter().any(|n| n == tool) == listed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{tool} listed should be {listed}: {names:?}; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `component` in `dir` as `name` the way the README says to: a copy
/// under another name, renamed into place.
fn install(component: &Path, dir: &Path, name: &str) {
    let part = dir.join(format!("{name}.part"));
    std::fs::copy(component, &part).unwrap();
    std::fs::rename(&part, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_plugin_directory_swapped_for_another_is_followed_to_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    let release = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };
    let first = release("release-1");
    install(&plugin_tool(), &first, "word_count.wasm");
    std::os::unix::fs::symlink(&first, &plugins).unwrap();
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.display().to_string()
    ))
    .await;
    wait_listed(&node, "word_count", true).await;

    // A symlink retargeted in one rename (`ln -sfn` and deploy tools).
    let second = release("release-2");
    install(&test_guest("functions"), &second, "calc.wasm");
    let link = root.path().join("plugins.next");
    std::os::unix::fs::symlink(&second, &link).unwrap();
    std::fs::rename(&link, &plugins).unwrap();
    wait_listed(&node, "calc.add", true).await;
    wait_listed(&node, "word_count", false).await;
    install(&plugin_tool(), &second, "word_count.wasm");
    wait_listed(&node, "word_count", true).await;

    // The link replaced by a real directory.
    let third = release("release-3");
    std::fs::remove_file(&plugins).unwrap();
    std::fs::rename(&third, &plugins).unwrap();
    wait_listed(&node, "calc.add", false).await;
    install(&test_guest("functions"), &plugins, "calc.wasm");
    wait_listed(&node, "calc.add", true).await;
    assert!(
        !tool_names(&node).await.iter().any(|n| n == "word_count"),
        "release-2's plugins are not the node's any more"
    );
}

#[tokio::test]
async fn a_plugin_directory_removed_drops_its_tools_and_is_watched_again_once_made_again() {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    install(&plugin_tool(), &plugins, "word_count.wasm");
    let node = NodeProcess::start(&format!(
        "[node]\nplugin_dir = {:?}\n",
        plugins.display().to_string()
    ))
    .await;
    wait_listed(&node, "word_count", true).await;

    std::fs::remove_dir_all(&plugins).unwrap();
    wait_listed(&node, "word_count", false).await;
    assert!(
        tool_names(&node).await.iter().any(|n| n == "grep"),
        "the built-ins stay"
    );

    std::fs::create_dir(&plugins).unwrap();
    install(&test_guest("functions"), &plugins, "calc.wasm");
    wait_listed(&node, "calc.add", true).await;
    // Seen by now, so this one can only come from watching the new directory.
    install(&plugin_tool(), &plugins, "word_count.wasm");
    wait_listed(&node, "word_count", true).await;
    assert!(
        node.log().contains("the plugin directory is gone"),
        "{}",
        node.log()
    );
}
