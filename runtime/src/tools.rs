//! `ToolRegistry`: the tools this node can run by name — the built-in fs
//! tools, plugin components found in a directory, and tools mapped to
//! container images by the operator — and the operator's settings for each
//! (`[tools.NAME]`).

use crate::builtins;
use crate::failure::TaskFailure;
use crate::task::ComponentSource;
use crate::wasm::{ToolDescription, WasmExecutor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What the operator sets for one tool (`[tools.NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    /// Settings the tool reads through `wasmnode:tool/config`.
    pub config: BTreeMap<String, String>,
    /// Keys a job may set in its payload's `config` object (over the
    /// operator's values); a job setting any other key is refused.
    pub job_config: Vec<String>,
}

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
    settings: BTreeMap<String, ToolSettings>,
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
        Self {
            tools,
            settings: BTreeMap::new(),
        }
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

    /// Sets the operator's settings of each tool named in `settings`.
    pub fn configure(&mut self, settings: BTreeMap<String, ToolSettings>) {
        self.settings = settings;
    }

    /// Names in the operator's settings that no tool of this node has.
    pub fn unknown_settings(&self) -> Vec<&str> {
        self.settings
            .keys()
            .filter(|name| !self.tools.contains_key(*name))
            .map(String::as_str)
            .collect()
    }

    /// The settings tool `name` runs with: the operator's, overlaid with the
    /// job's `config` object where the operator lets jobs set those keys.
    /// Values may be text, numbers or booleans (given to the tool as text).
    pub fn config_for(
        &self,
        name: &str,
        job: Option<&Value>,
    ) -> Result<BTreeMap<String, String>, TaskFailure> {
        let settings = self.settings.get(name);
        let mut config = settings.map(|s| s.config.clone()).unwrap_or_default();
        let Some(job) = job else {
            return Ok(config);
        };
        let Value::Object(fields) = job else {
            return Err(TaskFailure::invalid_input(
                "config must be an object of settings",
            ));
        };
        let allowed = settings.map(|s| s.job_config.as_slice()).unwrap_or(&[]);
        for (key, value) in fields {
            if !allowed.contains(key) {
                return Err(TaskFailure::policy_denied(format!(
                    "tool `{name}` does not let jobs set config `{key}` (the operator allows: {})",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Err(TaskFailure::invalid_input(format!(
                        "config `{key}` must be text, a number or a boolean"
                    )));
                }
            };
            config.insert(key.clone(), text);
        }
        Ok(config)
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

    #[test]
    fn jobs_may_set_only_the_config_keys_the_operator_allows() {
        let mut registry = ToolRegistry::builtin();
        registry.configure(BTreeMap::from([(
            "grep".to_string(),
            ToolSettings {
                config: BTreeMap::from([
                    ("mode".into(), "fast".into()),
                    ("token".into(), "t".into()),
                ]),
                job_config: vec!["mode".into()],
            },
        )]));
        let config = registry
            .config_for("grep", Some(&serde_json::json!({"mode": 3})))
            .unwrap();
        assert_eq!(config["mode"], "3");
        assert_eq!(config["token"], "t");
        let refused = registry
            .config_for("grep", Some(&serde_json::json!({"token": "x"})))
            .unwrap_err();
        assert_eq!(refused.kind, crate::failure::FailureKind::PolicyDenied);
        assert!(
            refused.message.contains("allows: mode"),
            "{}",
            refused.message
        );
        let other = registry
            .config_for("file_read", Some(&serde_json::json!({"mode": "x"})))
            .unwrap_err();
        assert!(other.message.contains("allows: none"), "{}", other.message);
        assert!(registry.unknown_settings().is_empty());
    }
}
