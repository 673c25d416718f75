//! `GET /jobs/{id}/events`: Server-Sent Events of a job's state changes and
//! output lines, in order, ending after its final state. Every event's `id`
//! is the follower's position (`OUT.ERR.STATE`: bytes of stdout and stderr,
//! rank of the state); a follower that connects late gets the output so far
//! first, and one that reconnects with `Last-Event-ID` gets what it missed,
//! with no gap or repeat.

use super::AppState;
use super::error::ApiError;
use crate::events::{ENDED, JobEvent, Position, rank};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Streams the events of one job.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs", params(("id" = String, Path, description = "The job id"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")), responses((status = 200, description = "Server-Sent Events: state, stdout, stderr, token, progress, log, then end", content_type = "text/event-stream"), (status = 401, description = "No API key, or the wrong one"), (status = 404, description = "No such job"), (status = 429, description = "Too many open streams")))]
pub async fn stream(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = match headers.get("last-event-id") {
        None => Position::default(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(Position::parse)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_EVENT_ID",
                    "Last-Event-ID must be an id this stream sent (OUT.ERR.STATE)",
                )
            })?,
    };
    // Subscribe before reading the record so that nothing in between is
    // lost; the subscription ends with the stream, however it ends.
    let max = app.node.config.api.max_event_streams;
    let (mut rx, backlog) = app.node.follow_from(&job_id, max, from).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_STREAMS",
            format!("{max} event streams are open already (api.max_event_streams); retry later"),
        )
        .retry_after(5)
    })?;
    let record = match app.node.job(&job_id) {
        Ok(Some(record)) => record,
        Ok(None) => return Err(ApiError::job_not_found(&job_id)),
        Err(e) => return Err(ApiError::store(e)),
    };
    // The journal speaks for a job it has heard from; the stored record
    // (with its stored output) for one that ended before anyone followed it.
    let (state, error) = backlog.state.clone().unwrap_or_else(|| {
        (
            record.state.as_str().to_string(),
            record.error_code().map(String::from),
        )
    });
    let ended = rank(&state) == ENDED;
    // Each stream's backlog, and where the follower is once it has it.
    let (stdout, stderr, truncated, out_end, err_end) = if backlog.state.is_none() && ended {
        let logs = app.node.logs(&job_id).map_err(ApiError::store)?;
        let end = |text: &str, from: u64| from.max(text.len() as u64);
        (
            since(&logs.stdout, from.out),
            since(&logs.stderr, from.err),
            false,
            end(&logs.stdout, from.out),
            end(&logs.stderr, from.err),
        )
    } else {
        let at = backlog.at;
        (
            backlog.stdout,
            backlog.stderr,
            backlog.truncated,
            at.out.max(from.out),
            at.err.max(from.err),
        )
    };
    let stream = async_stream::stream! {
        let mut at = from;
        let mut last_state = (rank(&state) <= from.state).then(|| state.clone());
        let state_event = JobEvent::State { state: state.clone(), error };
        if !ended && last_state.is_none() {
            at.state = rank(&state);
            last_state = Some(state.clone());
            yield Ok(to_sse(&state_event, at));
        }
        if truncated {
            yield Ok(Event::default().id(at.id()).event("truncated").data("{}"));
        }
        at.out = out_end;
        if !stdout.is_empty() {
            yield Ok(to_sse(&JobEvent::Stdout { data: stdout }, at));
        }
        at.err = err_end;
        if !stderr.is_empty() {
            yield Ok(to_sse(&JobEvent::Stderr { data: stderr }, at));
        }
        if ended {
            if rank(&state) > from.state {
                at.state = ENDED;
                yield Ok(to_sse(&state_event, at));
            }
        } else {
            loop {
                match rx.next().await {
                    Ok(sequenced) => {
                        if let JobEvent::State { state, .. } = &sequenced.event {
                            if last_state.as_ref() == Some(state) {
                                continue;
                            }
                            last_state = Some(state.clone());
                        }
                        at = Position {
                            out: at.out.max(sequenced.at.out),
                            err: at.err.max(sequenced.at.err),
                            state: sequenced.at.state.max(at.state),
                        };
                        yield Ok(to_sse(&sequenced.event, at));
                        if at.state == ENDED {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        yield Ok(Event::default().id(at.id()).event("lagged").data(format!("{{\"skipped\":{skipped}}}")));
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
        drop(rx);
        yield Ok(Event::default().id(at.id()).event("end").data("{}"));
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Stored output from byte `offset` on (nothing past its end).
fn since(text: &str, offset: u64) -> String {
    let bytes = text.as_bytes();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn to_sse(event: &JobEvent, at: Position) -> Event {
    Event::default()
        .id(at.id())
        .event(event.name())
        .data(serde_json::to_string(event).expect("events serialize"))
}
