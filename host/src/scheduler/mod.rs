//! `Scheduler`: accepts jobs (durably, before answering), runs them in
//! priority-then-FIFO order with at most `max_concurrent_jobs` at once on a
//! dedicated runtime, cancels them, recovers after a crash and drains on
//! shutdown.
//!
//! Invariants: a job id is reserved before the store is asked whether it
//! exists, so two submissions of one id never both become new jobs; a job is
//! written to the store before it is acknowledged or enqueued; it leaves the
//! queue and enters the running set under one lock, so it never starts
//! twice; every terminal state is written before it is announced, and a
//! result that cannot be written yet (a degraded store) is kept and written
//! once the store heals.

mod queue;
mod run;
pub mod settings;
mod settle;
mod submit;

pub use queue::Priority;
pub use submit::{Source, SubmitError, Submitted};

use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::receipts::Notary;
use crate::secrets::{Held, SecretsSection};
use crate::store::{ErrorCode, JobRecord, JobResult, JobState, JobStore, StoreError, now_ms};
use queue::JobQueue;
use settle::{Settled, settle};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use submit::Reservation;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use wasmnode_runtime::{Router, RunOptions, TaskFailure, TaskOutcome, TaskSpec};

/// How long a waiting job takes to be raised one priority step.
const PRIORITY_BOOST_AFTER: Duration = Duration::from_secs(30);

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs running at once.
    pub max_concurrent_jobs: usize,
    /// Jobs waiting at most.
    pub queue_capacity: usize,
    /// Bytes of requests waiting at most.
    pub max_queued_bytes: u64,
    /// New jobs are refused while the disk holding this directory has less
    /// than `min_free_disk_bytes` free.
    pub data_dir: PathBuf,
    /// The free-space floor, bytes (0: no floor).
    pub min_free_disk_bytes: u64,
    /// The operator's secrets, which jobs may name.
    pub secrets: SecretsSection,
}

/// What the scheduler runs tasks on: the node's router (a test runs them
/// on a stand-in).
#[async_trait::async_trait]
pub trait Runs: Send + Sync {
    /// Checks, before a job is accepted, that its task could run here.
    fn check(&self, task: TaskSpec) -> Result<(), TaskFailure>;
    /// Runs a task to its end.
    async fn run(&self, task: TaskSpec, options: RunOptions) -> Result<TaskOutcome, TaskFailure>;
}

#[async_trait::async_trait]
impl Runs for Router {
    fn check(&self, task: TaskSpec) -> Result<(), TaskFailure> {
        Router::check(self, task)
    }

    async fn run(&self, task: TaskSpec, options: RunOptions) -> Result<TaskOutcome, TaskFailure> {
        Router::run(self, task, options).await
    }
}

/// Decides, just before a job starts, whether it still may; a job refused
/// ends as cancelled with code `EXPIRED` and the given reason, and nothing
/// is reported for it (whoever installed the check owns that decision).
pub type StartCheck = Arc<dyn Fn(&JobRecord) -> Result<(), String> + Send + Sync>;

/// What a cancellation did.
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled {
    /// The job's state after the request.
    pub state: JobState,
    /// What happened.
    pub note: String,
}

struct RunningJob {
    cancel: CancellationToken,
    interrupted: bool,
}

struct State {
    queue: JobQueue,
    reserved: HashMap<String, Reservation>,
    /// Jobs started and not yet recorded as ended.
    running: HashMap<String, RunningJob>,
    /// Jobs holding an execution slot: started, and their task not yet
    /// returned. A job gives its slot back before its result is committed,
    /// so commits never keep a core idle.
    executing: usize,
    draining: bool,
}

impl State {
    /// Takes the next queued job into a free execution slot (none while
    /// draining or with every slot taken).
    fn admit(&mut self, slots: usize, now: Instant) -> Option<(String, u64, Priority, u64)> {
        if self.draining || self.executing >= slots {
            return None;
        }
        let next = self.queue.pop(now)?;
        self.executing += 1;
        self.running.insert(
            next.0.clone(),
            RunningJob {
                cancel: CancellationToken::new(),
                interrupted: false,
            },
        );
        Some(next)
    }

    /// A job's task returned: its slot is free for the next job, while the
    /// job itself stays running until its result is recorded.
    fn returned(&mut self) {
        self.executing -= 1;
    }

    /// A job's end is recorded (or it never started): it leaves the running set.
    fn ended(&mut self, job_id: &str) {
        self.running.remove(job_id);
    }
}

