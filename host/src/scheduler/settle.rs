//! How a job's run ends up in its record: one rule for every way a run can
//! end, including the node stopping under it (a shutdown, or a crash found
//! at the next start).

use crate::store::{ErrorCode, JobOutput, JobResult, JobState};
use wasmnode_runtime::{FailureKind, TaskFailure, TaskOutcome};

/// What the record of a job whose run ended says next.
#[derive(Debug, PartialEq)]
pub(super) enum Settled {
    /// The node stopped under an idempotent job: it waits in the queue for
    /// the next start.
    Requeue,
    /// The job is done: its terminal state, how it ended and what it produced.
    Ended(JobState, Box<JobResult>, Option<JobOutput>),
}

/// Why a job interrupted by the node is not re-run.
const NOT_RERUN: &str = "the node stopped while the job was running; it was not re-run because it is not declared idempotent";

/// Settles a run: `ran` is what the task returned, or `None` when the node
/// stopped before it returned (a crash); `interrupted` says the node itself
/// stopped it (shutdown). A task that succeeded stays a success.
pub(super) fn settle(
    ran: Option<Result<TaskOutcome, TaskFailure>>,
    interrupted: bool,
    idempotent: bool,
) -> Settled {
    let interrupted = interrupted || ran.is_none();
    match ran {
        Some(Ok(outcome)) => {
            let (result, output) = JobResult::success(outcome);
            Settled::Ended(JobState::Finished, Box::new(result), Some(output))
        }
        _ if interrupted && idempotent => Settled::Requeue,
        None => Settled::Ended(
            JobState::Failed,
            Box::new(JobResult::error(ErrorCode::Interrupted, NOT_RERUN)),
            None,
        ),
        Some(Err(failure)) if interrupted => {
            let (mut result, output) = JobResult::failure(&failure);
            result.error = JobResult::error(ErrorCode::Interrupted, NOT_RERUN).error;
            Settled::Ended(JobState::Failed, Box::new(result), Some(output))
        }
        Some(Err(failure)) => {
            let state = if failure.kind == FailureKind::Cancelled {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            let (result, output) = JobResult::failure(&failure);
            Settled::Ended(state, Box::new(result), Some(output))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn success() -> TaskOutcome {
        TaskOutcome {
            output: json!({"ok": true}),
            executor: "wasm",
            ..TaskOutcome::default()
        }
    }

    fn code(settled: &Settled) -> Option<(JobState, ErrorCode)> {
        match settled {
            Settled::Ended(state, result, _) => result.error.as_ref().map(|e| (*state, e.code)),
            Settled::Requeue => None,
        }
    }

    #[test]
    fn a_success_is_finished_even_when_the_node_was_stopping() {
        for interrupted in [false, true] {
            let settled = settle(Some(Ok(success())), interrupted, false);
            let Settled::Ended(state, result, output) = settled else {
                panic!("a success ends");
            };
            assert_eq!((state, result.error), (JobState::Finished, None));
            assert_eq!(output.unwrap().output, json!({"ok": true}));
        }
    }

    #[test]
    fn an_interrupted_idempotent_job_is_requeued_after_a_shutdown_or_a_crash() {
        let stopped = TaskFailure::new(FailureKind::Cancelled, "stopped");
        assert_eq!(settle(Some(Err(stopped)), true, true), Settled::Requeue);
        assert_eq!(settle(None, false, true), Settled::Requeue);
    }

    #[test]
    fn an_interrupted_job_that_is_not_idempotent_fails_interrupted_the_same_way_either_way() {
        let stopped = TaskFailure::new(FailureKind::Cancelled, "stopped");
        let shutdown = settle(Some(Err(stopped)), true, false);
        let crash = settle(None, false, false);
        let expected = Some((JobState::Failed, ErrorCode::Interrupted));
        assert_eq!(code(&shutdown), expected);
        assert_eq!(code(&crash), expected);
        let message = |s: &Settled| match s {
            Settled::Ended(_, r, _) => r.error.clone().map(|e| e.message),
            Settled::Requeue => None,
        };
        assert_eq!(message(&shutdown), message(&crash));
    }

    #[test]
    fn a_cancelled_task_is_cancelled_and_other_failures_fail_with_their_kind() {
        let cancelled = TaskFailure::new(FailureKind::Cancelled, "by the user");
        assert_eq!(
            code(&settle(Some(Err(cancelled)), false, true)),
            Some((JobState::Cancelled, ErrorCode::CANCELLED))
        );
        let timeout = TaskFailure::new(FailureKind::Timeout, "too slow");
        assert_eq!(
            code(&settle(Some(Err(timeout)), false, true)),
            Some((JobState::Failed, ErrorCode::Task(FailureKind::Timeout)))
        );
    }
}
