//! `GET /usage`: what jobs that ended in a time window used, summed per
//! account (see [`crate::usage`]).

use super::{ApiError, AppState};
use crate::store::{now_ms, rfc3339};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The window when none is given: the last day.
const DEFAULT_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// `?since=…&until=…&account=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// From (RFC 3339 or ms since the epoch; default 24 h ago).
    since: Option<String>,
    /// Until, not included (default now).
    until: Option<String>,
    /// Only this account.
    account: Option<String>,
}

/// `GET /usage?since=T&until=T&account=A`: sums of what jobs that ended in
/// `[since, until)` used, per account (or only `account`'s); times are
/// RFC 3339 or milliseconds since the Unix epoch.
#[utoipa::path(get, path = "/usage", tag = "node", params(UsageQuery), responses((status = 200, description = "Usage summed per account", body = Object), (status = 400, description = "A bad time or query (INVALID_QUERY)"), (status = 401, description = "No API key, or the wrong one")))]
pub async fn usage(
    State(app): State<AppState>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_QUERY", message);
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let now = now_ms();
    let until = match q.until.as_deref() {
        Some(t) => instant(t).ok_or_else(|| bad(format!("until `{t}` is not a time")))?,
        None => now,
    };
    let since = match q.since.as_deref() {
        Some(t) => instant(t).ok_or_else(|| bad(format!("since `{t}` is not a time")))?,
        None => until.saturating_sub(DEFAULT_WINDOW_MS),
    };
    if since > until {
        return Err(bad(format!(
            "since ({}) is after until ({})",
            rfc3339(since),
            rfc3339(until)
        )));
    }
    // Up to every job the store keeps is read: off the async workers.
    let node = app.node.clone();
    let mut ledger =
        tokio::task::spawn_blocking(move || node.usage(since, until, q.account.as_deref()))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
            })?
            .map_err(ApiError::store)?;
    Ok(Json(json!({
        "since": rfc3339(since),
        "until": rfc3339(until),
        "accounts": std::mem::take(&mut ledger.accounts),
        "total": ledger.total,
    })))
}

/// `t` as ms since the Unix epoch: RFC 3339, or a number of milliseconds.
fn instant(t: &str) -> Option<u64> {
    if let Ok(ms) = t.parse::<u64>() {
        return Some(ms);
    }
    let at = humantime::parse_rfc3339_weak(t).ok()?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(instant("1000"), Some(1000));
        assert_eq!(instant("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(instant("2026-12-05T00:00:00Z"), Some(1_796_428_800_000));
        assert_eq!(instant("yesterday"), None);
    }
}
