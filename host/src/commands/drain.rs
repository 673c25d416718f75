//! `wasmnode drain`: asks the node serving on this machine to drain and
//! stop (`POST /drain`), then waits until it no longer answers.

use super::{Printed, load_config};
use crate::cli::DrainArgs;
use anyhow::{Context, bail};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How often the node is asked whether it is still there.
const POLL: Duration = Duration::from_millis(200);

/// Drains the node and waits for it to stop.
pub async fn execute(
    config_file: Option<&std::path::Path>,
    args: DrainArgs,
) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &args.node.flags())?;
    let url = args
        .url
        .unwrap_or_else(|| format!("http://{}", local(config.api.listen)));
    let url = url.trim_end_matches('/');
    let timeout = Duration::from_secs(
        args.timeout
            .unwrap_or(config.scheduler.drain_timeout_seconds + 15),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // A JSON body: the API refuses other POSTs (browsers cannot send it
    // across origins without a preflight).
    let mut request = client
        .post(format!("{url}/drain"))
        .json(&serde_json::json!({}));
    if !config.api.api_key.is_empty() {
        request = request.header("x-api-key", &config.api.api_key);
    }
    let answer = request
        .send()
        .await
        .with_context(|| format!("no node answers at {url}"))?;
    if !answer.status().is_success() {
        bail!(
            "the node at {url} refused to drain: {} {}",
            answer.status(),
            answer.text().await.unwrap_or_default()
        );
    }
    eprintln!("draining the node at {url}; waiting up to {timeout:?} for it to stop");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if client.get(format!("{url}/health")).send().await.is_err() {
            eprintln!("the node has stopped");
            return Ok(Printed { status: 0 });
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the node at {url} was still answering after {timeout:?}")
}

/// Where to reach a node listening on `listen` from this machine.
fn local(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}
