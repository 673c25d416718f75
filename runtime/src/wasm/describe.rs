//! What a component says it is: `inspect`, a tool's self-description (asked
//! once, from its `describe` export), a plain-function component's
//! functions, and the contracts remembered for checking submissions.

use super::WasmExecutor;
use super::call;
use super::contract::{MountNeed, ToolDescription};
use super::functions::{Function, Skipped};
use super::prepare::{CodeOrigin, Pre, Prepared, World};
use super::sandbox::{self, Flavor, SandboxSpec};
use crate::executor::TaskContext;
use crate::failure::TaskFailure;
use crate::limits::Limits;
use crate::task::{ComponentSource, WasmRuntime};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What `inspect` reports about a binary.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// The contract it implements.
    pub world: World,
    /// blake3 of its bytes (hex).
    pub blake3: String,
    /// Size in bytes.
    pub size: usize,
    /// Its imports.
    pub imports: Vec<String>,
    /// Its exports.
    pub exports: Vec<String>,
    /// For tools, the self-description.
    pub tool: Option<ToolDescription>,
    /// For plain-function components, the functions it can run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionInfo>,
    /// For plain-function components, the functions it cannot run, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// What `inspect` reports about one plain function.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionInfo {
    /// Where it is exported (`add`, `ns:pkg/iface#func`).
    pub export: String,
    /// JSON Schema of its arguments object.
    pub args_schema: serde_json::Value,
    /// JSON Schema of its result (absent when it returns nothing).
    pub output_schema: Option<serde_json::Value>,
}

/// Where a component (and the function called, if any) came from, as the
/// described-tools map keys it.
fn described_key(source: &ComponentSource, function: Option<&str>) -> Option<String> {
    let key = match source {
        ComponentSource::Builtin(name) => format!("builtin:{name}"),
        ComponentSource::File(path) => path.display().to_string(),
        ComponentSource::Hashed(_, hash) => format!("blake3:{hash}"),
        ComponentSource::Bytes(_) | ComponentSource::Blob(_) => return None,
    };
    Some(match function {
        Some(function) => format!("{key}#{function}"),
        None => key,
    })
}

impl WasmExecutor {
    /// Describes a binary: its world, imports, exports and (for tools) its
    /// self-description (prepared in the first engine).
    pub async fn inspect(&self, source: &ComponentSource) -> Result<ComponentInfo, TaskFailure> {
        let binary = self.load(source)?;
        let size = binary.bytes()?.len();
        let (prepared, _) = self.preparer.prepare(0, binary).await?;
        let tool = match prepared.world {
            World::Tool => Some(self.describe_tool(&prepared).await?.as_ref().clone()),
            _ => None,
        };
        let (functions, skipped) = match &prepared.pre {
            Pre::Functions(f) => (
                f.functions
                    .iter()
                    .map(|f| FunctionInfo {
                        export: f.export.clone(),
                        args_schema: f.contract.args_schema.clone(),
                        output_schema: f.output_schema.clone(),
                    })
                    .collect(),
                f.skipped.clone(),
            ),
            _ => Default::default(),
        };
        Ok(ComponentInfo {
            world: prepared.world,
            blake3: prepared.hash.to_hex().to_string(),
            size,
            imports: prepared.imports.clone(),
            exports: prepared.exports.clone(),
            tool,
            functions,
            skipped,
        })
    }

    /// What `source` is: a tool and its self-description, or the plain
    /// functions it exports that can be called with JSON (none for other
    /// worlds), from one load of its bytes (none for a file unchanged since
    /// it was hashed); each contract is remembered for checking submissions.
    /// A binary described before is answered from memory, without loading
    /// its code again.
    pub async fn describe(&self, source: &ComponentSource) -> Result<Description, TaskFailure> {
        let description = self.known(source).await?;
        match &description {
            Description::Tool(tool) => self.remember(source, tool),
            Description::Functions(functions) => {
                for function in functions {
                    self.remember_as(source, Some(&function.export), &function.contract);
                }
            }
        }
        Ok(description)
    }

    /// The self-description of a tool component (`None` for other worlds).
    pub async fn tool_description(
        &self,
        source: &ComponentSource,
    ) -> Result<Option<Arc<ToolDescription>>, TaskFailure> {
        Ok(match self.describe(source).await? {
            Description::Tool(tool) => Some(tool),
            Description::Functions(_) => None,
        })
    }

    /// The functions a plain-function component exports that can be called
    /// with JSON (none for other worlds).
    pub async fn functions(
        &self,
        source: &ComponentSource,
    ) -> Result<Vec<Arc<Function>>, TaskFailure> {
        Ok(match self.describe(source).await? {
            Description::Functions(functions) => functions,
            Description::Tool(_) => Vec::new(),
        })
    }