struct Inner {
    store: JobStore,
    runner: Arc<dyn Runs>,
    exec: tokio::runtime::Handle,
    events: EventHub,
    metrics: Arc<Metrics>,
    settings: Settings,
    state: Mutex<State>,
    wake: Notify,
    changed: Notify,
    terminal: broadcast::Sender<String>,
    start_check: Mutex<Option<StartCheck>>,
    /// Secret values of queued and running jobs, never stored.
    held: Held,
    /// Signs a receipt of every job that ran (`None`: receipts are off).
    notary: Option<Arc<Notary>>,
}

/// The job scheduler (cheap to clone).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// Recovers the store's unfinished jobs and starts dispatching. Tasks run
    /// on `exec`, a runtime separate from the API's.
    pub async fn start(
        store: JobStore,
        runner: Arc<dyn Runs>,
        exec: tokio::runtime::Handle,
        events: EventHub,
        metrics: Arc<Metrics>,
        settings: Settings,
        notary: Option<Arc<Notary>>,
    ) -> Result<Self, StoreError> {
        let inner = Arc::new(Inner {
            notary,
            store,
            runner,
            exec,
            events,
            metrics,
            settings,
            state: Mutex::new(State {
                queue: JobQueue::new(PRIORITY_BOOST_AFTER),
                reserved: HashMap::new(),
                running: HashMap::new(),
                executing: 0,
                draining: false,
            }),
            wake: Notify::new(),
            changed: Notify::new(),
            held: Held::default(),
            terminal: broadcast::channel(1024).0,
            start_check: Mutex::new(None),
        });
        let scheduler = Self { inner };
        scheduler.recover().await?;
        tokio::spawn(run::dispatch(scheduler.inner.clone()));
        Ok(scheduler)
    }

    /// After a crash: running jobs were interrupted (re-queued if declared
    /// idempotent, else failed with `INTERRUPTED`); queued jobs queue again.
    async fn recover(&self) -> Result<(), StoreError> {
        let now = Instant::now();
        for mut record in self.inner.store.unfinished()? {
            if record.state == JobState::Running {
                match settle(None, true, record.idempotent) {
                    Settled::Requeue => {
                        record.state = JobState::Queued;
                        tracing::info!(job_id = %record.job_id, "re-queueing an idempotent job interrupted by a restart");
                        self.inner.store.put(record.clone()).await?;
                    }
                    Settled::Ended(state, result, output) => {
                        record.state = state;
                        record.finished_at_ms = Some(now_ms());
                        record.result = Some(*result);
                        tracing::warn!(job_id = %record.job_id, "job interrupted by a restart marked failed");
                        let terms = match &self.inner.notary {
                            Some(notary) => self
                                .inner
                                .store
                                .request(&record.job_id)?
                                .map(|request| notary.terms(&request)),
                            None => None,
                        };
                        let output = run::attest(&self.inner, terms, &record, output).await;
                        self.inner
                            .record(record, output.map(Arc::new), None)
                            .await?;
                        continue;
                    }
                }
            }
            let priority = Priority::parse(record.priority.as_deref());
            self.inner.state.lock().expect("scheduler lock").queue.push(
                record.job_id,
                record.seq,
                priority,
                now,
                record.request_bytes,
            );
        }
        self.inner.metrics.queued(self.queue_depth());
        Ok(())
    }

    /// Installs the check every job passes just before it starts.
    pub fn set_start_check(&self, check: StartCheck) {
        *self.inner.start_check.lock().expect("start check lock") = Some(check);
    }

    /// Why new jobs would be refused now (draining, a store that cannot be
    /// written, a nearly full disk), or `None` when they would be accepted.
    pub fn refusal(&self) -> Option<String> {
        if self.is_draining() {
            return Some(SubmitError::Draining.to_string());
        }
        if let Some(reason) = self.inner.store.degraded() {
            return Some(StoreError::Unavailable(reason).to_string());
        }
        self.check_disk().err().map(|e| e.to_string())
    }

    /// Whether `job_id` waits in the queue.
    pub fn is_waiting(&self, job_id: &str) -> bool {
        self.inner
            .state
            .lock()
            .expect("scheduler lock")
            .queue
            .contains(job_id)
    }

    /// Ids of jobs reaching a terminal state, as they do.
    pub fn terminal_events(&self) -> broadcast::Receiver<String> {
        self.inner.terminal.subscribe()
    }

    /// Cancels a queued job at once, or asks a running one to stop.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<Cancelled>, StoreError> {
        let removed = {
            let mut state = self.inner.state.lock().expect("scheduler lock");
            if let Some(running) = state.running.get(job_id) {
                running.cancel.cancel();
                return Ok(Some(Cancelled {
                    state: JobState::Running,
                    note: "Cancellation requested".into(),
                }));
            }
            let removed = state.queue.remove(job_id);
            self.inner.metrics.queued(state.queue.len());
            removed
        };
        let Some(mut record) = self.inner.store.get(job_id)? else {
            return Ok(None);
        };
        if !removed {
            return Ok(Some(Cancelled {
                state: record.state,
                note: format!("The job is already {}", record.state.as_str()),
            }));
        }
        record.state = JobState::Cancelled;
        record.finished_at_ms = Some(now_ms());
        record.result = Some(JobResult::error(
            ErrorCode::CANCELLED,
            "cancelled before it started",
        ));
        self.inner.record_until_written(record, None).await;
        self.inner
            .announce(job_id, JobState::Cancelled, Some(ErrorCode::CANCELLED));
        Ok(Some(Cancelled {
            state: JobState::Cancelled,
            note: "Cancelled before it started".into(),
        }))
    }

    /// Jobs waiting.
    pub fn queue_depth(&self) -> usize {
        self.inner.state.lock().expect("scheduler lock").queue.len()
    }

    /// Bytes of the requests of the jobs waiting.
    pub fn queued_bytes(&self) -> u64 {
        self.inner
            .state
            .lock()
            .expect("scheduler lock")
            .queue
            .bytes()
    }

    /// Jobs running.
    pub fn running(&self) -> usize {
        self.inner
            .state
            .lock()
            .expect("scheduler lock")
            .running
            .len()
    }

    /// Most jobs running at once.
    pub fn max_concurrent(&self) -> usize {
        self.inner.settings.max_concurrent_jobs
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.state.lock().expect("scheduler lock").draining
    }

    /// Stops accepting and starting jobs; queued jobs stay queued (in the
    /// store) for the next start.
    pub fn begin_drain(&self) {
        self.inner.state.lock().expect("scheduler lock").draining = true;
        self.inner.changed.notify_waiters();
    }

    /// Waits until no job runs, or until `deadline`; returns whether idle.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let changed = self.inner.changed.notified();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.running() == 0;
            }
        }
    }

    /// Stops every running job because the node is shutting down: each is
    /// re-queued if idempotent, else failed with `INTERRUPTED`.
    pub fn interrupt_running(&self) {
        let mut state = self.inner.state.lock().expect("scheduler lock");
        for running in state.running.values_mut() {
            running.interrupted = true;
            running.cancel.cancel();
        }
    }
}

