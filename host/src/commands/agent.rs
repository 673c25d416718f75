//! `wasmnode agent`: the node attached to a control plane (SPLAI worker
//! protocol), serving its local API too.

use super::serve::{Attachment, run};
use super::{Printed, load_config};
use crate::agent::AgentSettings;
use crate::agent::splai::SplaiClient;
use crate::cli::AgentArgs;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// Runs attached until drained.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: AgentArgs,
) -> anyhow::Result<Printed> {
    let mut config = load_config(config_file, &args.node)?;
    if let Some(url) = args.control_plane {
        config.control_plane.url = Some(url);
    }
    if let Some(id) = args.worker_id {
        config.node.worker_id = id;
    }
    if let Some(listen) = args.listen {
        config.api.listen = listen;
    }
    if let Some(n) = args.max_parallel_tasks {
        config.control_plane.max_parallel_tasks = Some(n);
    }
    config.validate()?;
    let url = config
        .control_plane
        .url
        .clone()
        .context("no control plane: pass --control-plane URL or set SPLAI_CONTROL_PLANE_URL")?;
    let parsed =
        reqwest::Url::parse(&url).with_context(|| format!("invalid control plane URL `{url}`"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https"),
        "control plane URL `{url}` must be http(s)"
    );
    let control_plane =
        SplaiClient::new(&url, &config.node.worker_id, config.control_plane.token())?;
    let settings = AgentSettings {
        max_parallel_tasks: config
            .control_plane
            .max_parallel_tasks
            .unwrap_or(config.scheduler.max_concurrent_jobs),
        poll_interval: Duration::from_millis(config.control_plane.poll_millis),
        backoff_max: Duration::from_secs(config.control_plane.backoff_max_seconds.max(1)),
        locality: config.control_plane.locality.clone(),
    };
    run(
        config,
        Some(Attachment {
            control_plane: Arc::new(control_plane),
            settings,
        }),
    )
    .await
}
