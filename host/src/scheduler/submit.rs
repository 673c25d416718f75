//! Accepting a job: validated, routed and checked against policy, its id
//! reserved before the store is asked whether it exists (so two
//! submissions of one id never both become new jobs), checked against the
//! queue's capacity, the disk floor and the store's health, written to the
//! store, then queued.

use super::{Priority, Scheduler};
use crate::job::{JobError, JobRequest};
use crate::secrets;
use crate::store::{JobRecord, Origin, StoreError, now_ms};
use std::time::Instant;
use wasmnode_runtime::TaskFailure;

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

impl SubmitError {
    /// The error code a front door reports, e.g. `QUEUE_FULL` or the kind of
    /// a rejected task (`INVALID_INPUT`, `POLICY_DENIED`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code,
            Self::Draining => "DRAINING",
            Self::QueueFull(_) => "QUEUE_FULL",
            Self::LowDisk { .. } => "INSUFFICIENT_STORAGE",
            Self::Conflict(_) => "CONFLICT",
            Self::Rejected(failure) => failure.kind.code(),
            Self::Store(e) => e.code(),
        }
    }
}

/// Where a job came from: the front door that took it (`api`, `vera`,
/// `splai`, `goliat`, `mcp`), and whom the usage ledger accounts it to
/// (`splai:JOB`, `vera:TASK`; the front door itself when it names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    via: String,
    account: Option<String>,
}

impl Source {
    /// Through `via`, accounted to `account`.
    pub fn accounted(via: &str, account: String) -> Self {
        Self {
            via: via.into(),
            account: Some(account),
        }
    }
}

impl From<&str> for Source {
    fn from(via: &str) -> Self {
        Self {
            via: via.into(),
            account: None,
        }
    }
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

/// A job id being accepted: its request's hash and size.
pub(super) struct Reservation {
    hash: String,
    bytes: u64,
}

impl Scheduler {
    /// Accepts `request`: validated against routing and policy, written to
    /// the store, then queued. With an `origin`, the job's reports are
    /// queued with its state changes.
    pub async fn submit(
        &self,
        mut request: JobRequest,
        origin: Option<Origin>,
        source: impl Into<Source>,
    ) -> Result<Submitted, SubmitError> {
        let Source { via, account } = source.into();
        let inner = &self.inner;
        request.validate()?;
        secrets::validate(&request.runtime.secrets, &inner.settings.secrets)
            .map_err(|why| JobError::new("INVALID_SECRETS", why))?;
        // Values given in the request stay in memory; the store never sees them.
        let withheld = secrets::withhold(&mut request.runtime.secrets);
        let (canonical, hash) = JobRecord::canonical(&request);
        let bytes = canonical.len() as u64;
        // The record takes what it needs; routing takes the request apart.
        let mut record = JobRecord::queued(&request, &canonical, 0, now_ms());
        let priority = Priority::parse(request.priority.as_deref());
        inner
            .runner
            .check(request.into_task())
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
        record.origin = origin;
        record.via = Some(via.clone());
        record.account = account;
        let task_type = record.task_type.clone();
        inner.store.accept(record, canonical).await?;
        inner.held.hold(&job_id, withheld);
        reserved.enqueue(seq, priority);
        inner.metrics.submitted(&task_type, &via);
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

    pub(super) fn check_disk(&self) -> Result<(), SubmitError> {
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
        inner.metrics.queued(state.queue.len());
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
