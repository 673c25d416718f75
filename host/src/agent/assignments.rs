//! What the agent does with an assignment: a task this node finished
//! before (an earlier attempt with the same inputs) is answered with the
//! stored result under the new lease; one whose earlier attempt still runs
//! waits for it; any other is submitted to the scheduler. And the start
//! check for control planes whose leases run a fixed term.

use super::Agent;
use super::protocol::Assignment;
use crate::scheduler::{Source, StartCheck, SubmitError, Submitted};
use crate::store::{JobRecord, JobState, Origin, now_ms};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

impl Agent {
    /// A job of ours ended: it leaves the slots, and an assignment deferred
    /// behind it is answered with its result or started now.
    pub(super) async fn ended(
        &self,
        job_id: &str,
        in_flight: &mut HashSet<String>,
        deferred: &mut HashMap<String, Assignment>,
    ) {
        in_flight.remove(job_id);
        let Some(assignment) = deferred.remove(job_id) else {
            return;
        };
        match self.node.job(job_id) {
            Ok(Some(record)) if record.state == JobState::Finished => {
                self.report_again(&record, assignment.origin).await;
            }
            _ => {
                if let Some(id) = self.submit(assignment).await {
                    in_flight.insert(id);
                }
            }
        }
    }

    /// Takes an assignment: one this node finished before (an earlier
    /// attempt with the same inputs) is answered with the stored result; one
    /// whose earlier attempt still runs waits for it; any other is submitted.
    pub(super) async fn accept(&self, assignment: Assignment) -> Accepted {
        for earlier in self.control_plane.earlier_attempts(&assignment) {
            let node = &self.node;
            let Ok(Some(record)) = node.job(&earlier) else {
                continue;
            };
            let same_inputs = node
                .request(&earlier)
                .ok()
                .flatten()
                .is_some_and(|r| r.task == assignment.request.task);
            if !same_inputs {
                continue;
            }
            match record.state {
                JobState::Finished => {
                    self.report_again(&record, assignment.origin).await;
                    return Accepted::Done;
                }
                JobState::Queued | JobState::Running => {
                    return Accepted::After(earlier, Box::new(assignment));
                }
                JobState::Failed | JobState::Cancelled => break,
            }
        }
        match self.submit(assignment).await {
            Some(id) => Accepted::Running(id),
            None => Accepted::Done,
        }
    }

    /// Reports the stored result of the finished job `record` under `origin`.
    async fn report_again(&self, record: &JobRecord, origin: Origin) {
        tracing::info!(job_id = %record.job_id, "a task this node already finished was handed out again; reporting its result under the new lease");
        if let Err(e) = self.node.queue_report(origin.final_report(record)).await {
            tracing::error!(error = %e, "cannot queue the report of the stored result");
        }
    }

    /// Submits an assignment; one this node cannot run is reported failed at
    /// once so the control plane does not wait for its lease to expire.
    async fn submit(&self, assignment: Assignment) -> Option<String> {
        let job_id = assignment.request.job_id.clone();
        let origin = assignment.origin.clone();
        let source = match assignment.account {
            Some(account) => Source::accounted(origin.protocol(), account),
            None => origin.protocol().into(),
        };
        match self
            .node
            .submit(assignment.request, Some(origin.clone()), source)
            .await
        {
            Ok(Submitted::Accepted | Submitted::InFlight) => Some(job_id),
            Ok(Submitted::Existing(record)) => (!record.state.is_terminal()).then_some(job_id),
            Err(SubmitError::Rejected(failure)) => {
                let report = origin.rejected(&job_id, &failure);
                if let Err(e) = self.node.queue_report(report).await {
                    tracing::error!(error = %e, "cannot queue the rejection report");
                }
                None
            }
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "assignment not accepted now; its lease will expire and it will be re-assigned");
                None
            }
        }
    }
}

/// What became of an assignment.
pub(super) enum Accepted {
    /// Submitted as this job.
    Running(String),
    /// Waits for this earlier attempt of the same task to end.
    After(String, Box<Assignment>),
    /// Answered (or refused) without a job.
    Done,
}

/// The start check for a control plane whose leases run a fixed `term` from
/// the assignment: a job of its that did not start within the term is not
/// started (the control plane hands it out again).
pub(super) fn lease_check(term: Duration) -> StartCheck {
    let term_ms = term.as_millis() as u64;
    Arc::new(move |record: &JobRecord| {
        let leased = record.origin.as_ref().is_some_and(Origin::is_control_plane);
        if leased && now_ms() > record.submitted_at_ms + term_ms {
            return Err(format!(
                "its lease of {:.1} s ran out before it could start; the control plane will hand it out again",
                term.as_secs_f64()
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobRequest;
    use crate::store::Channel;

    fn record(origin: Option<Origin>, submitted_at_ms: u64) -> JobRecord {
        let request = JobRequest::parse(
            br#"{"protocol_version":1,"job_id":"j","task":{"type":"retrieval"},"runtime":{"mode":"auto"}}"#,
        )
        .unwrap();
        let (canonical, _) = JobRecord::canonical(&request);
        let mut record = JobRecord::queued(&request, &canonical, 1, submitted_at_ms);
        record.origin = origin;
        record
    }

    #[test]
    fn only_leased_jobs_past_their_term_are_refused_a_start() {
        let check = lease_check(Duration::from_secs(3));
        let splai = Origin::new("splai", Channel::ControlPlane, &serde_json::json!({}));
        assert!(check(&record(Some(splai.clone()), now_ms())).is_ok());
        let stale = check(&record(Some(splai), now_ms() - 4_000)).unwrap_err();
        assert!(stale.contains("lease of 3.0 s ran out"), "{stale}");
        assert!(
            check(&record(None, now_ms() - 4_000)).is_ok(),
            "API jobs have no lease"
        );
        let callback = Origin::new("callback", Channel::Callback, &serde_json::json!({}));
        assert!(check(&record(Some(callback), now_ms() - 4_000)).is_ok());
    }
}
