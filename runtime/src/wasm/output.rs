//! `CappedPipe`: a guest's stdout or stderr, captured up to a cap and
//! forwarded chunk by chunk to the task's event sink as it is written.
//!
//! A write past the cap keeps what fits, marks the pipe as overflowed and
//! traps the guest; the executor then fails the task with `OutputExceeded`.

use crate::executor::{EventSink, TaskEvent};
use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which stream a pipe captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The error a guest traps with when it writes past its cap.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} exceeded its cap of {1} bytes")]
pub struct OutputCapExceeded(pub Stream, pub usize);

struct Shared {
    buffer: Mutex<BytesMut>,
    overflowed: AtomicBool,
}

/// A capped, shareable capture of one output stream.
#[derive(Clone)]
pub struct CappedPipe {
    stream: Stream,
    cap: usize,
    shared: Arc<Shared>,
    sink: Option<EventSink>,
}

impl CappedPipe {
    /// Captures up to `cap` bytes of `stream`, forwarding chunks to `sink`.
    pub fn new(stream: Stream, cap: usize, sink: Option<EventSink>) -> Self {
        Self {
            stream,
            cap,
            shared: Arc::new(Shared {
                buffer: Mutex::new(BytesMut::new()),
                overflowed: AtomicBool::new(false),
            }),
            sink,
        }
    }

    /// Whether the guest wrote past the cap.
    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// Everything captured so far, as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.shared.buffer.lock().expect("pipe lock")).into_owned()
    }

    /// Appends as much of `bytes` as fits; returns how much was kept and
    /// whether anything was cut.
    fn append(&self, bytes: &[u8]) -> (usize, bool) {
        let mut buffer = self.shared.buffer.lock().expect("pipe lock");
        let room = self.cap.saturating_sub(buffer.len());
        let kept = bytes.len().min(room);
        buffer.extend_from_slice(&bytes[..kept]);
        drop(buffer);
        if kept > 0
            && let Some(sink) = &self.sink
        {
            let chunk = bytes[..kept].to_vec();
            sink(match self.stream {
                Stream::Stdout => TaskEvent::Stdout(chunk),
                Stream::Stderr => TaskEvent::Stderr(chunk),
            });
        }
        let cut = kept < bytes.len();
        if cut {
            self.shared.overflowed.store(true, Ordering::Relaxed);
        }
        (kept, cut)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match self.append(&bytes) {
            (_, false) => Ok(()),
            (_, true) => Err(StreamError::Trap(
                OutputCapExceeded(self.stream, self.cap).into(),
            )),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.overflowed() {
            return Err(StreamError::Trap(
                OutputCapExceeded(self.stream, self.cap).into(),
            ));
        }
        // Accept a little more than the room left so that a write past the
        // cap is seen (and reported) rather than blocked forever.
        let used = self.shared.buffer.lock().expect("pipe lock").len();
        Ok(self.cap.saturating_sub(used).saturating_add(1).min(1 << 20))
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.append(buf) {
            (_, false) => Poll::Ready(Ok(buf.len())),
            (_, true) => Poll::Ready(Err(io::Error::other(OutputCapExceeded(
                self.stream,
                self.cap,
            )))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_forwards_and_flags_overflow() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
        let mut pipe = CappedPipe::new(Stream::Stdout, 5, Some(sink));
        pipe.write(Bytes::from_static(b"abc")).unwrap();
        assert!(!pipe.overflowed());
        assert!(matches!(
            pipe.write(Bytes::from_static(b"defg")),
            Err(StreamError::Trap(_))
        ));
        assert!(pipe.overflowed());
        assert_eq!(pipe.text(), "abcde");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                TaskEvent::Stdout(b"abc".to_vec()),
                TaskEvent::Stdout(b"de".to_vec())
            ]
        );
        assert!(pipe.check_write().is_err());
    }
}
