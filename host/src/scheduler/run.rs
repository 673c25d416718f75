//! Running queued jobs: a slot whose task returns takes the next one
//! itself, and the dispatcher starts one whenever a slot is otherwise free
//! (and the store can be written); the task runs on the execution runtime
//! while its start is recorded, and its result is recorded after that.

use super::settle::{Settled, settle};
use super::{Inner, Priority};
use crate::files::JobFiles;
use crate::receipts::Terms;
use crate::secrets;
use crate::store::{
    EncodedOutput, ErrorCode, JobOutput, JobRecord, JobResult, JobState, StoreError, now_ms,
};
use std::sync::Arc;
use std::time::Instant;
use wasmnode_runtime::task::millis;
use wasmnode_runtime::{EventSink, RunOptions, StartGate, TaskFailure, TaskMetrics, TaskOutcome};

/// Starts queued jobs whenever a slot is free and no slot that freed took
/// one itself ([`slot_freed`]).
pub(super) async fn dispatch(inner: Arc<Inner>) {
    loop {
        // Starting writes to the store: while it cannot be written, jobs
        // stay queued rather than fail.
        inner.store.writable().await;
        match admit(&inner) {
            Some(admitted) => launch(inner.clone(), admitted),
            None => inner.wake.notified().await,
        }
    }
}

/// Takes the next queued job into a free slot, if there are both.
fn admit(inner: &Inner) -> Option<Admitted> {
    let mut state = inner.state.lock().expect("scheduler lock");
    let (job_id, seq, priority, bytes) =
        state.admit(inner.settings.max_concurrent_jobs, Instant::now())?;
    inner.metrics.depth(state.queue.len(), state.running.len());
    Some(Admitted {
        job_id,
        seq,
        priority,
        bytes,
    })
}

/// Starts an admitted job on the runtime this is called on. Starting
/// commits the job's `running` state; several starts in flight share one
/// commit.
fn launch(inner: Arc<Inner>, admitted: Admitted) {
    tokio::spawn(async move {
        if let Err(e) = start(&inner, &admitted).await {
            not_started(&inner, &admitted, &e);
        }
    });
}

/// A job's task returned and its slot is free: the slot takes the next
/// queued job itself, on the execution runtime where it is, instead of
/// waking the dispatcher to start it (a handoff between threads per job).
/// The dispatcher is woken when there is none to take, or when the store
/// cannot be written now and the next start must wait for it.
fn slot_freed(inner: &Arc<Inner>) {
    inner.state.lock().expect("scheduler lock").returned();
    match inner.store.is_writable().then(|| admit(inner)).flatten() {
        Some(admitted) => launch(inner.clone(), admitted),
        None => inner.wake.notify_one(),
    }
}

/// A job taken from the queue into a slot.
#[derive(Clone)]
struct Admitted {
    job_id: String,
    seq: u64,
    priority: Priority,
    bytes: u64,
}

/// Gives back the slot of a job that did not start because the store
/// failed; it is queued again when the store heals by itself.
fn not_started(inner: &Inner, admitted: &Admitted, e: &StoreError) {
    let job_id = &admitted.job_id;
    let requeue = matches!(e, StoreError::Unavailable(_));
    tracing::error!(%job_id, error = %e, requeue, "could not start job");
    {
        let mut state = inner.state.lock().expect("scheduler lock");
        state.returned();
        state.ended(job_id);
        if requeue {
            state.queue.push(
                job_id.clone(),
                admitted.seq,
                admitted.priority,
                Instant::now(),
                admitted.bytes,
            );
        }
    }
    inner.changed.notify_waiters();
    inner.wake.notify_one();
}

