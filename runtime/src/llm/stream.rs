//! Reading streamed bodies line by line: Ollama's NDJSON and the
//! OpenAI-compatible Server-Sent Events. A line may not outgrow the answer
//! cap (`http::answer_cap`).

use crate::executor::TaskContext;
use crate::failure::{FailureKind, TaskFailure};
use futures::StreamExt;

/// Yields complete lines of a streamed body, honouring cancellation.
pub struct Lines {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    done: bool,
    what: String,
}

impl Lines {
    /// Lines of `response`'s body; `what` names the backend in errors.
    pub fn new(what: &str, response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            done: false,
            what: what.into(),
        }
    }

    /// The next line (without its newline), or `None` at the end.
    pub async fn next(&mut self, ctx: &TaskContext) -> Result<Option<String>, TaskFailure> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                return Ok(Some(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ));
            }
            if self.done {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buffer);
                return Ok(Some(String::from_utf8_lossy(&rest).trim().to_string()));
            }
            let chunk = tokio::select! {
                chunk = self.body.next() => chunk,
                _ = ctx.cancel.cancelled() => return Err(TaskFailure::cancelled()),
            };
            match chunk {
                Some(Ok(bytes)) => {
                    self.buffer.extend_from_slice(&bytes);
                    let cap = super::http::answer_cap(ctx);
                    if self.buffer.len() as u64 > cap && !self.buffer.contains(&b'\n') {
                        return Err(TaskFailure::new(
                            FailureKind::OutputExceeded,
                            format!("{} streamed a line longer than {cap} bytes", self.what),
                        ));
                    }
                }
                Some(Err(e)) => return Err(super::http::transport(&self.what, &e, ctx)),
                None => self.done = true,
            }
        }
    }

    /// The data of the next Server-Sent Event (`data: ...`), or `None` at
    /// the end or at `data: [DONE]`.
    pub async fn next_event(&mut self, ctx: &TaskContext) -> Result<Option<String>, TaskFailure> {
        let mut data = String::new();
        while let Some(line) = self.next(ctx).await? {
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                break;
            }
            if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.trim_start());
            }
        }
        if data.is_empty() || data == "[DONE]" {
            Ok(None)
        } else {
            Ok(Some(data))
        }
    }
}
