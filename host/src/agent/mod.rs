//! Attached mode: the node works for a control plane. It registers with what
//! it really has, heartbeats from a thread of its own (long-running work
//! cannot starve it), polls for as many tasks as it has free slots, runs them
//! through the shared scheduler, and delivers every report through the
//! durable outbox, retrying with capped exponential backoff and jitter until
//! the control plane accepts it, across restarts.
//!
//! A slow control plane slows the node down instead of drowning it: no poll
//! while assignments wait to start or reports wait to be delivered; an
//! assignment whose fixed-term lease ran out before it could start is not
//! started; and a task handed out again after the node already finished it
//! gets the stored result reported under its new lease instead of a re-run.

mod assignments;
mod delivery;
pub mod goliat;
pub mod protocol;
pub mod settings;
pub mod splai;
pub mod status;
pub mod transport;

use crate::config::Config;
use crate::facts::{self, Utilisation};
use crate::node::Node;
use crate::store::{Channel, Origin};
use assignments::{Accepted, lease_check};
use protocol::{Assignment, ControlPlane, CpError, Heartbeat, Registration};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Control-plane protocols (`wasmnode agent --protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// SPLAI's worker protocol (register, heartbeat, poll assignments, report).
    Splai,
    /// A GOLIAT-style dashboard (heartbeat, assignment with config_url and split_index).
    Goliat,
}

/// The adapter of `protocol` for the control plane at `url`, reached through
/// `transport`, and how the agent loop behaves with it; an adapter may adjust
/// the node's configuration first (GOLIAT trusts the operator's job).
pub fn attach(
    protocol: Protocol,
    config: &mut Config,
    transport: transport::Transport,
    url: &str,
) -> anyhow::Result<(Arc<dyn ControlPlane>, AgentSettings)> {
    let backoff_max = Duration::from_secs(config.control_plane.backoff_max_seconds.max(1));
    match protocol {
        Protocol::Splai => splai::attach(config, transport, url, backoff_max),
        Protocol::Goliat => goliat::attach(config, transport, url, backoff_max),
    }
}

/// How the agent behaves.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Most tasks in flight (queued or running) at once.
    pub max_parallel_tasks: usize,
    /// Wait between empty polls (jittered ±20%).
    pub poll_interval: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// Where the node is, if configured.
    pub locality: Option<String>,
    /// How often to check whether the registration is out of date (`None`:
    /// never, for protocols without a registration).
    pub refresh: Option<Duration>,
    /// The control plane's fixed lease term, when it has one: an assignment
    /// not started within it is not started at all.
    pub lease: Option<Duration>,
}

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            next: base,
        }
    }

    /// The next wait: the current step, jittered to 50-100%, then doubled.
    pub fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

/// A running agent.
pub struct Agent {
    node: Arc<Node>,
    control_plane: Arc<dyn ControlPlane>,
    settings: AgentSettings,
    reregister: Arc<Notify>,
    /// Told whenever a report left the outbox.
    delivered: Notify,
    heartbeat_ms: Arc<AtomicU64>,
    /// What the control plane accepted last.
    registered: std::sync::Mutex<Option<Registration>>,
}

impl Agent {
    /// An agent for `node` talking to `control_plane`.
    pub fn new(
        node: Arc<Node>,
        control_plane: Arc<dyn ControlPlane>,
        settings: AgentSettings,
    ) -> Self {
        node.control_plane().attach(control_plane.url());
        Self {
            node,
            control_plane,
            settings,
            reregister: Arc::new(Notify::new()),
            delivered: Notify::new(),
            heartbeat_ms: Arc::new(AtomicU64::new(5000)),
            registered: std::sync::Mutex::new(None),
        }
    }

    /// What this node really has.
    async fn registration(&self) -> Registration {
        let node = &self.node;
        let (probes, cached) = node.model_inventory().await;
        let answering: Vec<_> = probes.into_iter().filter(|p| p.available).collect();
        let mut models: Vec<String> = answering
            .iter()
            .flat_map(|p| p.models.iter().cloned())
            .chain(cached)
            .collect();
        models.sort();
        models.dedup();
        let mut tools = node.tools().names();
        if node.policy().sandbox_image.is_some() && node.has_containers() {
            tools.push("shell".into());
        }
        Registration {
            worker_id: node.config.node.worker_id.clone(),
            cpu: node.facts.cpu_cores,
            memory: format!("{}Mi", node.facts.memory_mb),
            gpu: facts::gpu_present(),
            models,
            tools,
            backends: answering.into_iter().map(|p| p.name).collect(),
            locality: self.settings.locality.clone(),
            identity: node.identity().clone(),
        }
    }

    /// Registers, retrying with backoff until accepted or `stop`.
    async fn register(&self, stop: &CancellationToken) -> bool {
        let registration = self.registration().await;
        let mut backoff = Backoff::new(Duration::from_millis(200), self.settings.backoff_max);
        loop {
            match self.control_plane.register(&registration).await {
                Ok(interval) => {
                    self.heartbeat_ms
                        .store(interval.as_millis().max(100) as u64, Ordering::Relaxed);
                    self.node.control_plane().connected();
                    tracing::info!(worker_id = %registration.worker_id, heartbeat = ?interval, "registered with the control plane");
                    *self.registered.lock().expect("registration lock") = Some(registration);
                    return true;
                }
                Err(CpError::Unauthorized(why)) => {
                    tracing::error!(%why, "the control plane refused our token; check control_plane.token (SPLAI_API_TOKEN)");
                    self.node.control_plane().disconnected(&why);
                }
                Err(e @ CpError::Tls(_)) => {
                    tracing::error!(error = %e, "cannot talk to the control plane securely; check tls.ca_file");
                    self.node.control_plane().disconnected(&e.to_string());
                }
                Err(e) => self.node.control_plane().disconnected(&e.to_string()),
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(backoff.delay()) => {}
            }
        }
    }

    /// Runs until `stop` (no new work); reports keep flowing until `flush`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, flush: CancellationToken) {
        if !self.register(&stop).await {
            return;
        }
        if let Some(lease) = self.settings.lease {
            self.node.set_start_check(lease_check(lease));
        }
        self.spawn_heartbeats(flush.clone());
        if let Some(every) = self.settings.refresh {
            tokio::spawn(self.clone().refresh_loop(every, stop.clone()));
        }
        let delivery = tokio::spawn(self.clone().deliver(flush));
        self.poll_loop(&stop).await;
        let _ = delivery.await;
    }

    /// Registers again whenever what the node has (models downloaded,
    /// backends coming and going) differs from what it registered with.
    async fn refresh_loop(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = self.registration().await;
            let changed = self.registered.lock().expect("registration lock").as_ref() != Some(&now);
            if changed {
                tracing::info!("what this node offers changed; registering again");
                self.reregister.notify_one();
            }
        }
    }

    /// Heartbeats on a thread with its own runtime, so that neither running
    /// tasks nor API load can delay them.
    fn spawn_heartbeats(self: &Arc<Self>, stop: CancellationToken) {
        let agent = self.clone();
        let spawned = std::thread::Builder::new()
            .name("wasmnode-heartbeat".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        return tracing::error!(error = %e, "cannot start the heartbeat runtime");
                    }
                };
                runtime.block_on(agent.heartbeat_loop(stop));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat thread");
        }
    }

    async fn heartbeat_loop(&self, stop: CancellationToken) {
        let client = match self.control_plane.duplicate() {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "cannot create the heartbeat client"),
        };
        let mut utilisation = Utilisation::default();
        let mut next = tokio::time::Instant::now();
        loop {
            next += Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let (cpu, memory) = utilisation.sample();
            let load = self.node.load();
            let heartbeat = Heartbeat {
                queue_depth: load.queued,
                running_tasks: load.running,
                cpu_utilization: cpu,
                memory_utilization: memory,
                health: if load.draining {
                    "draining"
                } else if load.refusal.is_some() {
                    "degraded"
                } else {
                    "healthy"
                }
                .into(),
                timestamp_unix: crate::store::now_ms() / 1000,
            };
            match client.heartbeat(&heartbeat).await {
                Ok(()) => self.node.control_plane().connected(),
                Err(CpError::UnknownWorker) => {
                    tracing::warn!("the control plane forgot this worker; registering again");
                    self.reregister.notify_one();
                }
                Err(e) => self.node.control_plane().disconnected(&e.to_string()),
            }
            // A late tick is not followed by a burst of catch-up heartbeats.
            next = next.max(
                tokio::time::Instant::now()
                    - Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed)),
            );
        }
    }

    async fn poll_loop(&self, stop: &CancellationToken) {
        let mut terminal = self.node.endings();
        let mut in_flight: HashSet<String> = match self.node.unfinished() {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.origin.as_ref().is_some_and(Origin::is_control_plane))
                .map(|r| r.job_id)
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read unfinished jobs");
                HashSet::new()
            }
        };
        // Assignments handed out again while an earlier attempt of theirs
        // still runs, by that attempt's job id.
        let mut deferred: HashMap<String, Assignment> = HashMap::new();
        let mut backoff = Backoff::new(Duration::from_millis(200), self.settings.backoff_max);
        loop {
            while let Ok(done) = terminal.try_recv() {
                self.ended(&done, &mut in_flight, &mut deferred).await;
            }
            if stop.is_cancelled() {
                return;
            }
            let free = self
                .settings
                .max_parallel_tasks
                .saturating_sub(in_flight.len());
            let held_back = match free {
                0 => Some("every slot is taken".to_string()),
                _ => self.held_back(&in_flight),
            };
            if let Some(reason) = held_back {
                tracing::trace!(%reason, "not polling");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    done = terminal.recv() => if let Ok(done) = done {
                        self.ended(&done, &mut in_flight, &mut deferred).await;
                    },
                    _ = self.delivered.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                }
                continue;
            }
            let wait = match self.control_plane.poll(free).await {
                Ok(assignments) => {
                    self.node.control_plane().connected();
                    backoff.reset();
                    let got_work = !assignments.is_empty();
                    for assignment in assignments {
                        match self.accept(assignment).await {
                            Accepted::Running(id) => {
                                in_flight.insert(id);
                            }
                            Accepted::After(earlier, assignment) => {
                                in_flight.insert(earlier.clone());
                                deferred.insert(earlier, *assignment);
                            }
                            Accepted::Done => {}
                        }
                    }
                    if got_work {
                        Duration::ZERO
                    } else {
                        self.settings
                            .poll_interval
                            .mul_f64(0.8 + fastrand::f64() * 0.4)
                    }
                }
                Err(CpError::UnknownWorker) => {
                    if !self.register(stop).await {
                        return;
                    }
                    Duration::ZERO
                }
                Err(e) => {
                    self.node.control_plane().disconnected(&e.to_string());
                    backoff.delay()
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.reregister.notified() => {
                    if !self.register(stop).await {
                        return;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Why the node should not ask for work now, if it should not: it
    /// could not accept it, assignments still wait to start, or reports
    /// still wait to be delivered.
    fn held_back(&self, in_flight: &HashSet<String>) -> Option<String> {
        if let Some(reason) = self.node.load().refusal {
            return Some(reason);
        }
        if in_flight.iter().any(|id| self.node.is_waiting(id)) {
            return Some("assignments wait to start".into());
        }
        let pending = self.node.reports_pending(Channel::ControlPlane);
        (pending > self.settings.max_parallel_tasks)
            .then(|| format!("{pending} reports wait to be delivered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.delay()).collect();
        for (d, step) in delays.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            assert!(
                *d >= Duration::from_millis(step / 2) && *d <= Duration::from_millis(step),
                "{d:?} vs {step}"
            );
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }
}
