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

pub use queue::Priority;

use crate::agent::report::Origin;
use crate::events::{EventHub, JobEvent};
use crate::job::{JobError, JobRequest};
use crate::metrics::{Metrics, StateLabel};
use crate::store::{JobRecord, JobResult, JobState, JobStore, StoreError, now_ms};
use queue::JobQueue;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use wasmnode_runtime::{Router, TaskFailure};

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
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] JobError),
    /// The node is draining and accepts nothing new.
    #[error("the node is shutting down and accepts no new jobs")]
    Draining,
    /// The queue holds as many jobs, or as many bytes of requests, as it may.
    #[error("the queue is full ({0}); retry later")]
    QueueFull(String),
    /// The disk is nearly full.
    #[error(
        "the disk holding the node's data has {free_mb} MiB free, below the floor of {floor_mb} MiB (node.min_free_disk_mb); retry later"
    )]
    LowDisk {
        /// Free space, MiB.
        free_mb: u64,
        /// The floor, MiB.
        floor_mb: u64,
    },
    /// The job id exists with a different request.
    #[error("job `{0}` already exists with a different request")]
    Conflict(String),
    /// The task cannot run here (routing, policy, limits).
    #[error("{0}")]
    Rejected(TaskFailure),
    /// The store failed; the job was not accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides, just before a job starts, whether it still may; a job refused
/// ends as cancelled with code `EXPIRED` and the given reason, and nothing
/// is reported for it (whoever installed the check owns that decision).
pub type StartCheck = Arc<dyn Fn(&JobRecord) -> Result<(), String> + Send + Sync>;

/// A successful submission.
#[derive(Debug)]
pub enum Submitted {
    /// Newly accepted (queued).
    Accepted,
    /// The same request was submitted before; this is its current record.
    Existing(Box<JobRecord>),
    /// The same request is being accepted by a concurrent call.
    InFlight,
}

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

/// A job id being accepted: its request's hash and size.
struct Reservation {
    hash: String,
    bytes: u64,
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

struct Inner {
    store: JobStore,
    router: Arc<Router>,
    exec: tokio::runtime::Handle,
    events: EventHub,
    metrics: Arc<Metrics>,
    settings: Settings,
    state: Mutex<State>,
    wake: Notify,
    changed: Notify,
    terminal: broadcast::Sender<String>,
    start_check: Mutex<Option<StartCheck>>,
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
        router: Arc<Router>,
        exec: tokio::runtime::Handle,
        events: EventHub,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Result<Self, StoreError> {
        let inner = Arc::new(Inner {
            store,
            router,
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
                if record.idempotent {
                    record.state = JobState::Queued;
                    tracing::info!(job_id = %record.job_id, "re-queueing an idempotent job interrupted by a restart");
                } else {
                    record.state = JobState::Failed;
                    record.finished_at_ms = Some(now_ms());
                    record.result = Some(JobResult::error(
                        "INTERRUPTED",
                        "the node stopped while the job was running; it was not re-run because it is not declared idempotent",
                    ));
                    tracing::warn!(job_id = %record.job_id, "job interrupted by a restart marked failed");
                    self.inner.record(record, None, None).await?;
                    continue;
                }
                self.inner.store.put(record.clone()).await?;
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
        self.inner.metrics.queued.set(self.queue_depth() as i64);
        Ok(())
    }

    /// Accepts `request`: validated against routing and policy, written to
    /// the store, then queued.
    pub async fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError> {
        self.submit_from(request, None).await
    }

    /// Like [`Scheduler::submit`], for a job that a control-plane task
    /// (`origin`) asked for: its reports are queued with its state changes.
    pub async fn submit_from(
        &self,
        request: JobRequest,
        origin: Option<Origin>,
    ) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        request.validate()?;
        let (canonical, hash) = JobRecord::canonical(&request);
        let bytes = canonical.len() as u64;
        // The record takes what it needs; routing takes the request apart.
        let mut record = JobRecord::queued(&request, &canonical, 0, now_ms());
        let priority = Priority::parse(request.priority.as_deref());
        inner
            .router
            .plan(request.into_task())
            .map_err(SubmitError::Rejected)?;
        let job_id = record.job_id.clone();
        let Some(reserved) = self.reserve(&job_id, &hash, bytes)? else {
            return Ok(Submitted::InFlight);
        };
        if let Some(existing) = inner.store.get(&job_id)? {
            return if existing.spec_hash == hash {
                Ok(Submitted::Existing(Box::new(existing)))
            } else {
                Err(SubmitError::Conflict(job_id))
            };
        }
        if let Some(reason) = inner.store.degraded() {
            return Err(StoreError::Unavailable(reason).into());
        }
        self.check_disk()?;
        self.check_capacity()?;
        let seq = inner.store.next_seq();
        record.seq = seq;
        if let Some(Origin::Callback { url }) = &origin {
            record.callback = Some(crate::store::CallbackStatus {
                url: url.clone(),
                state: "pending".into(),
                attempts: 0,
                last_error: None,
            });
        }
        record.origin = origin;
        let label = inner.metrics.type_label(&record.task_type);
        inner.store.accept(record, canonical).await?;
        reserved.enqueue(seq, priority);
        inner.metrics.submitted.get_or_create(&label).inc();
        inner.wake.notify_one();
        Ok(Submitted::Accepted)
    }

    /// Reserves `job_id` for this submission; `None` when the same request
    /// is being accepted by another call.
    fn reserve(
        &self,
        job_id: &str,
        hash: &str,
        bytes: u64,
    ) -> Result<Option<Reserved<'_>>, SubmitError> {
        let mut state = self.inner.state.lock().expect("scheduler lock");
        if state.draining {
            return Err(SubmitError::Draining);
        }
        if let Some(other) = state.reserved.get(job_id) {
            return if other.hash == hash {
                Ok(None)
            } else {
                Err(SubmitError::Conflict(job_id.to_string()))
            };
        }
        state.reserved.insert(
            job_id.to_string(),
            Reservation {
                hash: hash.to_string(),
                bytes,
            },
        );
        Ok(Some(Reserved {
            scheduler: self,
            job_id: job_id.to_string(),
            bytes,
        }))
    }

