//! `Scheduler`: accepts jobs (durably, before answering), runs them in
//! priority-then-FIFO order with at most `max_concurrent_jobs` at once on a
//! dedicated runtime, cancels them, recovers after a crash and drains on
//! shutdown.
//!
//! Invariants: a job is written to the store before it is acknowledged or
//! enqueued; it leaves the queue and enters the running set under one lock,
//! so it never starts twice; every terminal state is written before it is
//! announced.

mod queue;

pub use queue::Priority;

use crate::agent::report::Origin;
use crate::events::{EventHub, JobEvent};
use crate::job::JobRequest;
use crate::metrics::{CodeLabel, Metrics, StateLabel, TypeLabel};
use crate::store::{JobRecord, JobResult, JobState, JobStore, StoreError, now_ms};
use queue::JobQueue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use wasmnode_runtime::{FailureKind, Router, RunOptions, TaskFailure};

/// How long a waiting job takes to be raised one priority step.
const PRIORITY_BOOST_AFTER: Duration = Duration::from_secs(30);

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs running at once.
    pub max_concurrent_jobs: usize,
    /// Jobs waiting at most.
    pub queue_capacity: usize,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The node is draining and accepts nothing new.
    #[error("the node is shutting down and accepts no new jobs")]
    Draining,
    /// The queue is full.
    #[error("the queue is full ({0} jobs waiting); retry later")]
    QueueFull(usize),
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

struct State {
    queue: JobQueue,
    reserved: HashMap<String, String>,
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
        });
        let scheduler = Self { inner };
        scheduler.recover().await?;
        tokio::spawn(dispatch(scheduler.inner.clone()));
        Ok(scheduler)
    }

    /// After a crash: running jobs were interrupted (re-queued if declared
    /// idempotent, else failed with `INTERRUPTED`); queued jobs queue again.
    async fn recover(&self) -> Result<(), StoreError> {
        let now = Instant::now();
        for mut record in self.inner.store.unfinished()? {
            if record.state == JobState::Running {
                if record.request.idempotent {
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
                    self.inner.record(record).await?;
                    continue;
                }
                self.inner.store.put(record.clone()).await?;
            }
            let priority = Priority::parse(record.request.priority.as_deref());
            self.inner.state.lock().expect("scheduler lock").queue.push(
                record.job_id,
                record.seq,
                priority,
                now,
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
        let hash = JobRecord::hash_of(&request);
        if let Some(existing) = inner.store.get(&request.job_id)? {
            return if existing.spec_hash == hash {
                Ok(Submitted::Existing(Box::new(existing)))
            } else {
                Err(SubmitError::Conflict(request.job_id.clone()))
            };
        }
        inner
            .router
            .plan(request.to_task())
            .map_err(SubmitError::Rejected)?;
        {
            let mut state = inner.state.lock().expect("scheduler lock");
            if state.draining {
                return Err(SubmitError::Draining);
            }
            if let Some(reserved) = state.reserved.get(&request.job_id) {
                return if *reserved == hash {
                    Ok(Submitted::InFlight)
                } else {
                    Err(SubmitError::Conflict(request.job_id.clone()))
                };
            }
            let waiting = state.queue.len() + state.reserved.len();
            if waiting >= inner.settings.queue_capacity {
                return Err(SubmitError::QueueFull(waiting));
            }
            state.reserved.insert(request.job_id.clone(), hash);
        }
        let result = self.accept(request.clone(), origin).await;
        let mut state = inner.state.lock().expect("scheduler lock");
        state.reserved.remove(&request.job_id);
        if let Ok(seq) = &result {
            let priority = Priority::parse(request.priority.as_deref());
            state
                .queue
                .push(request.job_id.clone(), *seq, priority, Instant::now());
            inner.metrics.queued.set(state.queue.len() as i64);
            inner
                .metrics
                .submitted
                .get_or_create(&TypeLabel {
                    task_type: request.task.task_type.clone(),
                })
                .inc();
            drop(state);
            inner.wake.notify_one();
        }
        result.map(|_| Submitted::Accepted)
    }

    async fn accept(
        &self,
        request: JobRequest,
        origin: Option<Origin>,
    ) -> Result<u64, SubmitError> {
        let seq = self.inner.store.next_seq();
        let mut record = JobRecord::queued(request, seq, now_ms());
        if let Some(Origin::Callback { url }) = &origin {
            record.callback = Some(crate::store::CallbackStatus {
                url: url.clone(),
                state: "pending".into(),
                attempts: 0,
                last_error: None,
            });
        }
        record.origin = origin;
        self.inner.store.put(record).await?;
        Ok(seq)
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
        let task_type = record.request.task.task_type.clone();
        self.inner.record(record).await?;
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
    /// Writes `record`; a terminal one with an origin gets its final report
    /// (and output artifact) in the same commit, and is announced to
    /// [`Scheduler::terminal_events`] listeners.
    async fn record(&self, record: JobRecord) -> Result<(), StoreError> {
        let terminal = record.state.is_terminal();
        let report = match &record.origin {
            Some(origin) if terminal => Some(origin.final_report(&record, self.router.artifacts())),
            _ => None,
        };
        let job_id = record.job_id.clone();
        self.store.put_reporting(record, report).await?;
        if terminal {
            let _ = self.terminal.send(job_id);
        }
        Ok(())
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
            self.metrics
                .completed
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                    task_type: task_type.into(),
                })
                .inc();
        }
    }
}

