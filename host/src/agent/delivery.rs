//! Delivering the outbox to the control plane: final reports first, a few at
//! once, so a task's `Completed` never waits behind other tasks' `Running`
//! (a task's own `Running` still goes before its final report, never beside
//! it); failures back off with jitter, and nothing leaves the outbox until
//! the control plane accepted (or refused for good) it.

use super::protocol::Reporting;
use super::{Agent, Backoff};
use crate::store::{Channel, Origin, OutboxItem};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reports sent at once.
pub const IN_FLIGHT: usize = 4;
/// Reports read from the outbox per round.
const ROUND: usize = 256;

/// Orders `pending` (oldest first): final reports first, each after its
/// own task's `Running` report where that is still pending, then the other
/// `Running` reports.
pub fn order(pending: Vec<(u64, OutboxItem)>) -> Vec<(u64, OutboxItem)> {
    let finished: Vec<(String, Origin)> = pending
        .iter()
        .filter(|(_, item)| item.status.is_final())
        .map(|(_, item)| (item.job_id.clone(), item.origin.clone()))
        .collect();
    let (mut first, running): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, item)| {
        item.status.is_final()
            || finished
                .iter()
                .any(|(job, origin)| *job == item.job_id && *origin == item.origin)
    });
    first.extend(running);
    first
}

/// The reports to send together next: the first of `ordered`, up to
/// [`IN_FLIGHT`] of them and never two about the same job (so a task's
/// reports arrive in order).
fn next_batch(ordered: Vec<(u64, OutboxItem)>) -> Vec<(u64, OutboxItem)> {
    let mut batch: Vec<(u64, OutboxItem)> = Vec::new();
    for report in ordered {
        if batch.len() == IN_FLIGHT {
            break;
        }
        if !batch.iter().any(|(_, r)| r.job_id == report.1.job_id) {
            batch.push(report);
        }
    }
    batch
}

impl Agent {
    /// Delivers outbox reports until `flush` is cancelled and the outbox is
    /// empty (the caller bounds that wait; the outbox is durable).
    pub(super) async fn deliver(self: Arc<Self>, flush: CancellationToken) {
        let node = &self.node;
        let mut backoff = Backoff::new(Duration::from_millis(200), self.settings.backoff_max);
        loop {
            let pending = match node.reports(Channel::ControlPlane, ROUND) {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    if flush.is_cancelled() {
                        // Nothing can be flushed from an outbox that cannot be read.
                        return;
                    }
                    tokio::select! {
                        _ = flush.cancelled() => {}
                        _ = tokio::time::sleep(backoff.delay()) => {}
                    }
                    continue;
                }
            };
            if pending.is_empty() {
                if flush.is_cancelled() {
                    return;
                }
                // The store keeps the signal of a report queued since the
                // read above, so none is missed while this sleeps.
                tokio::select! {
                    _ = flush.cancelled() => {}
                    _ = node.report_queued(Channel::ControlPlane) => {}
                }
                continue;
            }
            // One batch per round: reports queued meanwhile are ordered in
            // with the rest before the next.
            let batch = next_batch(order(pending));
            let sent = futures::future::join_all(
                batch.iter().map(|(seq, item)| self.deliver_one(*seq, item)),
            )
            .await;
            if sent.contains(&false) {
                tokio::time::sleep(backoff.delay()).await;
            } else {
                backoff.reset();
            }
        }
    }

    /// Sends one report; returns `false` when it should be tried again later.
    async fn deliver_one(&self, seq: u64, item: &OutboxItem) -> bool {
        let node = &self.node;
        let reporting = Reporting { node };
        match self.control_plane.report(item, &reporting).await {
            Ok(()) => {
                self.node.control_plane().connected();
                if let Err(e) = node.report_done(Channel::ControlPlane, seq).await {
                    tracing::error!(seq, error = %e, "cannot drop a delivered report");
                }
                self.delivered.notify_waiters();
                true
            }
            Err(super::CpError::Rejected(why)) => {
                tracing::error!(seq, %why, status = item.status.as_str(), "the control plane refused a report for good; dropping it");
                if let Err(e) = node.report_done(Channel::ControlPlane, seq).await {
                    tracing::error!(seq, error = %e, "cannot drop a refused report");
                }
                self.delivered.notify_waiters();
                true
            }
            Err(e) => {
                if e == super::CpError::UnknownWorker {
                    self.reregister.notify_one();
                }
                self.node.control_plane().disconnected(&e.to_string());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReportStatus;

    fn report(job: &str, lease: &str, status: ReportStatus) -> OutboxItem {
        OutboxItem {
            job_id: job.into(),
            origin: Origin::new(
                "splai",
                Channel::ControlPlane,
                &serde_json::json!({"task_id": job, "lease_id": lease}),
            ),
            status,
            error: None,
            duration_ms: 0,
        }
    }

    #[test]
    fn final_reports_go_first_each_after_its_own_running_report() {
        use ReportStatus::*;
        let pending = vec![
            (1, report("a", "l1", Running)),
            (2, report("b", "l2", Running)),
            (3, report("a", "l1", Completed)),
            (4, report("c", "l3", Failed)),
        ];
        let order: Vec<u64> = order(pending).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(order, [1, 3, 4, 2], "a's two, c's final, then b's Running");
    }

    #[test]
    fn a_batch_never_holds_two_reports_of_one_job() {
        use ReportStatus::*;
        let seqs = |batch: Vec<(u64, OutboxItem)>| -> Vec<u64> {
            batch.iter().map(|(seq, _)| *seq).collect()
        };
        let ordered = || {
            order(vec![
                (1, report("a", "l1", Running)),
                (2, report("a", "l1", Completed)),
                (3, report("b", "l2", Completed)),
            ])
        };
        assert_eq!(
            seqs(next_batch(ordered())),
            [1, 3],
            "a's final waits for its Running"
        );
        let finals = (0..6)
            .map(|i| (i, report(&format!("j{i}"), "l", Completed)))
            .collect();
        assert_eq!(seqs(next_batch(order(finals))), [0, 1, 2, 3]);
    }

    #[test]
    fn a_final_report_under_another_lease_does_not_pull_an_old_running_report_forward() {
        let pending = vec![
            (1, report("a", "old", ReportStatus::Running)),
            (2, report("a", "new", ReportStatus::Completed)),
        ];
        let order: Vec<u64> = order(pending).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(order, [2, 1]);
    }
}
