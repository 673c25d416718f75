//! `GET /jobs/{id}/events`: Server-Sent Events of a job's state changes and
//! output chunks, in order, ending after its final state.

use super::AppState;
use super::error::ApiError;
use crate::events::JobEvent;
use crate::store::JobState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Streams the events of one job.
pub async fn stream(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the state so that no transition in between
    // is lost; the subscription ends with the stream, however it ends.
    let max = app.node.config.api.max_event_streams;
    let mut rx = app.node.follow(&job_id, max).ok_or_else(|| {
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
    let stream = async_stream::stream! {
        let initial = JobEvent::State {
            state: record.state.as_str().into(),
            error: record.error_code().map(String::from),
        };
        let mut last_state = record.state.as_str().to_string();
        yield Ok(to_sse(&initial));
        if !record.state.is_terminal() {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if let JobEvent::State { state, .. } = &event {
                            if *state == last_state {
                                continue;
                            }
                            last_state = state.clone();
                        }
                        yield Ok(to_sse(&event));
                        if JobState::parse(&last_state).is_some_and(JobState::is_terminal) {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        yield Ok(Event::default().event("lagged").data(format!("{{\"skipped\":{skipped}}}")));
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
        drop(rx);
        yield Ok(Event::default().event("end").data("{}"));
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(event: &JobEvent) -> Event {
    Event::default()
        .event(event.name())
        .data(serde_json::to_string(event).expect("events serialize"))
}