    /// Whether the queue has room for the jobs being accepted (this one among
    /// them), by count and by bytes of requests.
    fn check_capacity(&self) -> Result<(), SubmitError> {
        let settings = &self.inner.settings;
        let state = self.inner.state.lock().expect("scheduler lock");
        let waiting = state.queue.len() + state.reserved.len();
        if waiting > settings.queue_capacity {
            return Err(SubmitError::QueueFull(format!(
                "{} jobs waiting",
                waiting - 1
            )));
        }
        let bytes = state.queue.bytes() + state.reserved.values().map(|r| r.bytes).sum::<u64>();
        if bytes > settings.max_queued_bytes {
            return Err(SubmitError::QueueFull(format!(
                "with this one, {bytes} bytes of requests would be waiting; the limit is {} (scheduler.max_queued_bytes)",
                settings.max_queued_bytes
            )));
        }
        Ok(())
    }

    fn check_disk(&self) -> Result<(), SubmitError> {
        let settings = &self.inner.settings;
        if settings.min_free_disk_bytes == 0 {
            return Ok(());
        }
        match wasmnode_runtime::disk::free_bytes(&settings.data_dir) {
            Some(free) if free < settings.min_free_disk_bytes => Err(SubmitError::LowDisk {
                free_mb: free >> 20,
                floor_mb: settings.min_free_disk_bytes >> 20,
            }),
            _ => Ok(()),
        }
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
            self.inner.metrics.queued.set(state.queue.len() as i64);
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
        record.result = Some(JobResult::error("CANCELLED", "cancelled before it started"));
        let task_type = record.task_type.clone();
        self.inner.record_until_written(record, None).await;
        self.inner
            .announce(job_id, JobState::Cancelled, Some("CANCELLED"), &task_type);
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

/// A job id reserved by a submission in progress; released when dropped.
struct Reserved<'a> {
    scheduler: &'a Scheduler,
    job_id: String,
    bytes: u64,
}

impl Reserved<'_> {
    /// Queues the accepted job and releases the reservation in one step.
    fn enqueue(self, seq: u64, priority: Priority) {
        let inner = &self.scheduler.inner;
        let mut state = inner.state.lock().expect("scheduler lock");
        state.queue.push(
            self.job_id.clone(),
            seq,
            priority,
            Instant::now(),
            self.bytes,
        );
        inner.metrics.queued.set(state.queue.len() as i64);
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.scheduler
            .inner
            .state
            .lock()
            .expect("scheduler lock")
            .reserved
            .remove(&self.job_id);
    }
}

impl Inner {
    /// Writes `record` (and what the job produced); a terminal one with an
    /// origin gets its final report (and output artifact) in the same
    /// commit, and is announced to [`Scheduler::terminal_events`] listeners.
    async fn record(
        &self,
        record: JobRecord,
        output: Option<&crate::store::JobOutput>,
        running: Option<crate::agent::report::OutboxItem>,
    ) -> Result<(), StoreError> {
        let terminal = record.state.is_terminal();
        let report = match &record.origin {
            Some(origin) if terminal => {
                let value = output
                    .map(|o| &o.output)
                    .unwrap_or(&serde_json::Value::Null);
                Some(origin.final_report(&record, value, self.router.artifacts()))
            }
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
    async fn record_until_written(
        &self,
        record: JobRecord,
        output: Option<&crate::store::JobOutput>,
    ) {
        let job_id = record.job_id.clone();
        let mut told = false;
        loop {
            match self.record(record.clone(), output, None).await {
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

    fn announce(&self, job_id: &str, state: JobState, error: Option<&str>, task_type: &str) {
        self.events.publish(
            job_id,
            JobEvent::State {
                state: state.as_str().into(),
                error: error.map(String::from),
            },
        );
        let total = match state {
            JobState::Finished => Some(&self.metrics.totals.finished),
            JobState::Failed => Some(&self.metrics.totals.failed),
            JobState::Cancelled => Some(&self.metrics.totals.cancelled),
            JobState::Queued | JobState::Running => None,
        };
        if let Some(total) = total {
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if state.is_terminal() {
            let label = self.metrics.type_label(task_type);
            self.metrics
                .completed
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                    task_type: label.task_type,
                })
                .inc();
        }
    }
}
