//! `wasmnode serve`: the node standalone, serving the local job API until a
//! signal (and the serving half of `wasmnode agent`). The first SIGTERM/SIGINT
//! or `POST /drain` drains (no new jobs, running ones may finish until the
//! drain deadline), then the node exits; a second signal stops running jobs
//! at once.

use super::{Printed, load_config};
use crate::agent::protocol::ControlPlane;
use crate::agent::{Agent, AgentSettings};
use crate::api::server::ConnectionLimits;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::node::Node;
use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Grace after the drain deadline for cancelled jobs to record their state.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// How long a draining agent may keep delivering reports.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Serves until drained.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: ServeArgs,
) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.flags())?;
    run(config, None).await
}

/// What `agent` adds to a serving node.
pub struct Attachment {
    /// The control-plane adapter.
    pub control_plane: Arc<dyn ControlPlane>,
    /// How the agent behaves.
    pub settings: AgentSettings,
}

/// Starts the node with its API (and, attached, the agent loop) and serves
/// until a signal has drained it.
pub async fn run(config: Config, attachment: Option<Attachment>) -> anyhow::Result<Printed> {
    check_exposure(&config)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let address = listener.local_addr()?;
    let tls = match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(cert), Some(key)) => Some(crate::api::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let nofile = crate::api::server::raise_fd_limit();
    let limits = ConnectionLimits::fitted(
        config.api.max_connections,
        Duration::from_secs(config.api.header_timeout_seconds),
        nofile,
    );
    let node = Arc::new(Node::start(config).await?);
    node.spawn_retention();
    node.spawn_chart_samples();
    node.spawn_warm_up();
    node.spawn_plugin_watch();
    crate::vera::callbacks::spawn(node.clone());
    tracing::info!(
        %address,
        worker_id = %node.config.node.worker_id,
        data_dir = %node.config.node.data_dir.display(),
        max_concurrent_jobs = node.load().max_concurrent,
        max_connections = limits.max_connections,
        "wasmnode serving the job API on {scheme}://{address}"
    );
    let agent = attachment.map(|a| {
        let stop = CancellationToken::new();
        let flush = CancellationToken::new();
        let agent = Arc::new(Agent::new(node.clone(), a.control_plane, a.settings));
        let task = tokio::spawn(agent.run(stop.clone(), flush.clone()));
        AgentTask { stop, flush, task }
    });

    let stop = CancellationToken::new();
    tokio::spawn(handle_signals(node.clone(), agent, stop.clone()));
    let mcp = crate::mcp::McpDoor::new(
        crate::mcp::ToolServer::new(node.clone(), node.config.mcp.clone()),
        node.config.api.max_body_bytes,
    );
    let app = crate::api::router(
        node.clone(),
        vec![Arc::new(crate::vera::http::Vera), Arc::new(mcp)],
    );
    crate::api::server::serve(listener, tls, app, limits, stop).await;
    // The node goes with its last handle (HTTP connections may still hold
    // one): dropping its task runtime never blocks, and every write was
    // committed before it was acknowledged.
    tracing::info!("stopped");
    Ok(Printed { status: 0 })
}

/// A running agent loop and its stop switches.
struct AgentTask {
    stop: CancellationToken,
    flush: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Refuses to expose an unauthenticated API beyond loopback unless told to.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    let api = &config.api;
    if api.api_key.is_empty() && !api.listen.ip().is_loopback() && !api.allow_unauthenticated_remote
    {
        bail!(
            "refusing to serve on {} without an API key: set api.api_key (or WASMNODE_API_KEY), \
             or set api.allow_unauthenticated_remote = true to accept the risk",
            api.listen
        );
    }
    Ok(())
}

async fn handle_signals(node: Arc<Node>, agent: Option<AgentTask>, stop: CancellationToken) {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
        _ = node.stop_requested() => tracing::info!("a stop was asked for through POST /drain"),
    }
    let deadline = Duration::from_secs(node.config.scheduler.drain_timeout_seconds);
    tracing::info!(
        running = node.load().running,
        ?deadline,
        "draining: no new jobs; running jobs may finish"
    );
    if let Some(agent) = &agent {
        agent.stop.cancel();
    }
    node.begin_drain();
    let drained = tokio::select! {
        idle = node.wait_idle(tokio::time::Instant::now() + deadline) => idle,
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if !drained {
        tracing::warn!(
            running = node.load().running,
            "stopping the jobs still running"
        );
        node.interrupt_running();
        node.wait_idle(tokio::time::Instant::now() + CANCEL_GRACE)
            .await;
    }
    if let Some(agent) = agent {
        agent.flush.cancel();
        let mut task = agent.task;
        if tokio::time::timeout(FLUSH_GRACE, &mut task).await.is_err() {
            tracing::warn!(
                pending = node.reports_pending(crate::store::Channel::ControlPlane),
                "reports still undelivered; they are kept for the next start"
            );
            task.abort();
        }
    }
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_remote_exposure_is_refused() {
        let mut config = Config::default();
        assert!(check_exposure(&config).is_ok());
        config.api.listen = "0.0.0.0:9000".parse().unwrap();
        assert!(
            check_exposure(&config)
                .unwrap_err()
                .to_string()
                .contains("without an API key")
        );
        config.api.api_key = "k".into();
        assert!(check_exposure(&config).is_ok());
        config.api.api_key.clear();
        config.api.allow_unauthenticated_remote = true;
        assert!(check_exposure(&config).is_ok());
    }
}
