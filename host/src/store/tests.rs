//! The job store's unit tests: what it keeps, what it reads back, and
//! the upgrade of a store of the first layout.

use super::*;
use crate::job::JobRequest;
use serde_json::{Value, json};
use tables::JOBS;

fn request(id: &str, payload: Value) -> JobRequest {
    JobRequest::parse(
        json!({"protocol_version": 1, "job_id": id, "task": {"type": "retrieval", "payload": payload},
            "runtime": {"mode": "wasm"}})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// Accepts job `id` (submitted at `at`) and returns its record.
async fn accept(store: &JobStore, id: &str, at: u64) -> JobRecord {
    let request = request(id, json!({"query": id}));
    let (canonical, _) = JobRecord::canonical(&request);
    let record = JobRecord::queued(&request, &canonical, store.next_seq(), at);
    store.accept(record.clone(), canonical).await.unwrap();
    record
}

fn finished(mut r: JobRecord, at: u64) -> JobRecord {
    r.state = JobState::Finished;
    r.finished_at_ms = Some(at);
    r.result = Some(JobResult::default());
    r
}

#[tokio::test]
async fn records_survive_reopening_and_sequences_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    {
        let store = JobStore::open(&path).unwrap();
        for id in ["a", "b"] {
            accept(&store, id, now_ms()).await;
        }
        store.close();
    }
    let store = JobStore::open(&path).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().state, JobState::Queued);
    assert_eq!(store.request("b").unwrap().unwrap().job_id, "b");
    assert_eq!(store.next_seq(), 3);
    assert_eq!(store.unfinished().unwrap().len(), 2);
}

#[tokio::test]
async fn a_periodically_synced_store_keeps_every_acknowledged_write_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    {
        let store = JobStore::open_with(&path, SyncMode::Periodic).unwrap();
        for id in ["a", "b", "c"] {
            accept(&store, id, now_ms()).await;
        }
        let done = finished(store.get("b").unwrap().unwrap(), now_ms());
        store.put(done).await.unwrap();
        store.close();
    }
    let store = JobStore::open(&path).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().state, JobState::Queued);
    assert_eq!(store.get("b").unwrap().unwrap().state, JobState::Finished);
    assert_eq!(store.request("c").unwrap().unwrap().job_id, "c");
}

#[tokio::test]
async fn records_stay_small_and_requests_and_outputs_are_read_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let big = "x".repeat(1 << 20);
    let request = request("big", json!({"documents": big}));
    let (canonical, _) = JobRecord::canonical(&request);
    let record = JobRecord::queued(&request, &canonical, store.next_seq(), now_ms());
    store.accept(record.clone(), canonical).await.unwrap();
    let output = JobOutput {
        output: json!({"echo": big}),
        logs: Logs {
            stdout: "out".into(),
            stderr: "err".into(),
        },
        receipt: Some(b"{\"payload\":\"signed\"}".to_vec()),
    };
    store
        .put_reporting(
            finished(record, now_ms()),
            Some(Arc::new(output.clone().encode())),
            None,
        )
        .await
        .unwrap();
    let stored = store.get("big").unwrap().unwrap();
    assert!(stored.request_bytes > 1 << 20);
    assert!(
        serde_json::to_vec(&stored).unwrap().len() < 1024,
        "the record holds neither payload nor output"
    );
    assert_eq!(store.request("big").unwrap().unwrap(), request);
    let document: Value = serde_json::from_slice(&store.output("big").unwrap().unwrap()).unwrap();
    assert_eq!(document, output.output);
    assert_eq!(store.logs("big").unwrap(), output.logs);
    assert_eq!(store.receipt("big").unwrap(), output.receipt);
    assert!(store.unfinished().unwrap().is_empty());
    store.remove(vec!["big".into()]).await.unwrap();
    assert_eq!(
        store.receipt("big").unwrap(),
        None,
        "a removed job's receipt goes with it"
    );
}

#[tokio::test]
async fn an_output_as_deep_as_the_parser_accepts_reads_back_unchanged() {
    let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
    let deepest = (1..200)
        .take_while(|n| serde_json::from_str::<Value>(&deep(*n)).is_ok())
        .last()
        .unwrap();
    let produced: Value = serde_json::from_str(&deep(deepest)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let record = accept(&store, "deep", now_ms()).await;
    let output = JobOutput {
        output: produced.clone(),
        logs: Logs::default(),
        receipt: None,
    };
    store
        .put_reporting(
            finished(record, now_ms()),
            Some(Arc::new(output.clone().encode())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("deep").unwrap().unwrap().state,
        JobState::Finished
    );
    let bytes = store.output("deep").unwrap().unwrap();
    assert_eq!(bytes, deep(deepest).into_bytes());
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), produced);
}

#[tokio::test]
async fn concurrent_writes_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let writes = (0..500).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { accept(&store, &format!("j{i}"), now_ms()).await })
    });
    for w in writes {
        w.await.unwrap();
    }
    let all = JobFilter::default();
    let (page, cursor) = store.list(&all, None, 100).unwrap();
    assert_eq!(page.len(), 100);
    let (rest, end) = store.list(&all, cursor, 1000).unwrap();
    assert_eq!(rest.len(), 400);
    assert!(end.is_none());
    let running = JobFilter {
        state: Some(JobState::Running),
        ..JobFilter::default()
    };
    assert_eq!(store.list(&running, None, 10).unwrap().0.len(), 0);
}

