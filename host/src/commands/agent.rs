//! `wasmnode agent`: the node attached to a control plane (SPLAI's worker
//! protocol, or a GOLIAT-style dashboard), serving its local API too.

use super::serve::{Attachment, run};
use super::{Printed, load_config};
use crate::agent::{attach, transport};
use crate::cli::AgentArgs;
use anyhow::Context;

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
    let (control_plane, settings) = attach(args.protocol, &mut config, transport, &url)?;
    run(
        config,
        Some(Attachment {
            control_plane,
            settings,
        }),
    )
    .await
}
