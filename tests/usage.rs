//! The usage ledger against the real binary: `GET /usage` sums what ended
//! jobs used per account (the front door, or whom it named: a Vera task),
//! in a time window, and `/metrics` counts it by task type and front door.

use serde_json::json;
use std::time::Duration;
use wasmnode_e2e::NodeProcess;

const WAIT: Duration = Duration::from_secs(120);

fn aggregation(id: &str) -> serde_json::Value {
    json!({"protocol_version": 1, "job_id": id,
        "task": {"type": "aggregation", "payload": {"items_json": "[{\"k\":\"v\"}]"}},
        "runtime": {"mode": "auto"}})
}

#[tokio::test]
async fn usage_is_summed_per_account_in_a_window_and_counted_in_metrics() {
    let node = NodeProcess::start("").await;
    for id in ["a1", "a2"] {
        assert_eq!(
            node.run_job(&aggregation(id), WAIT).await["state"],
            "finished"
        );
    }
    let (status, body) = node
        .post_json(
            "/execute",
            &json!({"task_id": "v1", "task_type": "data_processing",
                "payload": {"operation": "aggregation", "items_json": "[{\"k\":\"v\"}]"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wasmnode_e2e::wait_terminal(&reqwest::Client::new(), &node, "v1", WAIT).await;

    let usage = node.get_json("/usage").await;
    let api = &usage["accounts"]["api"];
    assert_eq!(api["jobs"], 2, "{usage}");
    assert!(api["fuel"].as_u64() > Some(0), "{usage}");
    assert!(api["wall_seconds"].as_f64() > Some(0.0), "{usage}");
    let cpu = api["cpu_seconds"].as_f64().unwrap();
    assert!(
        cpu > 0.0 && Some(cpu) <= api["wall_seconds"].as_f64(),
        "{usage}"
    );
    assert!(api["memory_byte_seconds"].as_f64() > Some(0.0), "{usage}");
    assert_eq!(usage["accounts"]["vera:v1"]["jobs"], 1, "{usage}");
    assert_eq!(usage["total"]["jobs"], 3, "{usage}");
    let total_fuel = usage["total"]["fuel"].as_u64().unwrap();

    let one = node.get_json("/usage?account=vera:v1").await;
    assert_eq!(one["total"]["jobs"], 1, "{one}");
    assert!(one["accounts"].get("api").is_none(), "{one}");
    let before = node.get_json("/usage?since=0&until=1000").await;
    assert_eq!(before["total"]["jobs"], 0, "{before}");
    assert_eq!(before["since"], "1970-01-01T00:00:00.000Z", "{before}");

    for query in ["since=yesterday", "since=2000&until=1000", "colour=red"] {
        let response = reqwest::get(node.at(&format!("/usage?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "INVALID_QUERY", "{query}: {body}");
    }

    let metrics = node.get_text("/metrics").await;
    let fuel: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("wasmnode_usage_fuel_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(fuel, total_fuel, "{metrics}");
    assert!(
        metrics
            .contains(r#"wasmnode_usage_wall_seconds_total{task_type="aggregation",via="vera"}"#),
        "{metrics}"
    );
}
