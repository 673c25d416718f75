//! `ToolRegistry`: the tools this node can run by name — the built-in fs
//! tools, plugin components found in a directory, and tools mapped to
//! container images by the operator — and the operator's settings for each
//! (`[tools.NAME]`): settings, the keys jobs may set, and outbound HTTP.

use crate::builtins;
use crate::failure::TaskFailure;
use crate::outbound::{HttpGrant, HttpLimits};
use crate::task::ComponentSource;
use crate::wasm::{Description, WasmExecutor};
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
    /// Hosts the tool may reach through `wasi:http`: `host`, `host:port`,
    /// `*.domain`, an IP address, or `*`; without a port, the scheme's
    /// default port only. Empty (the default): no outbound HTTP.
    pub allowed_hosts: Vec<String>,
    /// Whether a granted host name may resolve to a loopback, private or
    /// link-local address (an address granted as such always may).
    pub allow_private_addresses: bool,
    /// Caps on the tool's requests.
    pub http: HttpLimits,
}

impl ToolSettings {
    /// The outbound HTTP these settings grant, if any.
    pub fn grant(&self) -> Result<Option<HttpGrant>, String> {
        HttpGrant::new(&self.allowed_hosts, self.allow_private_addresses, self.http)
    }
}

/// The outbound HTTP that `settings` grant, by tool; an `allowed_hosts`
/// entry that is not a host pattern is refused, naming the tool.
pub fn grants(
    settings: &BTreeMap<String, ToolSettings>,
) -> Result<BTreeMap<String, Arc<HttpGrant>>, String> {
    let mut grants = BTreeMap::new();
    for (name, tool) in settings {
        if let Some(grant) = tool.grant().map_err(|e| format!("[tools.{name}] {e}"))? {
            grants.insert(name.clone(), Arc::new(grant));
        }
    }
    Ok(grants)
}

/// How a named tool runs.
#[derive(Debug, Clone)]
pub enum ToolBackend {
    /// A `wasmnode:tool` component.
    Component(ComponentSource),
    /// A function a plain-function component exports (`add`, or
    /// `ns:pkg/iface#func`), called with the tool's arguments.
    Function(ComponentSource, String),
    /// A container image (Docker fallback).
    Image(String),
}

