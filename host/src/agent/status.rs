//! The node's view of its control-plane connection, for `/health` and logs.

use crate::store::{now_ms, rfc3339};
use serde_json::{Value, json};
use std::sync::Mutex;

#[derive(Debug, Clone)]
struct State {
    url: String,
    connected: bool,
    since_ms: u64,
    last_error: Option<String>,
}

/// Connected or not, since when, and the last error.
#[derive(Debug, Default)]
pub struct ControlPlaneStatus {
    state: Mutex<Option<State>>,
}

impl ControlPlaneStatus {
    /// Starts tracking the connection to `url` (disconnected until it
    /// answers); the URL is shown and logged without credentials.
    pub fn attach(&self, url: &str) {
        *self.state.lock().expect("status lock") = Some(State {
            url: wasmnode_runtime::urls::redact(url),
            connected: false,
            since_ms: now_ms(),
            last_error: None,
        });
    }

    /// The control plane answered.
    pub fn connected(&self) {
        let mut guard = self.state.lock().expect("status lock");
        if let Some(state) = guard.as_mut()
            && !state.connected
        {
            tracing::info!(url = %state.url, "control plane connected");
            state.connected = true;
            state.since_ms = now_ms();
            state.last_error = None;
        }
    }

    /// The control plane failed to answer; logs the change once.
    pub fn disconnected(&self, error: &str) {
        let mut guard = self.state.lock().expect("status lock");
        if let Some(state) = guard.as_mut() {
            if state.connected || state.last_error.is_none() {
                tracing::warn!(url = %state.url, %error, "control plane unreachable; work continues and reports are buffered");
            }
            if state.connected {
                state.connected = false;
                state.since_ms = now_ms();
            }
            state.last_error = Some(error.to_string());
        }
    }

    /// The `/health` view, or `None` when the node is not attached.
    pub fn snapshot(&self, pending_reports: usize) -> Option<Value> {
        let state = self.state.lock().expect("status lock").clone()?;
        Some(json!({
            "url": state.url,
            "state": if state.connected { "connected" } else { "disconnected" },
            "since": rfc3339(state.since_ms),
            "last_error": state.last_error,
            "pending_reports": pending_reports,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_transitions() {
        let status = ControlPlaneStatus::default();
        assert!(status.snapshot(0).is_none());
        status.attach("http://worker:s3cret@cp/?token=t0ken");
        let shown = status.snapshot(0).unwrap();
        assert_eq!(shown["state"], "disconnected");
        assert!(
            !shown.to_string().contains("s3cret") && !shown.to_string().contains("t0ken"),
            "{shown}"
        );
        status.connected();
        assert_eq!(status.snapshot(2).unwrap()["state"], "connected");
        status.disconnected("connection refused");
        let snap = status.snapshot(3).unwrap();
        assert_eq!(snap["state"], "disconnected");
        assert_eq!(snap["last_error"], "connection refused");
        assert_eq!(snap["pending_reports"], 3);
    }
}