    /// What `source` is: remembered by its binary's hash, or found out now
    /// (in the first engine: describing is no task's hot path, and an
    /// engine no task has used holds nothing). Finding out loads its code;
    /// code that was not in memory before is let go of afterwards where a
    /// task can load it again without compiling, so describing tools leaves
    /// an idle node holding none.
    async fn known(&self, source: &ComponentSource) -> Result<Description, TaskFailure> {
        let binary = self.load(source)?;
        let remembered = self.descriptions().get(&binary.hash).cloned();
        if let Some(known) = remembered {
            return Ok(known);
        }
        let (prepared, origin) = self.preparer.prepare(0, binary).await?;
        let known = match prepared.world {
            World::Tool => self.describe_tool(&prepared).await.map(Description::Tool),
            _ => {
                let known = Description::Functions(functions_of(&prepared));
                self.know(prepared.hash, known.clone());
                Ok(known)
            }
        };
        if origin != CodeOrigin::Memory {
            self.preparer.unload(&prepared.hash);
        }
        known
    }

    fn descriptions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<blake3::Hash, Description>> {
        self.descriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers what the binary hashing to `hash` is.
    fn know(&self, hash: blake3::Hash, known: Description) {
        let mut descriptions = self.descriptions();
        if descriptions.len() >= super::DESCRIPTIONS_CAPACITY {
            descriptions.clear();
        }
        descriptions.insert(hash, known);
    }

    /// The contract of what `runtime` runs, as it was last described: the
    /// tool's self-description, or the called function's arguments (`None`
    /// before that, or for other worlds).
    pub fn described(&self, runtime: &WasmRuntime) -> Option<Arc<ToolDescription>> {
        let key = described_key(&runtime.component, runtime.function.as_deref())?;
        self.described
            .lock()
            .expect("described lock")
            .get(&key)
            .cloned()
    }

    pub(super) fn remember(&self, source: &ComponentSource, tool: &Arc<ToolDescription>) {
        self.remember_as(source, None, tool);
    }

    fn remember_as(
        &self,
        source: &ComponentSource,
        function: Option<&str>,
        tool: &Arc<ToolDescription>,
    ) {
        if let Some(key) = described_key(source, function) {
            self.described
                .lock()
                .expect("described lock")
                .insert(key, tool.clone());
        }
    }

    /// The tool's description, from its `describe` export the first time
    /// (in any engine); remembered by the binary's hash.
    pub(super) async fn describe_tool(
        &self,
        prepared: &Prepared,
    ) -> Result<Arc<ToolDescription>, TaskFailure> {
        let tool = prepared
            .tool_info
            .get_or_try_init(|| async {
                let remembered = self.descriptions().get(&prepared.hash).cloned();
                if let Some(Description::Tool(tool)) = remembered {
                    return Ok(tool);
                }
                let Pre::Tool(pre) = &prepared.pre else {
                    return Err(TaskFailure::invalid_input("not a tool component"));
                };
                let limits = Limits {
                    memory_bytes: 64 << 20,
                    timeout: Duration::from_secs(5),
                    ..Limits::default()
                };
                let ctx =
                    TaskContext::new(limits.clone(), crate::artifacts::ArtifactStore::detached());
                let runtime =
                    crate::task::WasmRuntime::new(ComponentSource::Builtin(String::new()));
                let spec = SandboxSpec {
                    runtime: &runtime,
                    program: "describe",
                    mounts: &[],
                    stdin: None,
                    read_only: true,
                    deterministic: None,
                };
                let (state, stdio) = sandbox::build(spec, &ctx, Flavor::Component)?;
                let mut store = self.store(prepared, state, &ctx)?;
                let info = async {
                    let guest = pre.instantiate_async(&mut store).await?;
                    guest.call_describe(&mut store).await
                }
                .await
                .map_err(|e| call::classify(&e, store.data(), &stdio, &limits))?;
                let args_schema = serde_json::from_str(&info.args_schema).map_err(|e| {
                    TaskFailure::invalid_input(format!(
                        "tool `{}` declares an args schema that is not JSON: {e}",
                        info.name
                    ))
                })?;
                let mounts = info
                    .capabilities
                    .mounts
                    .into_iter()
                    .map(|m| MountNeed {
                        path: m.guest_path,
                        write: m.write,
                    })
                    .collect();
                ToolDescription::new(
                    info.name,
                    info.version,
                    info.description,
                    args_schema,
                    mounts,
                    info.capabilities.writes,
                )
                .map(Arc::new)
            })
            .await
            .cloned()?;
        self.know(prepared.hash, Description::Tool(tool.clone()));
        Ok(tool)
    }
}

/// What a binary was found to be when it was first described.
#[derive(Clone)]
pub enum Description {
    /// A tool, as it describes itself.
    Tool(Arc<ToolDescription>),
    /// Not a tool: the plain functions it exports that can be called with
    /// JSON (none unless it is a plain-function component).
    Functions(Vec<Arc<Function>>),
}

/// The callable functions of `prepared` (none unless it is a plain-function
/// component).
fn functions_of(prepared: &Prepared) -> Vec<Arc<Function>> {
    match &prepared.pre {
        Pre::Functions(pre) => pre.functions.clone(),
        _ => Vec::new(),
    }
}
