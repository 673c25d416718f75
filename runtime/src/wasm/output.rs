//! `CappedPipe`: a guest's stdout or stderr as a WASI output stream over an
//! [`OutputCapture`]. A write past the cap keeps what fits and traps the
//! guest; the executor then fails the task with `OutputExceeded`.

use crate::capture::{OutputCapture, Stream};
use crate::executor::{EventSink, TaskEvent};
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The error a guest traps with when it writes past its cap.
#[derive(Debug, thiserror::Error)]
#[error("{name} exceeded its cap of {cap} bytes", name = .0.name(), cap = .1)]
pub struct OutputCapExceeded(pub Stream, pub usize);

/// A capped, shareable WASI output stream.
#[derive(Clone)]
pub struct CappedPipe {
    capture: Arc<OutputCapture>,
}

impl CappedPipe {
    /// Captures up to `cap` bytes of `stream`, forwarding chunks to `sink`.
    pub fn new(stream: Stream, cap: usize, sink: Option<EventSink>) -> Self {
        Self {
            capture: Arc::new(OutputCapture::new(stream, cap, sink)),
        }
    }

    /// Whether the guest wrote past the cap.
    pub fn overflowed(&self) -> bool {
        self.capture.overflowed()
    }

    /// Everything captured so far, as lossy UTF-8.
    pub fn text(&self) -> String {
        self.capture.text()
    }

    /// Keeps `bytes` as a write would, telling the event sink what
    /// `event` makes of them; an error past the cap (the guest traps).
    pub fn record(
        &self,
        bytes: &[u8],
        event: impl FnOnce(Vec<u8>) -> TaskEvent,
    ) -> Result<(), OutputCapExceeded> {
        if self.capture.append_as(bytes, event) {
            Ok(())
        } else {
            Err(self.exceeded())
        }
    }

    fn exceeded(&self) -> OutputCapExceeded {
        OutputCapExceeded(self.capture.stream(), self.capture.cap())
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
        if self.capture.append(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Trap(self.exceeded().into()))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.capture.overflowed() {
            return Err(StreamError::Trap(self.exceeded().into()));
        }
        // Accept a little more than the room left so that a write past the
        // cap is seen (and reported) rather than blocked forever.
        Ok(self
            .capture
            .cap()
            .saturating_sub(self.capture.len())
            .saturating_add(1)
            .min(1 << 20))
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
        if self.capture.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(self.exceeded())))
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
    fn a_write_past_the_cap_traps() {
        let mut pipe = CappedPipe::new(Stream::Stdout, 5, None);
        pipe.write(Bytes::from_static(b"abc")).unwrap();
        assert!(matches!(
            pipe.write(Bytes::from_static(b"defg")),
            Err(StreamError::Trap(_))
        ));
        assert!(pipe.overflowed());
        assert_eq!(pipe.text(), "abcde");
        assert!(pipe.check_write().is_err());
    }
}
