//! `ToolRegistry`: the tools this node can run by name — the built-in fs
//! tools, plugin components found in a directory, and tools mapped to
//! container images by the operator.

use crate::builtins;
use crate::task::ComponentSource;
use crate::wasm::{ToolDescription, WasmExecutor};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// How a named tool runs.
#[derive(Debug, Clone)]
pub enum ToolBackend {
    /// A `wasmnode:tool` component.
    Component(ComponentSource),
    /// A container image (Docker fallback).
    Image(String),
}

/// Tools by name.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolBackend>,
}

impl ToolRegistry {
    /// The built-in tools.
    pub fn builtin() -> Self {
        let tools = builtins::TOOLS
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    ToolBackend::Component(ComponentSource::Builtin(name.to_string())),
                )
            })
            .collect();
        Self { tools }
    }

    /// Adds every `*.wasm` tool component in `dir`, named by its own
    /// `describe()`. Files that are not tools are skipped with a warning;
    /// a plugin may not shadow a built-in tool.
    pub async fn add_plugins(
        &mut self,
        dir: &Path,
        wasm: &WasmExecutor,
    ) -> std::io::Result<Vec<Arc<ToolDescription>>> {
        let mut found = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let source = ComponentSource::File(path.clone());
            match wasm.tool_description(&source).await {
                Ok(Some(info)) if self.tools.contains_key(&info.name) => {
                    tracing::warn!(plugin = %path.display(), tool = %info.name, "plugin skipped: a tool of that name already exists");
                }
                Ok(Some(info)) => {
                    self.tools
                        .insert(info.name.clone(), ToolBackend::Component(source));
                    found.push(info);
                }
                Ok(None) => {
                    tracing::warn!(plugin = %path.display(), "skipped: not a wasmnode:tool component")
                }
                Err(e) => {
                    tracing::warn!(plugin = %path.display(), error = %e, "skipped: cannot load plugin")
                }
            }
        }
        Ok(found)
    }

    /// Maps `name` to a container image (tools without a component).
    pub fn add_image(&mut self, name: &str, image: &str) {
        self.tools
            .entry(name.to_string())
            .or_insert_with(|| ToolBackend::Image(image.to_string()));
    }

    /// How `name` runs, if this node has it.
    pub fn get(&self, name: &str) -> Option<&ToolBackend> {
        self.tools.get(name)
    }

    /// Every tool name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_registered_and_images_never_shadow_components() {
        let mut registry = ToolRegistry::builtin();
        assert!(matches!(
            registry.get("grep"),
            Some(ToolBackend::Component(_))
        ));
        registry.add_image("grep", "busybox:latest");
        registry.add_image("jq", "jq:1");
        assert!(matches!(
            registry.get("grep"),
            Some(ToolBackend::Component(_))
        ));
        assert!(matches!(registry.get("jq"), Some(ToolBackend::Image(i)) if i == "jq:1"));
        assert_eq!(registry.names().len(), 7);
    }
}
