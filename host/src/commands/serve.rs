//! `wasmnode serve`: the node standalone, serving the local job API until a
//! signal. The first SIGTERM/SIGINT drains (no new jobs, running ones may
//! finish until the drain deadline); a second one stops running jobs at once.

use super::{Printed, load_config};
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::node::Node;
use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Grace after the drain deadline for cancelled jobs to record their state.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Serves until drained.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: ServeArgs,
) -> anyhow::Result<Printed> {
    let mut config = load_config(config_file, &args.node)?;
    if let Some(listen) = args.listen {
        config.api.listen = listen;
    }
    if let Some(n) = args.max_concurrent_jobs {
        config.scheduler.max_concurrent_jobs = n;
    }
    config.validate()?;
    check_exposure(&config)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let address = listener.local_addr()?;
    let node = Arc::new(Node::start(config).await?);
    node.spawn_retention();
    node.spawn_warm_up();
    tracing::info!(
        %address,
        worker_id = %node.config.node.worker_id,
        data_dir = %node.config.node.data_dir.display(),
        max_concurrent_jobs = node.scheduler.max_concurrent(),
        "wasmnode serving the job API on http://{address}"
    );

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(handle_signals(node.clone(), stop_tx));
    let app = crate::api::router(node.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .await
        .context("the API server failed")?;
    tracing::info!("stopped");
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown();
    }
    Ok(Printed { status: 0 })
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

async fn handle_signals(node: Arc<Node>, stop: watch::Sender<bool>) {
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
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    let deadline = Duration::from_secs(node.config.scheduler.drain_timeout_seconds);
    tracing::info!(
        running = node.scheduler.running(),
        ?deadline,
        "draining: no new jobs; running jobs may finish"
    );
    node.scheduler.begin_drain();
    let drained = tokio::select! {
        idle = node.scheduler.wait_idle(tokio::time::Instant::now() + deadline) => idle,
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if !drained {
        tracing::warn!(
            running = node.scheduler.running(),
            "stopping the jobs still running"
        );
        node.scheduler.interrupt_running();
        node.scheduler
            .wait_idle(tokio::time::Instant::now() + CANCEL_GRACE)
            .await;
    }
    let _ = stop.send(true);
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
