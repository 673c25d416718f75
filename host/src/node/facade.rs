//! What the front doors (the job API, Vera, the control-plane agent) may do
//! with a node: submit, read, cancel and follow jobs, read its load, queue
//! and deliver reports, drain it. They reach nothing else of it.

use super::Node;
use crate::events::{Backlog, Position, Subscription};
use crate::job::JobRequest;
use crate::metrics::Metrics;
use crate::scheduler::{Cancelled, Source, StartCheck, SubmitError, Submitted};
use crate::store::{
    CallbackStatus, Channel, JobFilter, JobRecord, Logs, Origin, OutboxItem, StoreError,
};
use std::sync::Arc;
use tokio::sync::broadcast;
use wasmnode_runtime::{ArtifactStore, Policy, ToolRegistry};

/// How busy the node is, and whether it takes new work.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Jobs running.
    pub running: usize,
    /// Jobs waiting.
    pub queued: usize,
    /// Bytes of the requests waiting.
    pub queued_bytes: u64,
    /// Most jobs running at once.
    pub max_concurrent: usize,
    /// Whether a drain has begun.
    pub draining: bool,
    /// Why new jobs would be refused now, if they would.
    pub refusal: Option<String>,
    /// Why the store cannot be written now, if it cannot.
    pub store_error: Option<String>,
}

impl Node {
    /// Accepts a job (durably, before it answers); `origin` names who wants
    /// to hear how it ends, `source` the front door that took it and whom
    /// its usage is accounted to.
    pub async fn submit(
        &self,
        request: JobRequest,
        origin: Option<Origin>,
        source: impl Into<Source>,
    ) -> Result<Submitted, SubmitError> {
        self.scheduler.submit(request, origin, source).await
    }

