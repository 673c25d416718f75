//! `OutputCapture`: one output stream of a task (stdout or stderr), kept up
//! to a cap and forwarded chunk by chunk to the task's event sink. Shared by
//! the WASI pipes and the container log reader.

use crate::executor::{EventSink, TaskEvent};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which stream a capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A capped capture of one stream.
pub struct OutputCapture {
    stream: Stream,
    cap: usize,
    buffer: Mutex<Vec<u8>>,
    overflowed: AtomicBool,
    sink: Option<EventSink>,
}

impl OutputCapture {
    /// Keeps up to `cap` bytes of `stream`, forwarding chunks to `sink`.
    pub fn new(stream: Stream, cap: usize, sink: Option<EventSink>) -> Self {
        Self {
            stream,
            cap,
            buffer: Mutex::new(Vec::new()),
            overflowed: AtomicBool::new(false),
            sink,
        }
    }

    /// Which stream this is.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The cap in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Appends as much of `bytes` as fits; returns `false` if anything was cut
    /// (and marks the capture as overflowed).
    pub fn append(&self, bytes: &[u8]) -> bool {
        let stream = self.stream;
        self.append_as(bytes, |chunk| match stream {
            Stream::Stdout => TaskEvent::Stdout(chunk),
            Stream::Stderr => TaskEvent::Stderr(chunk),
        })
    }

    /// Appends as [`append`](Self::append) does, telling the sink what was
    /// kept as the event `event` makes of it (a log record rather than a
    /// chunk of stderr, say).
    pub fn append_as(&self, bytes: &[u8], event: impl FnOnce(Vec<u8>) -> TaskEvent) -> bool {
        let mut buffer = self.buffer.lock().expect("capture lock");
        let kept = bytes.len().min(self.cap.saturating_sub(buffer.len()));
        buffer.extend_from_slice(&bytes[..kept]);
        drop(buffer);
        if kept > 0
            && let Some(sink) = &self.sink
        {
            sink(event(bytes[..kept].to_vec()));
        }
        if kept < bytes.len() {
            self.overflowed.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Bytes kept so far.
    pub fn len(&self) -> usize {
        self.buffer.lock().expect("capture lock").len()
    }

    /// Whether nothing was kept yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the stream went past its cap.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Everything kept, as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("capture lock")).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_up_to_the_cap_forwards_and_flags_overflow() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
        let capture = OutputCapture::new(Stream::Stderr, 5, Some(sink));
        assert!(capture.append(b"abc"));
        assert!(!capture.overflowed());
        assert!(!capture.append(b"defg"));
        assert!(capture.overflowed());
        assert_eq!(capture.text(), "abcde");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                TaskEvent::Stderr(b"abc".to_vec()),
                TaskEvent::Stderr(b"de".to_vec())
            ]
        );
        assert!(!capture.append(b"x"), "nothing fits once full");
        assert_eq!(capture.len(), 5);
    }
}
