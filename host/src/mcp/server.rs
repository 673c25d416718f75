//! The MCP server: the node's tools as MCP tools. `tools/list` answers
//! from the tool registry (each tool's `args-schema` as its `inputSchema`;
//! a plain function's parameters as its `inputSchema` and its result type
//! as its `outputSchema`),
//! and each session is told when the registry changes;
//! `tools/call` submits a `tool_execution` job with the operator's mounts,
//! follows it (progress notifications from its events), cancels it when
//! the client cancels the request, and answers with its output, or with an
//! `isError` result naming the failure kind.

use super::settings::McpSection;
use crate::events::JobEvent;
use crate::job::{JobRequest, JobRuntime, JobTask, PROTOCOL_VERSION};
use crate::node::{Described, Node, function_description};
use crate::scheduler::SubmitError;
use crate::store::JobState;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast::error::RecvError;
use wasmnode_runtime::wasm::Function;
use wasmnode_runtime::{ComponentSource, LimitRequest, ToolBackend};

/// Most followers of one call's events (progress) at once, node-wide.
const MAX_FOLLOWERS: usize = 1024;

/// Serves the node's tools to one MCP client session (cheap to clone).
#[derive(Clone)]
pub struct ToolServer {
    node: Arc<Node>,
    section: Arc<McpSection>,
    calls: Arc<AtomicU64>,
}

impl ToolServer {
    /// A server for `node`'s tools under `section`.
    pub fn new(node: Arc<Node>, section: McpSection) -> Self {
        Self {
            node,
            section: Arc::new(section),
            calls: Arc::default(),
        }
    }

    /// Every tool MCP clients may call, with its schema (container tools
    /// declare none and are not offered).
    async fn tools(&self) -> Vec<Tool> {
        let described = self
            .node
            .describe_tools(|name| self.section.serves(name))
            .await;
        described
            .into_iter()
            .filter_map(|(name, tool)| match tool {
                Described::Component(tool) => Some(Tool::new(
                    name,
                    tool.description.clone(),
                    Arc::new(object_schema(&tool.args_schema)),
                )),
                Described::Function(source, function) => {
                    Some(function_tool(&name, &source, &function))
                }
                Described::Image(_) => None,
            })
            .collect()
    }