/// Starts an admitted job: records that it runs, and runs it. The record is
/// committed while the task begins; the router holds the task back until
/// the commit only when the job is not idempotent and its task could reach
/// outside its sandbox. Any other job would merely run again after a crash
/// before the commit, which it may, so most starts wait for no disk.
async fn start(inner: &Arc<Inner>, admitted: &Admitted) -> Result<(), StoreError> {
    let job_id = admitted.job_id.as_str();
    let Some(mut record) = inner.store.get(job_id)? else {
        return Err(StoreError::Read(format!(
            "queued job {job_id} is missing from the store"
        )));
    };
    let Some(request) = inner.store.request(job_id)? else {
        return Err(StoreError::Read(format!(
            "the request of queued job {job_id} is missing from the store"
        )));
    };
    let check = inner.start_check.lock().expect("start check lock").clone();
    if let Some(Err(reason)) = check.map(|check| check(&record)) {
        tracing::info!(%job_id, %reason, "job not started");
        record.state = JobState::Cancelled;
        record.finished_at_ms = Some(now_ms());
        record.result = Some(JobResult::error(ErrorCode::Expired, reason));
        let task_type = record.task_type.clone();
        inner.store.put_reporting(record, None, None).await?;
        // Counted once stored: a failed commit re-queues the job, and it is
        // checked (and would be counted) again.
        inner.metrics.ended(JobState::Cancelled, &task_type);
        {
            let mut state = inner.state.lock().expect("scheduler lock");
            state.returned();
            state.ended(job_id);
        }
        let _ = inner.terminal.send(job_id.to_string());
        inner.announce(job_id, JobState::Cancelled, Some(ErrorCode::Expired));
        inner.changed.notify_waiters();
        inner.wake.notify_one();
        return Ok(());
    }
    record.state = JobState::Running;
    record.attempts += 1;
    record.started_at_ms = Some(now_ms());
    let running = record
        .origin
        .as_ref()
        .and_then(|o| o.running(&record.job_id));
    // Followers hear `running` once: when it is recorded, or before the
    // task's first event if the task began first.
    let announce_running: Arc<dyn Fn() + Send + Sync> = {
        let inner = inner.clone();
        let job_id = job_id.to_string();
        let once = std::sync::Once::new();
        Arc::new(move || once.call_once(|| inner.announce(&job_id, JobState::Running, None)))
    };
    let (start_record, gate) = StartGate::new();
    let recording = {
        let inner = inner.clone();
        let record = record.clone();
        let announce_running = announce_running.clone();
        tokio::spawn(async move {
            let result = inner.record(record, None, running).await;
            if result.is_ok() {
                announce_running();
            }
            start_record.recorded(result.is_ok());
            result
        })
    };
    let cancel = {
        let state = inner.state.lock().expect("scheduler lock");
        state
            .running
            .get(job_id)
            .map(|r| r.cancel.clone())
            .unwrap_or_default()
    };
    let secrets = inner
        .held
        .resolve(job_id, &request.runtime.secrets, &inner.settings.secrets);
    // The workspace becomes the job's files; an earlier attempt's go first.
    let files = JobFiles::under(&inner.settings.data_dir);
    let keep_workspace = match files.clear(job_id) {
        Ok(()) => Some(files.dir(job_id)),
        Err(e) => {
            tracing::warn!(%job_id, error = %e, "cannot clear an earlier attempt's files; this run's are not kept");
            None
        }
    };
    let terms = inner.notary.as_ref().map(|n| n.terms(&request));
    let task_inner = inner.clone();
    let admitted = admitted.clone();
    let start_gate = (!record.idempotent).then(|| gate.clone());
    inner.exec.spawn(async move {
        let started = Instant::now();
        let result = match secrets {
            Ok((values, mask)) => {
                let mut task = request.into_task();
                secrets::give(&mut task, values);
                let mask = (!mask.is_empty()).then(|| Arc::new(mask));
                let options = RunOptions {
                    cancel,
                    events: Some(running_first(
                        announce_running,
                        task_inner.events.sink_masked(&record.job_id, mask.clone()),
                    )),
                    mask: mask.clone(),
                    keep_workspace,
                    start: start_gate,
                };
                let result = task_inner.runner.run(task, options).await;
                match mask {
                    Some(mask) => secrets::masked(result, &mask),
                    None => result,
                }
            }
            Err(why) => Err(TaskFailure::invalid_input(why)),
        };
        if gate.held_back() {
            let e = match recording.await {
                Ok(Err(e)) => e,
                _ => StoreError::Closed,
            };
            return not_started(&task_inner, &admitted, &e);
        }
        // A failure keeps what its executor measured, and at least its time.
        let result = result.map_err(|failure| match failure.metrics {
            Some(_) => failure,
            None => failure.with_metrics(TaskMetrics {
                wall_time_ms: millis(started.elapsed()),
                ..TaskMetrics::default()
            }),
        });
        task_inner.metrics.ran(&record.task_type, started.elapsed());
        let ended_at_ms = now_ms();
        slot_freed(&task_inner);
        // The start's record comes first: the end is written after it.
        let _ = recording.await;
        finish(&task_inner, record, result, ended_at_ms, terms).await;
    });
    Ok(())
}

