//! Following a job's log from any point: a follower that connects late gets
//! the output so far, one that reconnects with `Last-Event-ID` gets exactly
//! what it missed, and output arrives a line at a time.

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use wasmnode_e2e::{Gate, NodeProcess, wait_state, wait_terminal};

/// One SSE event: its id, name and data.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    name: String,
    data: Value,
}

/// Reads `job_id`'s events (resuming after `last_id` when given) until one
/// satisfies `stop`, or the stream ends.
async fn follow(
    node: &NodeProcess,
    job_id: &str,
    last_id: Option<&str>,
    stop: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let mut request = reqwest::Client::new().get(node.at(&format!("/jobs/{job_id}/events")));
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::to_string)
            };
            let (Some(name), Some(data)) = (field("event: "), field("data: ")) else {
                continue;
            };
            let event = Sse {
                id: field("id: ").expect("every event has an id"),
                name,
                data: serde_json::from_str(&data).unwrap(),
            };
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
        match tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .expect("events in time")
        {
            Some(chunk) => buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            None => return events,
        }
    }
}

fn text(events: &[Sse], name: &str) -> String {
    events
        .iter()
        .filter(|e| e.name == name)
        .map(|e| e.data["data"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_late_follower_gets_the_log_so_far_and_a_reconnect_resumes_without_gaps_or_repeats() {
    let gate = Gate::new();
    let node = NodeProcess::start(&gate.policy("")).await;
    let mut job = gate.job("ci");
    job["task"]["payload"]["then_print"] = json!("released");
    assert_eq!(node.post_json("/jobs", &job).await.0, 200);
    wait_state(&node, "ci", "running").await;

    // Late: the job has been running a while; its first line comes first.
    let first = follow(&node, "ci", None, |e| e.name == "stdout").await;
    assert_eq!(first[0].name, "state");
    assert_eq!(first[0].data["state"], "running");
    assert_eq!(text(&first, "stdout"), "running\n");
    let seen = first.last().unwrap().id.clone();

    gate.open();
    wait_terminal(
        &reqwest::Client::new(),
        &node,
        "ci",
        Duration::from_secs(120),
    )
    .await;

    // Back after the job ended: only what was missed, then the end.
    let rest = follow(&node, "ci", Some(&seen), |_| false).await;
    let names: Vec<&str> = rest.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["stdout", "state", "end"], "{rest:?}");
    assert_eq!(text(&rest, "stdout"), "released\n");
    assert_eq!(rest[1].data["state"], "finished");

    // From the start, after the end: the whole log, then the final state.
    let all = follow(&node, "ci", None, |_| false).await;
    assert_eq!(text(&all, "stdout"), "running\nreleased\n");
    assert_eq!(all.last().unwrap().name, "end");
    // Resuming from the very end gives nothing but the end.
    let last = all.last().unwrap().id.clone();
    let nothing = follow(&node, "ci", Some(&last), |_| false).await;
    assert_eq!(nothing.len(), 1, "{nothing:?}");
    assert_eq!(nothing[0].name, "end");

    let bad = reqwest::Client::new()
        .get(node.at("/jobs/ci/events"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
