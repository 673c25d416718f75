//! The examples users copy: every job in `examples/jobs/` runs as shipped on
//! a node with its default policy, and the first job `serve --help` prints
//! runs as printed.

use serde_json::Value;
use std::time::Duration;
use wasmnode_e2e::{NodeProcess, stdout, wait_terminal, wasmnode};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn every_example_job_finishes_on_a_node_with_its_defaults() {
    let node = NodeProcess::start("").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let client = reqwest::Client::new();
    for file in files {
        let job: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let (status, body) = node.post_json("/jobs", &job).await;
        assert_eq!(status, 200, "{}: {body}", file.display());
        let id = job["job_id"].as_str().unwrap();
        let ended = wait_terminal(&client, &node, id, WAIT).await;
        assert_eq!(ended["state"], "finished", "{}: {ended}", file.display());
    }
    let grep = node.get_json("/jobs/example-grep/result").await;
    assert_eq!(grep["path"], "/results", "{grep}");
}

#[tokio::test]
async fn the_first_job_in_serve_help_runs_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let help = stdout(&wasmnode(dir.path(), &["serve", "--help"]));
    // The commands as a shell reads them: `\` at a line's end continues it.
    let example = help.split("First job:").nth(1).expect("a first job");
    let commands: Vec<String> = example
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl -s"))
        .map(String::from)
        .collect();
    assert_eq!(commands.len(), 2, "{help}");
    let path = |command: &str| {
        let url = command
            .split_whitespace()
            .nth(2)
            .unwrap()
            .trim_matches('\'');
        url.trim_start_matches("localhost:9000").to_string()
    };
    let body = commands[0]
        .split_once(" -d'")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .expect("the submission sends a body");
    let job: Value = serde_json::from_str(body).expect("the printed body is JSON");
    let node = NodeProcess::start("").await;
    let (status, answer) = node.post_json(&path(&commands[0]), &job).await;
    assert_eq!(status, 200, "{answer}");
    let id = job["job_id"].as_str().unwrap();
    let ended = wait_terminal(&reqwest::Client::new(), &node, id, WAIT).await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let result = node.get_json(&path(&commands[1])).await;
    assert_eq!(
        result["documents"][0]["text"], "wasm",
        "the printed result URL gives the ranked documents: {result}"
    );
}