#[tokio::test]
async fn listings_page_newest_first_and_filter_by_type_and_front_door() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    for i in 0..5 {
        accept(&store, &format!("j{i}"), now_ms()).await;
    }
    let newest = JobFilter {
        newest_first: true,
        ..JobFilter::default()
    };
    let (page, cursor) = store.list(&newest, None, 2).unwrap();
    let ids: Vec<&str> = page.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(ids, ["j4", "j3"]);
    let (rest, end) = store.list(&newest, cursor, 10).unwrap();
    let ids: Vec<&str> = rest.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(ids, ["j2", "j1", "j0"]);
    assert!(end.is_none());
    let other_type = JobFilter {
        task_type: Some("embedding".into()),
        ..JobFilter::default()
    };
    assert!(store.list(&other_type, None, 10).unwrap().0.is_empty());
    let via_mcp = JobFilter {
        via: Some("mcp".into()),
        ..JobFilter::default()
    };
    assert!(store.list(&via_mcp, None, 10).unwrap().0.is_empty());
    let record = store.get("j0").unwrap().unwrap();
    assert!(
        JobFilter {
            task_type: Some(record.task_type.clone()),
            ..JobFilter::default()
        }
        .admits(&record)
    );
}

#[tokio::test]
async fn retention_removes_the_oldest_finished_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let now = now_ms();
    for (id, at) in [("old", now - 10_000), ("mid", now - 5_000), ("new", now)] {
        let record = accept(&store, id, now).await;
        store.put(finished(record, at)).await.unwrap();
    }
    accept(&store, "waiting", now - 99_000).await;
    assert_eq!(store.apply_retention(2, 60_000).await.unwrap(), 1);
    assert!(store.get("old").unwrap().is_none());
    assert!(
        store.request("old").unwrap().is_none(),
        "requests go with their job"
    );
    assert_eq!(store.apply_retention(10, 7_000).await.unwrap(), 0);
    assert_eq!(store.apply_retention(10, 1_000).await.unwrap(), 1);
    assert!(store.get("mid").unwrap().is_none());
    assert!(store.get("new").unwrap().is_some());
    assert!(
        store.get("waiting").unwrap().is_some(),
        "unfinished jobs are never removed"
    );
}

#[tokio::test]
async fn replacing_a_record_moves_its_retention_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let now = now_ms();
    let r = accept(&store, "x", now).await;
    store.put(finished(r.clone(), now - 100_000)).await.unwrap();
    store.put(finished(r, now)).await.unwrap();
    assert_eq!(
        store.apply_retention(10, 50_000).await.unwrap(),
        0,
        "only the latest finish time counts"
    );
    store.remove(vec!["x".into()]).await.unwrap();
    assert!(store.get("x").unwrap().is_none());
    assert!(
        store
            .list(&JobFilter::default(), None, 10)
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn callback_status_is_set_on_the_current_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    let record = accept(&store, "cb", now_ms()).await;
    store.put(finished(record, now_ms())).await.unwrap();
    let status = CallbackStatus {
        url: "http://hook".into(),
        state: CallbackState::Delivered,
        attempts: 1,
        last_error: None,
    };
    store.set_callback("cb", status.clone()).await.unwrap();
    store.set_callback("gone", status.clone()).await.unwrap();
    let stored = store.get("cb").unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.callback),
        (JobState::Finished, Some(status))
    );
    assert!(store.get("gone").unwrap().is_none());
}

#[test]
fn callback_states_keep_the_names_stored_records_and_the_vera_api_use() {
    for (state, name) in [
        (CallbackState::Pending, "pending"),
        (CallbackState::Delivered, "delivered"),
        (CallbackState::Failed, "failed"),
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<CallbackState>(json!(name)).unwrap(),
            state
        );
    }
    assert!(serde_json::from_value::<CallbackState>(json!("sent")).is_err());
}

#[tokio::test]
async fn a_store_of_the_first_layout_is_upgraded_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let deep = (0..125).fold(json!("bottom"), |inner, _| json!([inner]));
    let old = |id: &str, seq: u64, state: &str, result: Value| {
        json!({"job_id": id, "seq": seq, "request": {"protocol_version": 1, "job_id": id,
            "task": {"type": "retrieval", "payload": {"query": id}}, "runtime": {"mode": "wasm"}},
            "spec_hash": "h", "state": state, "submitted_at_ms": 1, "started_at_ms": 2,
            "finished_at_ms": if state == "queued" { Value::Null } else { json!(3) },
            "attempts": 1, "result": result})
    };
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut jobs = txn.open_table(JOBS).unwrap();
            let mut by_seq = txn.open_table(BY_SEQ).unwrap();
            let done = old(
                "done",
                1,
                "finished",
                json!({"output": {"deep": deep}, "stdout": "o",
                "stderr": "e", "exit_code": 0, "error": null, "executor": "wasm", "metrics": null}),
            );
            let waiting = old("waiting", 2, "queued", Value::Null);
            for (seq, record) in [(1u64, done), (2, waiting)] {
                let id = record["job_id"].as_str().unwrap().to_string();
                jobs.insert(id.as_str(), serde_json::to_vec(&record).unwrap().as_slice())
                    .unwrap();
                by_seq.insert(seq, id.as_str()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store = JobStore::open(&path).unwrap();
    let done = store.get("done").unwrap().unwrap();
    assert_eq!(
        (done.state, done.task_type.as_str()),
        (JobState::Finished, "retrieval")
    );
    assert_eq!(done.result.unwrap().executor.as_deref(), Some("wasm"));
    assert_eq!(
        store.request("done").unwrap().unwrap().task.payload["query"],
        "done"
    );
    let output: Value = {
        let bytes = store.output("done").unwrap().unwrap();
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        de.disable_recursion_limit();
        serde::Deserialize::deserialize(&mut de).unwrap()
    };
    assert_eq!(output["deep"], deep);
    assert_eq!(store.logs("done").unwrap().stdout, "o");
    let unfinished: Vec<String> = store
        .unfinished()
        .unwrap()
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(unfinished, ["waiting"]);
    assert_eq!(store.next_seq(), 3);
}
