//! Delivers the results of Vera-style tasks to their `callback_url`: each
//! callback is tried `vera.callback_attempts` times with doubling waits; the
//! outcome is recorded on the job (visible at `/task/{id}/status`). Pending
//! callbacks live in the durable outbox, so a restart resumes them; with
//! none pending, delivery sleeps until one is queued.
//!
//! Before each attempt the URL is checked again against the allowlist and
//! its host resolved: the request goes to the checked addresses only, and
//! no redirect is followed (a redirect would lead past the allowlist). A
//! URL no longer admitted, or a target whose certificate is not trusted,
//! fails the callback at once: no retry could succeed.

use crate::node::Node;
use crate::store::{CallbackState, CallbackStatus, Channel, OutboxItem};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmnode_runtime::urls::{self, UrlAllowlist, UrlRefused};

/// Callbacks delivered at once.
const PARALLEL: usize = 16;
/// How often the outbox is read again while callbacks are pending.
const RECHECK: Duration = Duration::from_secs(1);

/// Starts the delivery loop.
pub fn spawn(node: Arc<Node>) {
    tokio::spawn(run(node));
}

async fn run(node: Arc<Node>) {
    let allowlist = match UrlAllowlist::new(
        &node.config.vera.callback_allowlist,
        "vera.callback_allowlist",
    ) {
        Ok(list) => Arc::new(list),
        Err(e) => return tracing::error!(error = %e, "callbacks are not delivered"),
    };
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    loop {
        let pending = match node.reports(Channel::Callback, 256) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending callbacks; trying again shortly");
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        if pending.is_empty() {
            // Nothing to deliver: sleep until a callback is queued. The
            // store keeps the signal of one queued since the read above.
            node.report_queued(Channel::Callback).await;
            continue;
        }
        for (seq, item) in pending {
            if in_flight.lock().expect("in-flight lock").len() >= PARALLEL
                || !in_flight.lock().expect("in-flight lock").insert(seq)
            {
                continue;
            }
            let (node, allowlist, in_flight) = (node.clone(), allowlist.clone(), in_flight.clone());
            tokio::spawn(async move {
                deliver(&node, &allowlist, seq, item).await;
                in_flight.lock().expect("in-flight lock").remove(&seq);
            });
        }
        // Some are pending: look again once more are queued, or shortly
        // (for those beyond the in-flight limit and those left to retry).
        tokio::select! {
            _ = node.report_queued(Channel::Callback) => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// Why an attempt failed.
enum Failed {
    /// Worth another attempt (the target did not answer, or not with 2xx).
    Again(String),
    /// Another attempt cannot succeed: the URL is no longer admitted, or
    /// the target's certificate is not trusted.
    Finally(String),
}

/// One attempt: the URL admitted now (allowlist, transport and resolved
/// addresses), posted to the checked addresses without following redirects.
async fn post(
    allowlist: &UrlAllowlist,
    allow_plain_http: bool,
    url: &str,
    body: Vec<u8>,
) -> Result<(), Failed> {
    let admitted = allowlist.admit(url).await.map_err(|e| match e {
        UrlRefused::Unresolved { .. } => Failed::Again(e.to_string()),
        e => Failed::Finally(e.to_string()),
    })?;
    if urls::in_clear(&admitted.url) && !allow_plain_http {
        return Err(Failed::Finally(
            "plain http beyond this machine is refused (vera.allow_plain_http)".into(),
        ));
    }
    let client = admitted
        .client(wasmnode_runtime::tls::client().timeout(Duration::from_secs(10)))
        .build()
        .map_err(|e| Failed::Finally(e.to_string()))?;
    let response = client
        .post(admitted.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| match wasmnode_runtime::tls::failure(&e) {
            Some(why) => Failed::Finally(why),
            None => Failed::Again(e.without_url().to_string()),
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failed::Again(format!(
            "the callback target answered {status}"
        )))
    }
}

async fn deliver(node: &Node, allowlist: &UrlAllowlist, seq: u64, item: OutboxItem) {
    let Some(url) = super::callback_url(&item.origin) else {
        tracing::warn!(job_id = %item.job_id, "callback dropped: its origin names no URL");
        let _ = node.report_done(Channel::Callback, seq).await;
        return;
    };
    let settings = &node.config.vera;
    let Ok(Some(record)) = node.job(&item.job_id) else {
        tracing::warn!(job_id = %item.job_id, "callback dropped: the job is gone");
        let _ = node.report_done(Channel::Callback, seq).await;
        return;
    };
    let body = match super::result_document(node, &record) {
        Ok(body) => body,
        Err(e) => {
            // Kept in the outbox; the delivery loop tries again.
            return tracing::warn!(job_id = %item.job_id, error = %e, "cannot read the task's result for its callback");
        }
    };
    let mut wait = Duration::from_millis(settings.callback_backoff_ms);
    let mut status = record
        .callback
        .clone()
        .unwrap_or_else(|| CallbackStatus::pending(url.clone()));
    for attempt in 1..=settings.callback_attempts {
        status.attempts += 1;
        match post(allowlist, settings.allow_plain_http, &url, body.clone()).await {
            Ok(_) => {
                status.state = CallbackState::Delivered;
                status.last_error = None;
                record_status(node, &item.job_id, status).await;
                let _ = node.report_done(Channel::Callback, seq).await;
                return;
            }
            Err(Failed::Finally(error)) => {
                tracing::warn!(job_id = %item.job_id, attempt, %error, "callback refused");
                status.last_error = Some(error);
                break;
            }
            Err(Failed::Again(error)) => {
                tracing::warn!(job_id = %item.job_id, attempt, %error, "callback failed");
                status.last_error = Some(error);
                if attempt < settings.callback_attempts {
                    record_status(node, &item.job_id, status.clone()).await;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
    status.state = CallbackState::Failed;
    record_status(node, &item.job_id, status).await;
    let _ = node.report_done(Channel::Callback, seq).await;
}

async fn record_status(node: &Node, job_id: &str, status: CallbackStatus) {
    if let Err(e) = node.set_callback(job_id, status).await {
        tracing::error!(%job_id, error = %e, "cannot record the callback status");
    }
}