    /// The record of `job_id`.
    pub fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.store.get(job_id)
    }

    /// The request `job_id` was submitted with.
    pub fn request(&self, job_id: &str) -> Result<Option<JobRequest>, StoreError> {
        self.store.request(job_id)
    }

    /// What `job_id` produced (its JSON output), once it ended.
    pub fn output(&self, job_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.output(job_id)
    }

    /// What `job_id` printed.
    pub fn logs(&self, job_id: &str) -> Result<Logs, StoreError> {
        self.store.logs(job_id)
    }

    /// A page of the jobs `filter` admits, after `cursor` (see
    /// [`Store::list`](crate::store::Store::list)).
    pub fn jobs(
        &self,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<u64>), StoreError> {
        self.store.list(filter, cursor, limit)
    }

    /// Jobs not yet ended.
    pub fn unfinished(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.store.unfinished()
    }

    /// Cancels a queued job at once, or asks a running one to stop.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<Cancelled>, StoreError> {
        self.scheduler.cancel(job_id).await
    }

    /// Follows `job_id`'s events (`None` beyond `max` followers at once).
    pub fn follow(&self, job_id: &str, max: usize) -> Option<Subscription> {
        self.events.subscribe(job_id, max)
    }

    /// Follows `job_id` from `from`: what it said since then, and a
    /// subscription to the rest (see [`Node::follow`]).
    pub fn follow_from(
        &self,
        job_id: &str,
        max: usize,
        from: Position,
    ) -> Option<(Subscription, Backlog)> {
        self.events.subscribe_from(job_id, max, from)
    }

    /// Ids of jobs as they end.
    pub fn endings(&self) -> broadcast::Receiver<String> {
        self.scheduler.terminal_events()
    }

    /// Waits until `job_id` has ended and gives its record; `endings` must
    /// have been taken (from [`Node::endings`]) before the job was
    /// submitted, so that its ending is never missed. `None` when the node
    /// stops first. Dropping the wait part-way loses nothing.
    pub async fn ended(
        &self,
        job_id: &str,
        endings: &mut broadcast::Receiver<String>,
    ) -> Option<JobRecord> {
        use broadcast::error::RecvError;
        loop {
            if let Ok(Some(record)) = self.job(job_id)
                && record.state.is_terminal()
            {
                return Some(record);
            }
            // Look again only when this job (or, after a lag, any job) ended.
            loop {
                match endings.recv().await {
                    Ok(id) if id == job_id => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }

    /// Whether `job_id` waits in the queue.
    pub fn is_waiting(&self, job_id: &str) -> bool {
        self.scheduler.is_waiting(job_id)
    }

    /// How busy the node is now.
    pub fn load(&self) -> Load {
        let scheduler = &self.scheduler;
        Load {
            running: scheduler.running(),
            queued: scheduler.queue_depth(),
            queued_bytes: scheduler.queued_bytes(),
            max_concurrent: scheduler.max_concurrent(),
            draining: scheduler.is_draining(),
            refusal: scheduler.refusal(),
            store_error: self.store.degraded(),
        }
    }

    /// Durably queues a report on its own.
    pub async fn queue_report(&self, report: OutboxItem) -> Result<(), StoreError> {
        self.store.queue_report(report).await
    }

    /// The oldest undelivered reports on `channel`, up to `limit`.
    pub fn reports(
        &self,
        channel: Channel,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        self.store.outbox(channel, limit)
    }

    /// Undelivered reports on `channel`.
    pub fn reports_pending(&self, channel: Channel) -> usize {
        self.store.outbox_len(channel)
    }

    /// Drops a delivered (or refused for good) report.
    pub async fn report_done(&self, channel: Channel, seq: u64) -> Result<(), StoreError> {
        self.store.outbox_remove(channel, seq).await
    }

    /// Resolves when a report was queued on `channel`.
    pub async fn report_queued(&self, channel: Channel) {
        self.store.outbox_ready(channel).await
    }

    /// Durably records how delivery of `job_id`'s callback went.
    pub async fn set_callback(
        &self,
        job_id: &str,
        status: CallbackStatus,
    ) -> Result<(), StoreError> {
        self.store.set_callback(job_id, status).await
    }

    /// Installs the check every job passes just before it starts.
    pub fn set_start_check(&self, check: StartCheck) {
        self.scheduler.set_start_check(check);
    }

    /// Asks the serving loop to drain and stop, as the first SIGTERM does.
    pub fn request_stop(&self) {
        self.stop_requested.cancel();
    }

    /// Resolves once a stop was asked for through [`Node::request_stop`].
    pub async fn stop_requested(&self) {
        self.stop_requested.cancelled().await;
    }

    /// Stops accepting and starting jobs.
    pub fn begin_drain(&self) {
        self.scheduler.begin_drain();
    }

    /// Waits until no job runs, or until `deadline`; returns whether idle.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        self.scheduler.wait_idle(deadline).await
    }

    /// Stops every running job for a shutdown.
    pub fn interrupt_running(&self) {
        self.scheduler.interrupt_running();
    }

    /// The tools it can run now.
    pub fn tools(&self) -> Arc<ToolRegistry> {
        self.router.tools()
    }

    /// Changes each time the tools change (a plugin added or removed).
    pub fn tools_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tools_version.subscribe()
    }

    /// The node's identity (what others may know of it).
    pub fn identity(&self) -> &crate::identity::PublicIdentity {
        self.identity.public()
    }

    /// What jobs that ended in `[since_ms, until_ms)` used, per account
    /// (only `account`'s, when given).
    pub fn usage(
        &self,
        since_ms: u64,
        until_ms: u64,
        account: Option<&str>,
    ) -> Result<crate::usage::Ledger, StoreError> {
        let mut ledger = crate::usage::Ledger::default();
        self.store.visit_ended(since_ms, until_ms, |record| {
            if account.is_none_or(|a| a == crate::usage::account(record)) {
                ledger.add(record);
            }
        })?;
        Ok(ledger)
    }

    /// The signed receipt of `job_id`'s run, once it ended.
    pub fn receipt(&self, job_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.receipt(job_id)
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.router.policy()
    }

    /// Where output artifacts go.
    pub fn artifacts(&self) -> &ArtifactStore {
        self.router.artifacts()
    }

    /// The languages this node runs from source, with their versions.
    pub fn languages(&self) -> serde_json::Value {
        match self.router.python() {
            Some(python) => serde_json::json!({"python": {"version": python.version()}}),
            None => serde_json::json!({}),
        }
    }

    /// The uploaded blobs.
    pub fn blobs(&self) -> Option<&wasmnode_runtime::blobs::BlobStore> {
        self.router.blobs()
    }

    /// Finished jobs' files.
    pub fn files(&self) -> crate::files::JobFiles {
        crate::files::JobFiles::under(&self.config.node.data_dir)
    }

    /// The WASI sandbox.
    pub fn wasm(&self) -> &wasmnode_runtime::WasmExecutor {
        &self.router.executors().wasm
    }

    /// The retrieval index cache's counters (zero where it is off).
    pub fn index_cache_stats(&self) -> wasmnode_runtime::index_cache::IndexCacheStats {
        self.router
            .index_cache()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    /// The control-plane connection's status.
    pub fn control_plane(&self) -> &crate::agent::status::ControlPlaneStatus {
        &self.control_plane
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether a container engine is configured.
    pub fn has_containers(&self) -> bool {
        self.docker.is_some()
    }

    /// Whether the container engine answers now.
    pub async fn containers_available(&self) -> bool {
        match &self.docker {
            Some(docker) => docker.available().await,
            None => false,
        }
    }

    /// The container engine's root directory (`DockerRootDir`), as the
    /// engine said when the node connected.
    pub fn containers_root_dir(&self) -> Option<&str> {
        self.docker.as_ref()?.root_dir()
    }

    /// CPU and memory utilisation since the last sample, 0..1.
    pub fn utilisation(&self) -> (f64, f64) {
        self.utilisation.lock().expect("utilisation lock").sample()
    }
}