/// Starts queued jobs whenever a slot is free.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let next = {
            let mut state = inner.state.lock().expect("scheduler lock");
            if state.draining || state.executing >= inner.settings.max_concurrent_jobs {
                None
            } else {
                state.queue.pop(Instant::now()).inspect(|id| {
                    state.executing += 1;
                    state.running.insert(
                        id.clone(),
                        RunningJob {
                            cancel: CancellationToken::new(),
                            interrupted: false,
                        },
                    );
                })
            }
        };
        let Some(job_id) = next else {
            inner.wake.notified().await;
            continue;
        };
        {
            let state = inner.state.lock().expect("scheduler lock");
            inner.metrics.queued.set(state.queue.len() as i64);
            inner.metrics.running.set(state.running.len() as i64);
        }
        // Starting commits the job's `running` state; several starts in
        // flight share one commit.
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = start(&inner, &job_id).await {
                tracing::error!(%job_id, error = %e, "could not start job");
                {
                    let mut state = inner.state.lock().expect("scheduler lock");
                    state.running.remove(&job_id);
                    state.executing -= 1;
                }
                inner.changed.notify_waiters();
                inner.wake.notify_one();
            }
        });
    }
}

async fn start(inner: &Arc<Inner>, job_id: &str) -> Result<(), StoreError> {
    let Some(mut record) = inner.store.get(job_id)? else {
        return Err(StoreError::Read(format!(
            "queued job {job_id} is missing from the store"
        )));
    };
    record.state = JobState::Running;
    record.attempts += 1;
    record.started_at_ms = Some(now_ms());
    let running = record
        .origin
        .as_ref()
        .and_then(|o| o.running(&record.job_id));
    inner.store.put_reporting(record.clone(), running).await?;
    let task_type = record.request.task.task_type.clone();
    inner.announce(job_id, JobState::Running, None, &task_type);
    let cancel = {
        let state = inner.state.lock().expect("scheduler lock");
        state
            .running
            .get(job_id)
            .map(|r| r.cancel.clone())
            .unwrap_or_default()
    };
    let task_inner = inner.clone();
    inner.exec.spawn(async move {
        let started = Instant::now();
        let options = RunOptions {
            cancel,
            events: Some(task_inner.events.sink(&record.job_id)),
        };
        let result = task_inner
            .router
            .run(record.request.to_task(), options)
            .await;
        task_inner
            .metrics
            .duration
            .get_or_create(&TypeLabel {
                task_type: task_type.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        let totals = &task_inner.metrics.totals;
        totals.run_micros.fetch_add(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        totals
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ended_at_ms = now_ms();
        task_inner.state.lock().expect("scheduler lock").executing -= 1;
        task_inner.wake.notify_one();
        finish(&task_inner, record, result, ended_at_ms).await;
    });
    Ok(())
}

async fn finish(
    inner: &Arc<Inner>,
    mut record: JobRecord,
    result: Result<wasmnode_runtime::TaskOutcome, TaskFailure>,
    ended_at_ms: u64,
) {
    let job_id = record.job_id.clone();
    let interrupted = inner
        .state
        .lock()
        .expect("scheduler lock")
        .running
        .get(&job_id)
        .is_some_and(|r| r.interrupted);
    let (state, job_result) = match result {
        Ok(outcome) => (JobState::Finished, Some(JobResult::success(outcome))),
        Err(failure) if interrupted && record.request.idempotent => {
            tracing::info!(%job_id, "shutdown interrupted an idempotent job; it stays queued for the next start");
            let _ = failure;
            (JobState::Queued, None)
        }
        Err(failure) if interrupted => {
            let mut r = JobResult::failure(&failure);
            r.error = Some(crate::store::ErrorInfo {
                code: "INTERRUPTED".into(),
                message: "the node shut down before the job finished".into(),
            });
            (JobState::Failed, Some(r))
        }
        Err(failure) => {
            inner
                .metrics
                .executor_errors
                .get_or_create(&CodeLabel {
                    code: failure.kind.code().into(),
                })
                .inc();
            let state = if failure.kind == FailureKind::Cancelled {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            (state, Some(JobResult::failure(&failure)))
        }
    };
    let error = job_result
        .as_ref()
        .and_then(|r| r.error.as_ref())
        .map(|e| e.code.clone());
    record.state = state;
    record.finished_at_ms = state.is_terminal().then_some(ended_at_ms);
    record.result = job_result;
    let task_type = record.request.task.task_type.clone();
    if let Err(e) = inner.record(record).await {
        tracing::error!(%job_id, error = %e, "could not record the job's result");
    }
    {
        let mut state = inner.state.lock().expect("scheduler lock");
        state.running.remove(&job_id);
        inner.metrics.running.set(state.running.len() as i64);
    }
    inner.announce(&job_id, state, error.as_deref(), &task_type);
    inner.changed.notify_waiters();
    inner.wake.notify_one();
}
