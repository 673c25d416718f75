//! Running queued jobs: the dispatcher starts one whenever a slot is free
//! (and the store can record that it started), the task runs on the
//! execution runtime, and its result is recorded.

use super::{Inner, RunningJob};
use crate::metrics::CodeLabel;
use crate::store::{ErrorInfo, JobRecord, JobResult, JobState, StoreError, now_ms};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmnode_runtime::{FailureKind, RunOptions, TaskFailure, TaskOutcome};

/// Starts queued jobs whenever a slot is free.
pub(super) async fn dispatch(inner: Arc<Inner>) {
    loop {
        // Starting writes to the store: while it cannot be written, jobs
        // stay queued rather than fail.
        inner.store.writable().await;
        let next = {
            let mut state = inner.state.lock().expect("scheduler lock");
            if state.draining || state.executing >= inner.settings.max_concurrent_jobs {
                None
            } else {
                state.queue.pop(Instant::now()).inspect(|(id, ..)| {
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
        let Some((job_id, seq, priority, bytes)) = next else {
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
                let requeue = matches!(e, StoreError::Unavailable(_));
                tracing::error!(%job_id, error = %e, requeue, "could not start job");
                {
                    let mut state = inner.state.lock().expect("scheduler lock");
                    state.running.remove(&job_id);
                    state.executing -= 1;
                    if requeue {
                        state
                            .queue
                            .push(job_id.clone(), seq, priority, Instant::now(), bytes);
                    }
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
        record.result = Some(JobResult::error("EXPIRED", reason));
        let task_type = record.task_type.clone();
        inner.store.put_reporting(record, None, None).await?;
        {
            let mut state = inner.state.lock().expect("scheduler lock");
            state.running.remove(job_id);
            state.executing -= 1;
        }
        let _ = inner.terminal.send(job_id.to_string());
        inner.announce(job_id, JobState::Cancelled, Some("EXPIRED"), &task_type);
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
    inner.record(record.clone(), None, running).await?;
    inner.announce(job_id, JobState::Running, None, &record.task_type);
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
        let result = task_inner.router.run(request.into_task(), options).await;
        let label = task_inner.metrics.type_label(&record.task_type);
        task_inner
            .metrics
            .duration
            .get_or_create(&label)
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
    result: Result<TaskOutcome, TaskFailure>,
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
    let (state, ending) = match result {
        Ok(outcome) => (JobState::Finished, Some(JobResult::success(outcome))),
        Err(_) if interrupted && record.idempotent => {
            tracing::info!(%job_id, "shutdown interrupted an idempotent job; it stays queued for the next start");
            (JobState::Queued, None)
        }
        Err(failure) if interrupted => {
            let (mut result, output) = JobResult::failure(&failure);
            result.error = Some(ErrorInfo {
                code: "INTERRUPTED".into(),
                message: "the node shut down before the job finished".into(),
            });
            (JobState::Failed, Some((result, output)))
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
    let (result, output) = ending.unzip();
    let error = result
        .as_ref()
        .and_then(|r| r.error.as_ref())
        .map(|e| e.code.clone());
    record.state = state;
    record.finished_at_ms = state.is_terminal().then_some(ended_at_ms);
    record.result = result;
    let task_type = record.task_type.clone();
    inner.record_until_written(record, output.as_ref()).await;
    {
        let mut state = inner.state.lock().expect("scheduler lock");
        state.running.remove(&job_id);
        inner.metrics.running.set(state.running.len() as i64);
    }
    inner.announce(&job_id, state, error.as_deref(), &task_type);
    inner.changed.notify_waiters();
    inner.wake.notify_one();
}