/// Tools by name.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolBackend>,
    settings: BTreeMap<String, ToolSettings>,
    grants: BTreeMap<String, Arc<HttpGrant>>,
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
            ..Self::default()
        }
    }

    /// Adds every `*.wasm` tool component in `dir`, named by its own
    /// `describe()`, and each function of every plain-function component,
    /// named `STEM.FUNC` (`STEM.IFACE.FUNC` for a function of an exported
    /// interface; STEM is the file name without `.wasm`). Other files are
    /// skipped with a warning; a plugin may not shadow an existing tool.
    /// Each file is read once. With a code cache, the plugins' code is not
    /// held afterwards. Returns how many tools it added.
    pub async fn add_plugins(&mut self, dir: &Path, wasm: &WasmExecutor) -> std::io::Result<usize> {
        let before = self.tools.len();
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let source = ComponentSource::File(path.clone());
            match wasm.describe(&source).await {
                Ok(Description::Tool(info)) if self.tools.contains_key(&info.name) => {
                    tracing::warn!(plugin = %path.display(), tool = %info.name, "plugin skipped: a tool of that name already exists");
                }
                Ok(Description::Tool(info)) => {
                    self.tools
                        .insert(info.name.clone(), ToolBackend::Component(source.clone()));
                }
                Ok(Description::Functions(functions)) if !functions.is_empty() => {
                    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                    for function in functions {
                        let name = function_tool_name(&stem, &function.export);
                        if self.tools.contains_key(&name) {
                            tracing::warn!(plugin = %path.display(), tool = %name, "function skipped: a tool of that name already exists");
                            continue;
                        }
                        let backend =
                            ToolBackend::Function(source.clone(), function.export.clone());
                        self.tools.insert(name, backend);
                    }
                }
                Ok(Description::Functions(_)) => {
                    tracing::warn!(plugin = %path.display(), "skipped: neither a wasmnode:tool component nor plain functions")
                }
                Err(e) => {
                    tracing::warn!(plugin = %path.display(), error = %e, "skipped: cannot load plugin")
                }
            }
        }
        Ok(self.tools.len() - before)
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

    /// Sets the operator's settings of each tool named in `settings`; an
    /// `allowed_hosts` entry that is not a host pattern is refused, naming
    /// the tool.
    pub fn configure(&mut self, settings: BTreeMap<String, ToolSettings>) -> Result<(), String> {
        self.grants = grants(&settings)?;
        self.settings = settings;
        Ok(())
    }

    /// The operator's settings of tool `name`, if it set any.
    pub fn settings(&self, name: &str) -> Option<&ToolSettings> {
        self.settings.get(name)
    }

    /// The outbound HTTP the operator grants tool `name`, if any.
    pub fn grant_for(&self, name: &str) -> Option<Arc<HttpGrant>> {
        self.grants.get(name).cloned()
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

/// The tool name of function `export` of the component in file `stem`:
/// `STEM.FUNC`, or `STEM.IFACE.FUNC` for `ns:pkg/IFACE@version#FUNC`, with
/// any character outside `A-Z a-z 0-9 _ - .` made `_` (MCP's tool names).
pub fn function_tool_name(stem: &str, export: &str) -> String {
    let short = match export.split_once('#') {
        Some((interface, func)) => {
            let interface = interface.rsplit('/').next().unwrap_or(interface);
            let interface = interface.split('@').next().unwrap_or(interface);
            format!("{interface}.{func}")
        }
        None => export.to_string(),
    };
    format!("{stem}.{short}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_named_by_file_interface_and_function() {
        assert_eq!(function_tool_name("calc", "add"), "calc.add");
        assert_eq!(
            function_tool_name("calc", "test:functions/shapes@0.1.0#area"),
            "calc.shapes.area"
        );
        assert_eq!(
            function_tool_name("my calc", "local:x/y#[method]c.bump"),
            "my_calc.y._method_c.bump"
        );
    }

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
        assert_eq!(registry.names().len(), builtins::TOOLS.len() + 1);
    }

    #[test]
    fn jobs_may_set_only_the_config_keys_the_operator_allows() {
        let mut registry = ToolRegistry::builtin();
        registry
            .configure(BTreeMap::from([(
                "grep".to_string(),
                ToolSettings {
                    config: BTreeMap::from([
                        ("mode".into(), "fast".into()),
                        ("token".into(), "t".into()),
                    ]),
                    job_config: vec!["mode".into()],
                    ..ToolSettings::default()
                },
            )]))
            .unwrap();
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

    #[test]
    fn only_tools_the_operator_grants_hosts_get_outbound_http() {
        let mut registry = ToolRegistry::builtin();
        let web = ToolSettings {
            allowed_hosts: vec!["example.com".into()],
            ..ToolSettings::default()
        };
        registry
            .configure(BTreeMap::from([
                ("web_fetch".to_string(), web),
                ("grep".to_string(), ToolSettings::default()),
            ]))
            .unwrap();
        assert!(
            registry
                .grant_for("web_fetch")
                .unwrap()
                .permits("example.com", 443, 443)
        );
        assert!(registry.grant_for("grep").is_none());
        let bad = ToolSettings {
            allowed_hosts: vec!["https://example.com".into()],
            ..ToolSettings::default()
        };
        let err = registry
            .configure(BTreeMap::from([("web_fetch".to_string(), bad)]))
            .unwrap_err();
        assert!(
            err.starts_with("[tools.web_fetch] allowed host `https://example.com`"),
            "{err}"
        );
    }
}
