//! The node's tools as clients see them (MCP's `tools/list`, the API's
//! `GET /tools`): each tool's description and argument schema, read from
//! its component (compiled once, then cached like any other code).

use super::Node;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmnode_runtime::wasm::{Function, ToolDescription, WasmExecutor};
use wasmnode_runtime::{ComponentSource, TaskFailure, ToolBackend};

/// What a tool says about itself.
pub enum Described {
    /// A `wasmnode:tool` component, as it describes itself.
    Component(Arc<ToolDescription>),
    /// A plain function of a component.
    Function(ComponentSource, Arc<Function>),
    /// A container image: it declares no schema.
    Image(String),
}

impl Described {
    /// Its kind, description and argument schema, as the API lists them.
    pub fn summary(&self) -> Value {
        match self {
            Self::Component(tool) => json!({
                "kind": "component",
                "description": tool.description,
                "version": tool.version,
                "args_schema": tool.args_schema,
                "writes": tool.writes,
            }),
            Self::Function(source, function) => json!({
                "kind": "function",
                "description": function_description(source, function),
                "args_schema": function.contract.args_schema,
                "output_schema": function.output_schema,
            }),
            Self::Image(image) => json!({
                "kind": "image",
                "description": format!("Runs container image {image}."),
                "args_schema": null,
            }),
        }
    }
}

/// How a plain function tool is described.
pub fn function_description(source: &ComponentSource, function: &Function) -> String {
    format!(
        "Calls function `{}` of {} (a WebAssembly component).",
        function.export,
        source.program_name()
    )
}

impl Node {
    /// Every tool whose name `wanted` accepts, described; a tool that
    /// cannot describe itself (its component does not load) is left out
    /// with a warning. Each component file is read once, however many of
    /// its functions are tools.
    pub async fn describe_tools(&self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Described)> {
        let registry = self.tools();
        let mut read = FunctionsRead::default();
        let mut tools = Vec::new();
        for name in registry.names() {
            if !wanted(&name) {
                continue;
            }
            let described = match registry.get(&name) {
                Some(ToolBackend::Component(source)) => self
                    .wasm()
                    .tool_description(source)
                    .await
                    .map(|tool| tool.map(Described::Component)),
                Some(ToolBackend::Function(source, export)) => {
                    read.of(self.wasm(), source).await.map(|functions| {
                        let function = functions.into_iter().find(|f| &f.export == export)?;
                        Some(Described::Function(source.clone(), function))
                    })
                }
                Some(ToolBackend::Image(image)) => Ok(Some(Described::Image(image.clone()))),
                None => Ok(None),
            };
            match described {
                Ok(Some(tool)) => tools.push((name, tool)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tool = %name, error = %e, "the tool cannot describe itself; left out")
                }
            }
        }
        tools
    }
}

/// The functions of each component file one listing has read: a plugin
/// exporting several functions is read and hashed once, not once for each.
#[derive(Default)]
struct FunctionsRead(HashMap<PathBuf, Result<Vec<Arc<Function>>, TaskFailure>>);

impl FunctionsRead {
    /// The functions of `source`, read now unless this listing read its file.
    async fn of(
        &mut self,
        wasm: &WasmExecutor,
        source: &ComponentSource,
    ) -> Result<Vec<Arc<Function>>, TaskFailure> {
        let ComponentSource::File(path) = source else {
            return wasm.functions(source).await;
        };
        if let Some(read) = self.0.get(path) {
            return read.clone();
        }
        let functions = wasm.functions(source).await;
        self.0.insert(path.clone(), functions.clone());
        functions
    }
}
