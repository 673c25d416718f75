//! Outbound HTTP for guests (`wasi:http/outgoing-handler`), off unless the
//! operator grants a tool hosts. Every request is checked against the
//! grant and, after DNS resolution, against the address it would reach;
//! a refusal becomes a line of the task's stderr and, if the guest then
//! fails, a `PolicyDenied` failure. All other network stays denied.

mod send;

use super::output::CappedPipe;
use super::sandbox::State;
use crate::executor::TaskEvent;
use crate::outbound::HttpGrant;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

/// Tells the task what was refused: a stderr line per refusal, and the
/// first refusal kept for the task's failure.
#[derive(Clone)]
pub struct Report {
    first: Arc<Mutex<Option<String>>>,
    stderr: CappedPipe,
}

impl Report {
    /// A report writing to `stderr`.
    pub fn new(stderr: CappedPipe) -> Self {
        Self {
            first: Arc::default(),
            stderr,
        }
    }

    fn deny(&self, why: String) {
        tracing::info!(reason = %why, "outbound request refused");
        self.line("DENIED", &why);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }

    /// Tells the task that a limit stopped one of its requests.
    fn limit(&self, what: &str) {
        self.line("LIMIT", what);
    }

    fn line(&self, tag: &str, text: &str) {
        // A full stderr loses only the line.
        let line = format!("[{tag} wasmnode] {text}\n");
        let _ = self.stderr.record(line.as_bytes(), TaskEvent::Stderr);
    }

    /// The first refusal, if there was one.
    pub fn denied(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The HTTP state of one task: what its tool is granted and where
/// refusals go.
pub struct HttpState {
    ctx: WasiHttpCtx,
    sender: Sender,
}

impl HttpState {
    /// The state for `tool` under `grant` (`None`: every request is refused).
    pub fn new(tool: &str, grant: Option<Arc<HttpGrant>>, report: Report) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            sender: Sender {
                tool: tool.to_string(),
                grant,
                report,
                sent: 0,
            },
        }
    }

    /// The first request refused, if one was.
    pub fn denied(&self) -> Option<String> {
        self.sender.report.denied()
    }
}

/// What `wasi:http` calls back into to send a request.
struct Sender {
    tool: String,
    grant: Option<Arc<HttpGrant>>,
    report: Report,
    /// Requests so far.
    sent: u32,
}

impl WasiHttpHooks for Sender {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<send::Sent, Error>> + Send> {
        let (tool, grant, report) = (self.tool.clone(), self.grant.clone(), self.report.clone());
        self.sent = self.sent.saturating_add(1);
        if let Some(most) = grant.as_ref().map(|g| g.limits.max_requests)
            && self.sent > most
        {
            return Box::new(async move {
                report.deny(format!(
                    "tool `{tool}` sent more than {most} requests in one task ([tools.{tool}.http] max_requests)"
                ));
                Err(Error::HttpRequestDenied)
            });
        }
        Box::new(send::send(tool, grant, report, request, options))
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (table, http) = self.http_parts();
        WasiHttpCtxView {
            ctx: &mut http.ctx,
            table,
            hooks: &mut http.sender,
        }
    }
}