impl Inner {
    /// Writes `record` (and what the job produced); a terminal one with an
    /// origin gets its final report in the same
    /// commit, and is announced to [`Scheduler::terminal_events`] listeners.
    async fn record(
        &self,
        record: JobRecord,
        output: Option<Arc<crate::store::EncodedOutput>>,
        running: Option<crate::store::OutboxItem>,
    ) -> Result<(), StoreError> {
        let terminal = record.state.is_terminal();
        let report = match &record.origin {
            Some(origin) if terminal => Some(origin.final_report(&record)),
            _ => running,
        };
        let job_id = record.job_id.clone();
        self.store.put_reporting(record, output, report).await?;
        if terminal {
            let _ = self.terminal.send(job_id);
        }
        Ok(())
    }

    /// [`Inner::record`], waiting for a degraded store to heal rather than
    /// losing the result; gives up only when the store is closed for good.
    /// A terminal record is counted first, so whoever sees the job ended
    /// sees it counted.
    async fn record_until_written(
        &self,
        record: JobRecord,
        output: Option<Arc<crate::store::EncodedOutput>>,
    ) {
        if record.state.is_terminal() {
            self.metrics.ended(record.state, &record.task_type);
            self.metrics.used(&record);
        }
        let job_id = record.job_id.clone();
        let mut told = false;
        loop {
            match self.record(record.clone(), output.clone(), None).await {
                Ok(()) => return,
                Err(StoreError::Closed) => {
                    return tracing::error!(%job_id, "the store closed before the job's result was written");
                }
                Err(e) => {
                    if !told {
                        tracing::warn!(%job_id, error = %e, "the job's result is kept until the store can be written");
                        told = true;
                    }
                    // A failed commit marks the store degraded before it
                    // answers, so this waits for it to heal.
                    self.store.writable().await;
                }
            }
        }
    }

    /// Tells the job's followers its new state (after it is stored); an
    /// ended job's secret values are forgotten.
    fn announce(&self, job_id: &str, state: JobState, error: Option<ErrorCode>) {
        if state.is_terminal() {
            self.held.forget(job_id);
        }
        self.events
            .publish_state(job_id, state.as_str(), error.map(String::from));
    }
}

#[cfg(test)]
mod tests;
