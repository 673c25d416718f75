//! `wasmnode agent`: the node attached to a control plane (SPLAI's worker
//! protocol, or a GOLIAT-style dashboard), serving its local API too.

use super::serve::{Attachment, run};
use super::{Printed, load_config};
use crate::agent::AgentSettings;
use crate::agent::goliat::{GoliatClient, detect_machine_id};
use crate::agent::protocol::ControlPlane;
use crate::agent::splai::SplaiClient;
use crate::agent::transport;
use crate::cli::{AgentArgs, Protocol};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// Runs attached until drained.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: AgentArgs,
) -> anyhow::Result<Printed> {
    let mut config = load_config(config_file, &args.flags())?;
    let url = config
        .control_plane
        .url
        .clone()
        .context("no control plane: pass --control-plane URL or set SPLAI_CONTROL_PLANE_URL")?;
    let transport = transport::client(&url, &config.control_plane)?;
    let backoff_max = Duration::from_secs(config.control_plane.backoff_max_seconds.max(1));
    let (control_plane, settings): (Arc<dyn ControlPlane>, AgentSettings) = match args.protocol {
        Protocol::Splai => (
            Arc::new(SplaiClient::new(
                transport.clone(),
                &url,
                &config.node.worker_id,
                config.control_plane.token(),
                config.control_plane.max_answer_bytes,
            )?),
            AgentSettings {
                max_parallel_tasks: config
                    .control_plane
                    .max_parallel_tasks
                    .unwrap_or(config.scheduler.max_concurrent_jobs),
                poll_interval: Duration::from_millis(config.control_plane.poll_millis),
                backoff_max,
                locality: config.control_plane.locality.clone(),
                refresh: Some(Duration::from_secs(
                    config.control_plane.refresh_seconds.max(1),
                )),
                lease: config
                    .control_plane
                    .lease_seconds
                    .map(Duration::from_secs_f64),
            },
        ),
        Protocol::Goliat => {
            if config.goliat.machine_id.is_empty() {
                config.goliat.machine_id = detect_machine_id();
            }
            let job = &config.goliat.job;
            match job.mode.as_str() {
                "wasm" if job.component.is_some() => {}
                "image" if job.image.is_some() => {}
                _ => anyhow::bail!(
                    "goliat.job must name a `component` (mode wasm) or an `image` (mode image)"
                ),
            }
            // Each assignment's downloaded config is mounted into its own job
            // only (a node mount, outside the mount policy); the operator's
            // own component and image are trusted.
            let work_dir = config.node.data_dir.join("goliat");
            std::fs::create_dir_all(&work_dir)
                .with_context(|| format!("cannot create {}", work_dir.display()))?;
            if let Some(dir) = job
                .component
                .as_deref()
                .and_then(|c| std::path::Path::new(c).parent())
            {
                config.policy.component_roots.push(dir.to_path_buf());
            }
            if let Some(image) = job.image.clone() {
                config.docker.allowed_images.push(image);
            }
            tracing::info!(machine_id = %config.goliat.machine_id, "attaching to a GOLIAT-style dashboard");
            (
                Arc::new(GoliatClient::new(
                    transport.clone(),
                    &url,
                    &config.goliat.machine_id,
                    config.goliat.clone(),
                    work_dir,
                    config.control_plane.max_answer_bytes,
                )?),
                AgentSettings {
                    max_parallel_tasks: config.control_plane.max_parallel_tasks.unwrap_or(1),
                    poll_interval: Duration::from_secs(config.goliat.poll_seconds.max(1)),
                    backoff_max,
                    locality: None,
                    refresh: None,
                    lease: None,
                },
            )
        }
    };
    run(
        config,
        Some(Attachment {
            control_plane,
            settings,
        }),
    )
    .await
}
