//! HTTP plumbing shared by the model backends: a client, bounded retries of
//! connection errors only (a request that reached the server is never sent
//! twice, so a generation that started is never repeated), and mapping of
//! transport and status errors onto `TaskFailure`.

use crate::executor::TaskContext;
use crate::failure::{FailureKind, TaskFailure};
use crate::peer;
use std::time::Duration;

/// Sends `build()` (rebuilt per attempt), retrying connection failures up to
/// `retries` times with backoff, within the task's deadline and cancellation.
pub async fn send(
    what: &str,
    retries: u32,
    ctx: &TaskContext,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, TaskFailure> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        let remaining = ctx
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let request = build().timeout(remaining.max(Duration::from_millis(1)));
        let sent = tokio::select! {
            r = request.send() => r,
            _ = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled()),
        };
        match sent {
            Ok(response) => return Ok(response),
            // A TLS failure is no network hiccup: retrying cannot make the
            // peer trusted.
            Err(e) if e.is_connect() && attempt < retries && crate::tls::failure(&e).is_none() => {
                attempt += 1;
                tracing::debug!(%what, attempt, error = %e, "connection failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled()),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(transport(what, &e, ctx)),
        }
    }
}

/// Maps a transport error: an untrusted peer is `PolicyDenied`, timeouts
/// past the deadline are `Timeout`, the rest means the backend is not
/// answering.
pub fn transport(what: &str, e: &reqwest::Error, ctx: &TaskContext) -> TaskFailure {
    if let Some(why) = crate::tls::failure(e) {
        return TaskFailure::policy_denied(format!("{what}: {why}"));
    }
    if e.is_timeout() && std::time::Instant::now() >= ctx.deadline {
        return TaskFailure::new(
            FailureKind::Timeout,
            format!(
                "{what} did not answer within the task's limit of {:.1}s",
                ctx.limits.timeout.as_secs_f64()
            ),
        );
    }
    TaskFailure::backend_unavailable(format!("{what} is not answering: {}", without_url(e)))
}

/// The error text without the request URL (which may carry secrets).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

/// Turns a non-success response into a failure naming `what`.
pub async fn check(
    what: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, TaskFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: String = String::from_utf8_lossy(&peer::read_prefix(response, 1200).await)
        .chars()
        .take(300)
        .collect();
    let message = format!("{what} answered {status}: {body}");
    Err(match status.as_u16() {
        400 | 404 | 422 => TaskFailure::invalid_input(message),
        401 | 403 => TaskFailure::policy_denied(message),
        _ => TaskFailure::backend_unavailable(message),
    })
}

/// Most bytes of one answer (or one streamed line) a model server may send:
/// what the task may output, and a MiB for the envelope around it.
pub fn answer_cap(ctx: &TaskContext) -> u64 {
    ctx.limits.max_output_bytes.saturating_add(1 << 20)
}

/// Decodes a JSON body of at most [`answer_cap`] bytes.
pub async fn json(
    what: &str,
    response: reqwest::Response,
    ctx: &TaskContext,
) -> Result<serde_json::Value, TaskFailure> {
    let bytes = peer::read_capped(response, answer_cap(ctx))
        .await
        .map_err(|e| match e {
            peer::BodyError::TooLarge { .. } => {
                TaskFailure::new(FailureKind::OutputExceeded, format!("{what}: {e}"))
            }
            peer::BodyError::Transport(e) => transport(what, &e, ctx),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        TaskFailure::backend_unavailable(format!("{what} sent a body that is not JSON: {e}"))
    })
}
