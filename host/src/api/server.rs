//! Serving the API over HTTP/1.1 so that slow or idle clients cannot
//! starve it: a client must send each request's headers within
//! `api.header_timeout_seconds` (an idle keep-alive connection is closed
//! after as long), at most `api.max_connections` connections are open at
//! once (kept below the process's file-descriptor limit, with descriptors
//! in reserve for the store, the code cache and the tasks), and when the
//! limit is reached the oldest connection that has no request in progress
//! makes room for the new one. With a TLS acceptor the API is served over
//! HTTPS, and the handshake must also finish within the header timeout.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// File descriptors kept for everything but client connections.
pub const FD_RESERVE: u64 = 128;
/// How long open connections may finish their requests after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How many clients the server takes, and how long it waits for them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once at most.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and idle keep-alive time).
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// `max_connections`, lowered to fit the open-file limit `nofile` with
    /// [`FD_RESERVE`] descriptors to spare.
    pub fn fitted(max_connections: usize, header_timeout: Duration, nofile: Option<u64>) -> Self {
        let room = nofile.map_or(usize::MAX, |n| {
            usize::try_from(n.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
        });
        Self {
            max_connections: max_connections.min(room).max(1),
            header_timeout,
        }
    }
}

/// One open connection.
struct Connection {
    opened: Instant,
    /// Requests received and not yet answered in full.
    in_progress: Arc<AtomicUsize>,
    evict: CancellationToken,
}

#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Connection>>,
    next: AtomicU64,
    /// Evicted connections whose tasks have not closed their sockets yet:
    /// they still hold descriptors.
    closing: AtomicUsize,
    /// Signalled each time a connection's task ends.
    closed: tokio::sync::Notify,
}

impl Connections {
    /// Registers a new connection if there is room, making room by closing
    /// the oldest idle one; `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<AtomicUsize>, CancellationToken)> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= max {
            let oldest_idle = open
                .iter()
                .filter(|(_, c)| c.in_progress.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.opened)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = open.remove(&oldest_idle) {
                self.closing.fetch_add(1, Ordering::Relaxed);
                evicted.evict.cancel();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let in_progress = Arc::new(AtomicUsize::new(0));
        let evict = CancellationToken::new();
        open.insert(
            id,
            Connection {
                opened: Instant::now(),
                in_progress: in_progress.clone(),
                evict: evict.clone(),
            },
        );
        Some((id, in_progress, evict))
    }

    /// Forgets connection `id` once its task has ended (its socket closed).
    fn remove(&self, id: u64) {
        if self
            .open
            .lock()
            .expect("connections lock")
            .remove(&id)
            .is_none()
        {
            // It was evicted, and counted as closing since.
            self.closing.fetch_sub(1, Ordering::Relaxed);
        }
        self.closed.notify_waiters();
    }

    /// Whether evicted connections still hold the descriptors that the
    /// next one would need to stay within `max`.
    fn waiting_for_closes(&self, max: usize) -> bool {
        let closing = self.closing.load(Ordering::Relaxed);
        closing > 0 && self.count() + closing >= max
    }

    /// Returns once evicted connections have closed enough sockets for one
    /// more connection within `max`, or at shutdown.
    async fn room(&self, max: usize, shutdown: &CancellationToken) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if !self.waiting_for_closes(max) {
                return;
            }
            tokio::select! {
                _ = closed => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn count(&self) -> usize {
        self.open.lock().expect("connections lock").len()
    }
}

/// Counts a request as in progress until its response body is done.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted while it is sent.
struct Counted {
    body: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` is
/// cancelled, then lets open connections finish (for up to 10 s).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Connections::default());
    let mut refused_since_log = 0u64;
    loop {
        // An evicted connection keeps its descriptor until its task closes
        // it: accepting before then could exceed the descriptor limit.
        connections.room(limits.max_connections, &shutdown).await;
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a transient error: wait a moment
                    // rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some((id, in_progress, evict)) = connections.admit(limits.max_connections) else {
            refused_since_log += 1;
            if refused_since_log == 1 || refused_since_log.is_multiple_of(1000) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = refused_since_log,
                    "every connection is busy; refusing new ones (api.max_connections)"
                );
            }
            continue;
        };
        refused_since_log = 0;
        let _ = stream.set_nodelay(true);
        let (app, connections, shutdown, tls) = (
            app.clone(),
            connections.clone(),
            shutdown.clone(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let open = Open {
                app,
                in_progress,
                evict,
                shutdown,
                header_timeout: limits.header_timeout,
            };
            match tls {
                None => open.serve(stream).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(limits.header_timeout, tls.accept(stream)) => done,
                        _ = open.evict.cancelled() => Ok(Err(std::io::ErrorKind::Interrupted.into())),
                    };
                    match handshake {
                        Ok(Ok(stream)) => open.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            connections.remove(id);
        });
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One admitted connection, ready to be served.
struct Open {
    app: Router,
    in_progress: Arc<AtomicUsize>,
    evict: CancellationToken,
    shutdown: CancellationToken,
    header_timeout: Duration,
}

impl Open {
    /// Serves HTTP/1.1 on `io` until the client leaves, the connection is
    /// evicted, or shutdown (with its grace period).
    async fn serve<Io>(self, io: Io)
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (app, in_progress) = (self.app, self.in_progress);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let counted = InProgress::start(&in_progress);
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Counted {
                        body,
                        _in_progress: counted,
                    })
                }))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = self.evict.cancelled() => {}
            _ = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
            }
        }
    }
}

/// Raises this process's open-file limit to its hard limit; returns the
/// limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a properly initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_under_the_descriptor_limit() {
        let t = Duration::from_secs(10);
        assert_eq!(
            ConnectionLimits::fitted(1024, t, Some(256)).max_connections,
            128
        );
        assert_eq!(
            ConnectionLimits::fitted(1024, t, Some(65536)).max_connections,
            1024
        );
        assert_eq!(
            ConnectionLimits::fitted(1024, t, Some(64)).max_connections,
            1
        );
        assert_eq!(
            ConnectionLimits::fitted(1024, t, None).max_connections,
            1024
        );
    }

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let connections = Connections::default();
        let (first, first_busy, first_evict) = connections.admit(2).unwrap();
        let (_, _, second_evict) = connections.admit(2).unwrap();
        let _busy = InProgress::start(&first_busy);
        let (_, third_busy, _) = connections.admit(2).unwrap();
        assert!(second_evict.is_cancelled(), "the idle one went");
        assert!(
            !first_evict.is_cancelled(),
            "the busy one stays, though older"
        );
        let _busy_too = InProgress::start(&third_busy);
        assert!(connections.admit(2).is_none(), "nothing idle to close");
        connections.remove(first);
        assert!(connections.admit(2).is_some());
    }

    #[tokio::test]
    async fn an_evicted_connection_holds_its_descriptor_until_its_task_ends() {
        let connections = Connections::default();
        let (old, _, _) = connections.admit(1).unwrap();
        let (new, _, new_evict) = connections.admit(1).unwrap();
        assert!(!new_evict.is_cancelled(), "the newcomer stays");
        assert!(
            connections.waiting_for_closes(1),
            "the evicted socket is still open"
        );
        let shutdown = CancellationToken::new();
        let waiting = connections.room(1, &shutdown);
        tokio::pin!(waiting);
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "no accept before it closes"
        );
        connections.remove(old);
        waiting.await;
        assert!(!connections.waiting_for_closes(1));
        connections.remove(new);
    }
}