    /// The job a call of `name` with `args` becomes.
    fn job(&self, name: &str, args: Value) -> Result<JobRequest, String> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let job_id = format!(
            "mcp-{}-{n}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default()
        );
        Ok(JobRequest {
            protocol_version: PROTOCOL_VERSION,
            job_id,
            task: JobTask {
                task_type: "tool_execution".into(),
                payload: json!({"tool": name, "args": args}),
            },
            runtime: JobRuntime {
                mode: "auto".into(),
                mounts: self.section.mounts_for(name)?,
                limits: LimitRequest {
                    max_runtime_seconds: self.section.timeout_secs,
                    ..LimitRequest::default()
                },
                ..JobRuntime::default()
            },
            idempotent: false,
            priority: None,
        })
    }

    /// Runs the call's job to its end and shapes the answer (a function's
    /// result as `{"result": …}`, the shape its output schema gives).
    async fn run(
        &self,
        request: JobRequest,
        context: &RequestContext<RoleServer>,
        function: bool,
    ) -> CallToolResult {
        let job_id = request.job_id.clone();
        let mut events = self.node.follow(&job_id, MAX_FOLLOWERS);
        let mut endings = self.node.endings();
        if let Err(refused) = self.node.submit(request, None, "mcp").await {
            return refusal(&refused);
        }
        // A call whose client goes away (or whose answer is dropped) stops
        // its job; one that ends is left alone.
        let mut abandoned = CancelOnDrop {
            node: Some(self.node.clone()),
            job_id: job_id.clone(),
        };
        let progress = context.meta.get_progress_token();
        let mut step = 0.0;
        loop {
            tokio::select! {
                ended = self.node.ended(&job_id, &mut endings) => {
                    let Some(record) = ended else {
                        return failure("INTERNAL", "the node is stopping");
                    };
                    abandoned.node = None;
                    return self.answer(&job_id, record.state, record.result, function);
                }
                _ = context.ct.cancelled() => {
                    abandoned.node = None;
                    let _ = self.node.cancel(&job_id).await;
                    return failure("CANCELLED", "the client cancelled the call");
                }
                Some(event) = next(&mut events) => {
                    if let (Some(token), Some(message)) = (&progress, describe(&event)) {
                        step += 1.0;
                        let mut note = ProgressNotificationParam::new(token.clone(), step);
                        note.message = Some(message);
                        let _ = context.peer.notify_progress(note).await;
                    }
                }
            }
        }
    }

    fn answer(
        &self,
        job_id: &str,
        state: JobState,
        result: Option<crate::store::JobResult>,
        function: bool,
    ) -> CallToolResult {
        if state == JobState::Finished {
            let output = self
                .node
                .output(job_id)
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .unwrap_or(Value::Null);
            let mut result = CallToolResult::success(vec![ContentBlock::text(output.to_string())]);
            if function {
                result.structured_content = Some(json!({ "result": output }));
            } else if output.is_object() {
                result.structured_content = Some(output);
            }
            return result;
        }
        match result.and_then(|r| r.error) {
            Some(error) => failure(error.code.as_str(), &error.message),
            None => failure(state.as_str(), "the call ended without a result"),
        }
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
            .with_server_info(Implementation::new("wasmnode", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool call runs in a fresh WebAssembly sandbox on this node, with only the directories the operator mounted.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // Tell this client whenever the tools change, until it goes.
        let mut changed = self.node.tools_changed();
        changed.mark_unchanged();
        tokio::spawn(async move {
            while changed.changed().await.is_ok() {
                if context.peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        });
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools().await))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let backend = self.node.tools().get(&name).cloned();
        let function = matches!(backend, Some(ToolBackend::Function(..)));
        let known = self.section.serves(&name)
            && matches!(
                backend,
                Some(ToolBackend::Component(_) | ToolBackend::Function(..))
            );
        if !known {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let job = self
            .job(&name, args)
            .map_err(|e| McpError::internal_error(e, None))?;
        Ok(self.run(job, &context, function).await.into())
    }
}

/// Cancels a call's job when dropped while `node` is still set.
struct CancelOnDrop {
    node: Option<Arc<Node>>,
    job_id: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let job_id = std::mem::take(&mut self.job_id);
            tokio::spawn(async move {
                let _ = node.cancel(&job_id).await;
            });
        }
    }
}

/// `schema` as an MCP tool schema, which is always an object schema.
fn object_schema(schema: &Value) -> JsonObject {
    match schema {
        Value::Object(map) if !map.is_empty() => map.clone(),
        _ => json!({"type": "object"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// The MCP tool for plain function `function` of `source`, registered as
/// `name`: its arguments as the input schema, and its result as the
/// `result` property of the output schema.
fn function_tool(name: &str, source: &ComponentSource, function: &Function) -> Tool {
    let mut tool = Tool::new(
        name.to_string(),
        function_description(source, function),
        Arc::new(object_schema(&function.contract.args_schema)),
    );
    let result = function
        .output_schema
        .clone()
        .unwrap_or_else(|| json!({"type": "null"}));
    tool.output_schema = Some(Arc::new(object_schema(&json!({
        "type": "object",
        "properties": {"result": result},
        "required": ["result"],
    }))));
    tool
}

/// The next event of the call's job, if it is followed.
async fn next(events: &mut Option<crate::events::Subscription>) -> Option<JobEvent> {
    match events {
        Some(subscription) => loop {
            match subscription.recv().await {
                Ok(event) => return Some(event),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        },
        None => std::future::pending().await,
    }
}

/// What a progress notification says of `event`, if it says anything.
fn describe(event: &JobEvent) -> Option<String> {
    match event {
        JobEvent::State { state, .. } => Some(state.clone()),
        JobEvent::Log { message, .. } => Some(message.clone()),
        JobEvent::Progress { what, .. } => Some(what.clone()),
        _ => None,
    }
}

/// A submission the node refused, as the tool's error.
fn refusal(refused: &SubmitError) -> CallToolResult {
    match refused {
        SubmitError::Rejected(task) => failure(refused.code(), &task.message),
        other => failure(other.code(), &other.to_string()),
    }
}

/// A failed call: `isError`, the failure kind first.
fn failure(code: &str, message: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))]);
    result.structured_content = Some(json!({"error": {"code": code, "message": message}}));
    result
}