/// `sink`, announcing `running` before the first event it passes on.
fn running_first(announce_running: Arc<dyn Fn() + Send + Sync>, sink: EventSink) -> EventSink {
    Arc::new(move |event| {
        announce_running();
        sink(event)
    })
}

async fn finish(
    inner: &Arc<Inner>,
    mut record: JobRecord,
    result: Result<TaskOutcome, TaskFailure>,
    ended_at_ms: u64,
    terms: Option<Terms>,
) {
    let job_id = record.job_id.clone();
    let interrupted = inner
        .state
        .lock()
        .expect("scheduler lock")
        .running
        .get(&job_id)
        .is_some_and(|r| r.interrupted);
    if let Err(failure) = &result
        && !interrupted
    {
        inner.metrics.executor_error(failure.kind);
    }
    let (state, output) = match settle(Some(result), interrupted, record.idempotent) {
        Settled::Requeue => {
            tracing::info!(%job_id, "shutdown interrupted an idempotent job; it stays queued for the next start");
            record.state = JobState::Queued;
            (JobState::Queued, None)
        }
        Settled::Ended(state, result, output) => {
            record.state = state;
            record.finished_at_ms = Some(ended_at_ms);
            record.result = Some(*result);
            (state, attest(inner, terms, &record, output).await)
        }
    };
    let error = record.error_code();
    inner
        .record_until_written(record, output.map(Arc::new))
        .await;
    {
        let mut state = inner.state.lock().expect("scheduler lock");
        state.ended(&job_id);
        inner.metrics.running(state.running.len());
    }
    inner.announce(&job_id, state, error);
    inner.changed.notify_waiters();
    inner.wake.notify_one();
}

/// The largest output document whose receipt is made on the execution
/// runtime (a job with files, or a larger document, is hashed off it).
const INLINE_RECEIPT_BYTES: usize = 64 << 10;

/// `output`, encoded as the store keeps it, with the signed receipt of the
/// ended job `record` (run under `terms`) naming those very bytes and its
/// kept files; without a receipt on a node that signs none.
pub(super) async fn attest(
    inner: &Arc<Inner>,
    terms: Option<Terms>,
    record: &JobRecord,
    output: Option<JobOutput>,
) -> Option<EncodedOutput> {
    let (Some(notary), Some(terms)) = (inner.notary.clone(), terms) else {
        return output.map(JobOutput::encode);
    };
    let mut output = output.unwrap_or_default().encode();
    let files = JobFiles::under(&inner.settings.data_dir);
    let metrics = inner.metrics.clone();
    let receipt = if output.document.len() <= INLINE_RECEIPT_BYTES && !files.any(&record.job_id) {
        // A small document and no files: a receipt is tens of µs of CPU,
        // less than handing it to another thread and back costs.
        let started = Instant::now();
        let receipt = notary.seal(&terms, record, &output.document, &[]);
        metrics.receipt_made(started.elapsed());
        Ok(receipt)
    } else {
        let ended = record.clone();
        let document = output.document.clone();
        // Hashing the files reads the disk, and hashing a large document
        // takes a while: off the runtime.
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let files = files.digests(&ended.job_id).unwrap_or_else(|e| {
                tracing::warn!(job_id = %ended.job_id, error = %e, "cannot hash the job's files; its receipt names none");
                Vec::new()
            });
            let receipt = notary.seal(&terms, &ended, &document, &files);
            metrics.receipt_made(started.elapsed());
            receipt
        })
        .await
    };
    match receipt {
        Ok(receipt) => output.receipt = Some(receipt),
        Err(e) => {
            tracing::error!(job_id = %record.job_id, error = %e, "signing the receipt failed")
        }
    }
    Some(output)
}
