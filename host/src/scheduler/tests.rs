//! The scheduler's lifecycle rules, on a real store with tasks run by a
//! stand-in that each test finishes by hand: start order, cancellation of
//! queued and running jobs, what a shutdown or a crash leaves, and slots.

use super::*;
use crate::job::JobRequest;
use crate::store::{ErrorCode, JobState, JobStore};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use wasmnode_runtime::FailureKind;

/// A task the stand-in is running: finish it, or watch it be cancelled.
struct Started {
    job_id: String,
    /// Whether it waited for its start to be recorded.
    gated: bool,
    finish: oneshot::Sender<Result<TaskOutcome, TaskFailure>>,
}

/// Runs every task until the test finishes it or the scheduler cancels it;
/// like a task that could reach outside its sandbox, it waits at the start
/// gate it is given.
struct Stand {
    started: mpsc::UnboundedSender<Started>,
}

#[async_trait::async_trait]
impl Runs for Stand {
    fn check(&self, _: TaskSpec) -> Result<(), TaskFailure> {
        Ok(())
    }

    async fn run(&self, task: TaskSpec, options: RunOptions) -> Result<TaskOutcome, TaskFailure> {
        if let Some(gate) = &options.start
            && !gate.pass().await
        {
            return Err(TaskFailure::internal("held back"));
        }
        let (finish, result) = oneshot::channel();
        let _ = self.started.send(Started {
            job_id: task.job_id,
            gated: options.start.is_some(),
            finish,
        });
        tokio::select! {
            result = result => result.unwrap_or_else(|_| Err(TaskFailure::internal("abandoned"))),
            _ = options.cancel.cancelled() => Err(TaskFailure::new(FailureKind::Cancelled, "cancelled")),
        }
    }
}

/// Long enough for anything here to happen on a loaded machine; only a
/// broken scheduler waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

struct Harness {
    scheduler: Scheduler,
    store: JobStore,
    metrics: Arc<Metrics>,
    started: mpsc::UnboundedReceiver<Started>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(slots: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
        Self::on(store, dir, slots).await
    }

    async fn on(store: JobStore, dir: tempfile::TempDir, slots: usize) -> Self {
        let (tx, started) = mpsc::unbounded_channel();
        let settings = Settings {
            max_concurrent_jobs: slots,
            queue_capacity: 100,
            max_queued_bytes: 1 << 20,
            data_dir: dir.path().to_path_buf(),
            min_free_disk_bytes: 0,
            secrets: Default::default(),
        };
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::start(
            store.clone(),
            Arc::new(Stand { started: tx }),
            tokio::runtime::Handle::current(),
            EventHub::default(),
            metrics.clone(),
            settings,
            Some(Arc::new(Notary::new(
                notary_identity(),
                "test-node".into(),
                Default::default(),
            ))),
        )
        .await
        .unwrap();
        Self {
            scheduler,
            store,
            metrics,
            started,
            _dir: dir,
        }
    }

    async fn submit(&self, id: &str, priority: &str, idempotent: bool) {
        let submitted = self
            .scheduler
            .submit(request(id, priority, idempotent), None, "test")
            .await
            .unwrap();
        assert!(matches!(submitted, Submitted::Accepted), "{id}");
    }

    /// The next task the stand-in was given.
    async fn next_started(&mut self) -> Started {
        tokio::time::timeout(PATIENCE, self.started.recv())
            .await
            .expect("a task starts")
            .expect("the stand-in lives")
    }

    /// Waits until `job_id` has ended and returns its record.
    async fn ended(&self, job_id: &str, mut terminal: broadcast::Receiver<String>) -> JobRecord {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let record = self.store.get(job_id).unwrap().unwrap();
                if record.state.is_terminal() {
                    return record;
                }
                let _ = terminal.recv().await;
            }
        })
        .await
        .expect("the job ends")
    }

    /// The receipt of `job_id`, verified with the node's key.
    fn receipt(&self, job_id: &str) -> crate::receipts::verify::Verified {
        let bytes = self.store.receipt(job_id).unwrap().expect("a receipt");
        crate::receipts::verify::open(&bytes, &notary_identity().verifying_key()).unwrap()
    }

    fn state(&self, job_id: &str) -> (JobState, Option<ErrorCode>) {
        let record = self.store.get(job_id).unwrap().unwrap();
        (record.state, record.error_code())
    }
}

fn notary_identity() -> Arc<crate::identity::Identity> {
    Arc::new(crate::identity::Identity::of(
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    ))
}

fn request(id: &str, priority: &str, idempotent: bool) -> JobRequest {
    let body = json!({"protocol_version": 1, "job_id": id, "task": {"type": "retrieval"},
        "runtime": {"mode": "auto"}, "priority": priority, "idempotent": idempotent});
    JobRequest::parse(body.to_string().as_bytes()).unwrap()
}

fn done() -> Result<TaskOutcome, TaskFailure> {
    Ok(TaskOutcome {
        output: json!({"ok": true}),
        executor: "stand-in",
        ..TaskOutcome::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_start_by_priority_then_in_submission_order() {
    let mut h = Harness::new(1).await;
    h.submit("blocker", "normal", false).await;
    let blocker = h.next_started().await;
    for (id, priority) in [
        ("low", "low"),
        ("first", "normal"),
        ("high", "high"),
        ("second", "normal"),
    ] {
        h.submit(id, priority, false).await;
    }
    blocker.finish.send(done()).unwrap();
    let mut order = Vec::new();
    for _ in 0..4 {
        let task = h.next_started().await;
        order.push(task.job_id.clone());
        task.finish.send(done()).unwrap();
    }
    assert_eq!(order, ["high", "first", "second", "low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_job_that_is_not_idempotent_waits_for_its_start_to_be_recorded() {
    let mut h = Harness::new(1).await;
    for (id, idempotent) in [("once", false), ("again", true)] {
        h.submit(id, "normal", idempotent).await;
        let task = h.next_started().await;
        assert_eq!(task.gated, !idempotent, "{id}");
        if task.gated {
            assert_eq!(h.state(id), (JobState::Running, None), "recorded first");
        }
        let terminal = h.scheduler.terminal_events();
        task.finish.send(done()).unwrap();
        let record = h.ended(id, terminal).await;
        assert_eq!((record.state, record.attempts), (JobState::Finished, 1));
        assert!(record.started_at_ms.is_some(), "{id}: its start is kept");
        let receipt = h.receipt(id);
        assert_eq!(receipt.state(), "finished");
        let output = h.store.output(id).unwrap().unwrap();
        receipt
            .check(
                crate::receipts::OUTPUT_SUBJECT,
                &crate::receipts::sha256(&output),
            )
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_cancelled_ends_at_once_and_never_starts() {
    let mut h = Harness::new(1).await;
    h.submit("blocker", "normal", false).await;
    let blocker = h.next_started().await;
    h.submit("waiting", "normal", false).await;
    let cancelled = h.scheduler.cancel("waiting").await.unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(
        h.state("waiting"),
        (JobState::Cancelled, Some(ErrorCode::CANCELLED))
    );
    h.submit("after", "normal", false).await;
    blocker.finish.send(done()).unwrap();
    assert_eq!(h.next_started().await.job_id, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_cancelled_has_its_task_stopped_and_ends_cancelled() {
    let mut h = Harness::new(1).await;
    let terminal = h.scheduler.terminal_events();
    h.submit("running", "normal", false).await;
    let _task = h.next_started().await;
    let asked = h.scheduler.cancel("running").await.unwrap().unwrap();
    assert_eq!(asked.state, JobState::Running, "the task stops on its own");
    let record = h.ended("running", terminal).await;
    assert_eq!(
        (record.state, record.error_code()),
        (JobState::Cancelled, Some(ErrorCode::CANCELLED))
    );
    let cancelled = &h.metrics.totals.cancelled;
    assert_eq!(
        cancelled.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "a job seen ended is already counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_leaves_idempotent_jobs_queued_and_fails_the_others_interrupted() {
    let mut h = Harness::new(2).await;
    h.submit("idempotent", "normal", true).await;
    h.submit("once", "normal", false).await;
    let _tasks = [h.next_started().await, h.next_started().await];
    h.scheduler.begin_drain();
    h.scheduler.interrupt_running();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    assert!(h.scheduler.wait_idle(deadline).await);
    assert_eq!(h.state("idempotent"), (JobState::Queued, None));
    assert_eq!(
        h.state("once"),
        (JobState::Failed, Some(ErrorCode::Interrupted))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_idempotent_running_jobs_run_again_and_the_others_fail_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
    for (id, idempotent) in [("idempotent", true), ("once", false)] {
        let request = request(id, "normal", idempotent);
        let (canonical, _) = JobRecord::canonical(&request);
        let mut record = JobRecord::queued(&request, &canonical, store.next_seq(), now_ms());
        store.accept(record.clone(), canonical).await.unwrap();
        record.state = JobState::Running;
        record.started_at_ms = Some(now_ms());
        store.put(record).await.unwrap();
    }
    let mut h = Harness::on(store, dir, 2).await;
    assert_eq!(
        h.state("once"),
        (JobState::Failed, Some(ErrorCode::Interrupted))
    );
    let receipt = h.receipt("once");
    assert_eq!(receipt.state(), "failed");
    assert_eq!(
        receipt.statement["predicate"]["outcome"]["error_code"],
        "INTERRUPTED"
    );
    let again = h.next_started().await;
    assert_eq!(again.job_id, "idempotent");
    let terminal = h.scheduler.terminal_events();
    again.finish.send(done()).unwrap();
    assert_eq!(
        h.ended("idempotent", terminal).await.state,
        JobState::Finished
    );
}

#[test]
fn a_job_gives_its_slot_back_when_its_task_returns_before_its_result_is_recorded() {
    let now = Instant::now();
    let mut state = State {
        queue: JobQueue::new(PRIORITY_BOOST_AFTER),
        reserved: HashMap::new(),
        running: HashMap::new(),
        executing: 0,
        draining: false,
    };
    for (seq, id) in ["a", "b"].into_iter().enumerate() {
        state
            .queue
            .push(id.into(), seq as u64, Priority::Normal, now, 1);
    }
    assert_eq!(state.admit(1, now).map(|n| n.0), Some("a".into()));
    assert_eq!(state.admit(1, now), None, "one slot, taken");
    state.returned();
    assert!(
        state.running.contains_key("a"),
        "a's result is not recorded yet"
    );
    assert_eq!(state.admit(1, now).map(|n| n.0), Some("b".into()));
    state.ended("a");
    assert_eq!(state.running.len(), 1);
    state.draining = true;
    state.returned();
    assert_eq!(state.admit(1, now), None, "nothing starts while draining");
}
